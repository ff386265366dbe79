#include "TConnection.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>

namespace grpc_green {

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
  std::string host, port = "443";
  if (!t.empty() && t[0] == '[') {
    size_t close = t.find(']');
    if (close == std::string::npos) {
      *err = "invalid target '" + target_in + "': unterminated '['";
      return false;
    }
    host = t.substr(1, close - 1);
    if (close + 1 < t.size()) {
      if (t[close + 1] != ':') {
        *err = "invalid target '" + target_in + "'";
        return false;
      }
      port = t.substr(close + 2);
    }
  } else {
    size_t colon = t.rfind(':');
    if (colon != std::string::npos && t.find(':') == colon) {
      host = t.substr(0, colon);
      port = t.substr(colon + 1);
    } else if (colon == std::string::npos) {
      host = t;
    } else {
      host = t;  // bare IPv6 literal without port
    }
  }
  if (host.empty()) host = "localhost";
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) {
    *err = "invalid target '" + target_in + "': bad port '" + port + "'";
    return false;
  }
  *host_port = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
  addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  int rv = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rv == EAI_BADFLAGS || (rv != 0 && (host == "localhost" || host == "::1"))) {
    hints.ai_flags = 0;  // loopback-only hosts have no "configured" address
    rv = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  }
  if (rv != 0) {
    *err = "DNS resolution failed for " + *host_port + ": " + gai_strerror(rv);
    return false;
  }
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    SocketAddress a;
    memcpy(&a.addr, ai->ai_addr, ai->ai_addrlen);
    a.len = ai->ai_addrlen;
    out->push_back(a);
  }
  freeaddrinfo(res);
  return !out->empty();
}

Connection::Connection(Hub* hub, H2Session::Role role, const H2Settings& settings)
    : hub_(hub), state_(kConnecting) {
  h2_ = std::make_unique<H2Session>(role, this, settings);
  hub_->Track(this);
}

Connection::~Connection() {
  hub_->Untrack(this);
  hub_->Unmark(this);
  io_.reset();
  if (fd_ >= 0) ::close(fd_);
}

bool Connection::Adopt(int fd, const std::string& peer) {
  fd_ = fd;
  peer_ = peer;
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  io_ = hub_->io().NewIo(fd_, this);
  state_ = kReady;
  if (!h2_->ok()) {
    Close("HTTP/2 session: " + h2_->error());
    return false;
  }
  io_->Set(kIoRead);
  hub_->MarkDirty(this);  // our SETTINGS
  return true;
}

void Connection::Connect(std::vector<SocketAddress> addresses) {
  addresses_ = std::move(addresses);
  next_address_ = 0;
  StartNextAddress();
}

void Connection::StartNextAddress() {
  io_.reset();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  while (next_address_ < addresses_.size()) {
    const SocketAddress& a = addresses_[next_address_++];
    peer_ = a.Describe();
    int fd = socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error_ = peer_ + ": socket: " + strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rv = ::connect(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len);
    if (rv == 0 || errno == EINPROGRESS) {
      fd_ = fd;
      io_ = hub_->io().NewIo(fd_, this);
      if (rv == 0) {
        FinishConnect();
      } else {
        io_->Set(kIoWrite);
      }
      return;
    }
    error_ = peer_ + ": Failed to connect to remote host: " + strerror(errno);
    ::close(fd);
  }
  state_ = kClosed;
  OnClosed();
  WakeReadyWaiters();
}

void Connection::FinishConnect() {
  if (!h2_->ok()) {
    Close("HTTP/2 session: " + h2_->error());
    return;
  }
  state_ = kReady;
  io_->Set(kIoRead);
  hub_->MarkDirty(this);  // connection preface + SETTINGS
  OnReady();
  WakeReadyWaiters();
}

Waiter::Result Connection::WaitReady(double timeout) {
  auto w = std::make_unique<Waiter>();
  ready_waiters_.push_back(w.get());
  Waiter::Result r = w->Wait(timeout);
  ready_waiters_.erase(std::remove(ready_waiters_.begin(), ready_waiters_.end(), w.get()),
                       ready_waiters_.end());
  return r;
}

void Connection::WakeReadyWaiters() {
  for (Waiter* w : ready_waiters_) w->Wake();
}

void Connection::OnIo(int events) {
  if (state_ == kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == 0) {
      FinishConnect();
    } else {
      error_ = peer_ + ": Failed to connect to remote host: " + strerror(err);
      StartNextAddress();
    }
    return;
  }
  if (state_ != kReady) return;
  if (events & kIoRead) {
    uint8_t buf[65536];
    for (int i = 0; i < 16; ++i) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        if (!h2_->Receive(buf, static_cast<size_t>(n))) {
          // nghttp2 queued a GOAWAY for the protocol error: send it, close.
          std::string reason = "HTTP/2 error: " + h2_->error();
          h2_->CollectOutput(out_);
          if (out_.size() > out_off_)
            (void)::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
          Close(reason);
          return;
        }
        if (static_cast<size_t>(n) < sizeof buf) break;
        continue;
      }
      if (n == 0) {
        Close("Socket closed");
        return;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      Close(std::string("recvmsg:") + strerror(errno));
      return;
    }
    hub_->MarkDirty(this);  // acks and window updates the input produced
  }
  if (events & kIoWrite) Flush();
}

void Connection::Flush() {
  if (state_ != kReady) return;
  if (!h2_->CollectOutput(out_)) {
    Close("HTTP/2 error: " + h2_->error());
    return;
  }
  while (out_off_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n > 0) {
      out_off_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    Close(std::string("sendmsg:") + strerror(errno));
    return;
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  } else if (out_off_ > (1 << 16)) {
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
  UpdateWriteInterest();
  MaybeFinishDrain();
}

void Connection::UpdateWriteInterest() {
  if (!io_ || state_ != kReady) return;
  io_->Set(kIoRead | (out_off_ < out_.size() ? kIoWrite : 0));
}

void Connection::Drain(uint32_t error_code) {
  if (state_ != kReady || draining_) return;
  draining_ = true;
  h2_->Goaway(error_code);
  Kick();
}

void Connection::MaybeFinishDrain() {
  if (state_ != kReady) return;
  if ((draining_ && h2_->stream_count() == 0 && out_off_ == out_.size()) || !h2_->WantsIo())
    Close(h2_->error().empty() ? "Connection drained" : "HTTP/2 error: " + h2_->error());
}

void Connection::OnGoaway(uint32_t, int32_t) {
  // The peer accepts no new streams here: the owner routes new calls to a
  // new connection, this one ends when its streams have.
  if (!draining_) {
    draining_ = true;
    OnClosed();
  }
}

void Connection::GoawayAndClose(const std::string& reason) {
  if (state_ == kReady) {
    h2_->Goaway(NGHTTP2_NO_ERROR);
    Flush();
  }
  Close(reason);
}

void Connection::DropAfterFork() {
  io_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  state_ = kClosed;
  if (error_.empty()) error_ = "Connection made before fork";
}

void Connection::Close(const std::string& reason) {
  if (state_ == kClosed) return;
  State was = state_;
  state_ = kClosed;
  if (error_.empty()) error_ = reason;
  hub_->Unmark(this);
  io_.reset();  // watchers stop before the fd closes
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (was == kReady) h2_->CloseAllStreams(kConnectionLost);
  OnClosed();
  WakeReadyWaiters();
}

}  // namespace grpc_green
