// Socket addresses: parsing a channel's target and a server's bind address,
// resolving them, and opening listening sockets.
//
// Resolution uses getaddrinfo() and blocks the calling thread for as long
// as the system resolver takes (numeric addresses return at once).
#pragma once

#include <sys/socket.h>

#include <string>
#include <vector>

namespace grpc_green {

struct SocketAddress {
  sockaddr_storage addr;
  socklen_t len;
  std::string Describe() const;  // "ipv4:127.0.0.1:50051" / "ipv6:[::1]:50051"
};

// Parses "host:port", "[v6]:port", "ipv4:h:p", "ipv6:[h]:p", "dns:///h:p"
// and resolves it (numeric or via getaddrinfo). `host_port` gets the
// authority ("host:port", the port defaulting to 443). Returns false with
// `err`.
bool ResolveTarget(const std::string& target, std::vector<SocketAddress>* out,
                   std::string* host_port, std::string* err);

// Binds and listens on every address `address` ("host:port", "[v6]:port",
// ":port", "*:port"; port 0 picks one, the same for all) stands for.
// Returns the port, or -1 with `err`. The sockets are non-blocking.
int OpenListeners(const std::string& address, bool reuseport, std::vector<int>* fds,
                  std::string* err);

}  // namespace grpc_green
