#include "Address.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include <memory>

namespace grpc_green {

namespace {

// "0".."65535" only.
bool ParsePort(const std::string& s, int* port) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos)
    return false;
  int p = std::stoi(s);
  if (p > 65535) return false;
  *port = p;
  return true;
}

// Splits "host:port" / "[v6]:port" / "v6-literal". `port` stays as given
// when the string has none.
bool SplitHostPort(const std::string& t, std::string* host, std::string* port, std::string* err) {
  if (!t.empty() && t[0] == '[') {
    size_t close = t.find(']');
    if (close == std::string::npos) {
      *err = "unterminated '['";
      return false;
    }
    *host = t.substr(1, close - 1);
    if (close + 1 < t.size()) {
      if (t[close + 1] != ':') {
        *err = "unexpected text after ']'";
        return false;
      }
      *port = t.substr(close + 2);
    }
    return true;
  }
  size_t colon = t.rfind(':');
  if (colon != std::string::npos && t.find(':') == colon) {
    *host = t.substr(0, colon);
    *port = t.substr(colon + 1);
  } else {
    *host = t;  // no port, or a bare IPv6 literal without one
  }
  return true;
}

using AddrInfo = std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>;

// getaddrinfo() for TCP with `flags`; a null host is the wildcard. The
// result is owned, or empty with `*rv` getaddrinfo's error.
AddrInfo Lookup(const char* host, const std::string& port, int flags, int* rv) {
  addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  *rv = getaddrinfo(host, port.c_str(), &hints, &res);
  return AddrInfo(*rv == 0 ? res : nullptr, freeaddrinfo);
}

}  // namespace

std::string SocketAddress::Describe() const {
  char host[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return std::string("ipv4:") + host + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], host, sizeof host);
      return std::string("ipv4:") + host + ":" + std::to_string(ntohs(a->sin6_port));
    }
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return std::string("ipv6:[") + host + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "unknown";
}

bool ResolveTarget(const std::string& target_in, std::vector<SocketAddress>* out,
                   std::string* host_port, std::string* err) {
  std::string t = target_in;
  for (const char* prefix : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (t.rfind(prefix, 0) == 0) {
      t = t.substr(strlen(prefix));
      break;
    }
  }
  std::string host, port = "443", why;
  if (!SplitHostPort(t, &host, &port, &why)) {
    *err = "invalid target '" + target_in + "': " + why;
    return false;
  }
  if (host.empty()) host = "localhost";
  int port_number;
  if (!ParsePort(port, &port_number)) {
    *err = "invalid target '" + target_in + "': bad port '" + port + "'";
    return false;
  }
  *host_port = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
  int rv;
  AddrInfo res = Lookup(host.c_str(), port, AI_ADDRCONFIG, &rv);
  if (rv == EAI_BADFLAGS || (rv != 0 && (host == "localhost" || host == "::1")))
    res = Lookup(host.c_str(), port, 0, &rv);  // loopback-only hosts have no "configured" address
  if (rv != 0) {
    *err = "DNS resolution failed for " + *host_port + ": " + gai_strerror(rv);
    return false;
  }
  for (addrinfo* ai = res.get(); ai; ai = ai->ai_next) {
    SocketAddress a;
    memcpy(&a.addr, ai->ai_addr, ai->ai_addrlen);
    a.len = ai->ai_addrlen;
    out->push_back(a);
  }
  return !out->empty();
}

int OpenListeners(const std::string& address, bool reuseport, std::vector<int>* fds,
                  std::string* err) {
  std::string host, port, why;
  if (!SplitHostPort(address, &host, &port, &why)) {
    *err = why;
    return -1;
  }
  int port_number;
  if (port.empty()) {
    *err = "no port";
    return -1;
  }
  if (!ParsePort(port, &port_number)) {
    *err = "invalid port '" + port + "' (0 to 65535)";
    return -1;
  }
  int rv;
  AddrInfo res =
      Lookup(host.empty() || host == "*" ? nullptr : host.c_str(), port, AI_PASSIVE, &rv);
  if (rv != 0) {
    *err = gai_strerror(rv);
    return -1;
  }
  std::string last_error = "no address";
  std::vector<int> opened;
  for (addrinfo* ai = res.get(); ai; ai = ai->ai_next) {
    sockaddr_storage sa;
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
    if (port_number) {  // port 0: the first socket picks, the others follow it
      uint16_t p = htons(static_cast<uint16_t>(port_number));
      if (sa.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&sa)->sin_port = p;
      else reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port = p;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error = strerror(errno);
      continue;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), ai->ai_addrlen) < 0 ||
        ::listen(fd, 1024) < 0) {
      // A dual-stack [::] already covers 0.0.0.0 on the same port.
      last_error = strerror(errno);
      ::close(fd);
      continue;
    }
    if (!port_number) {
      sockaddr_storage got;
      socklen_t len = sizeof got;
      getsockname(fd, reinterpret_cast<sockaddr*>(&got), &len);
      port_number =
          ntohs(got.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&got)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
    }
    try {
      opened.push_back(fd);
    } catch (...) {
      ::close(fd);
      for (int o : opened) ::close(o);
      throw;
    }
  }
  if (opened.empty()) {
    *err = last_error;
    return -1;
  }
  try {
    fds->insert(fds->end(), opened.begin(), opened.end());
  } catch (...) {
    for (int o : opened) ::close(o);
    throw;
  }
  return port_number;
}

}  // namespace grpc_green
