// A TCP connection carrying one HTTP/2 session, driven by the hub.
//
// Reads happen in the io handler (as much as the socket has, fed straight
// into nghttp2); writes are corked: submitting frames only marks the
// connection dirty, and the hub flushes it once per iteration with a single
// send(). When the socket is full the rest waits for writability.
//
// Lifetime: a Connection is owned by its channel or server. Close() stops
// the watchers before closing the fd, fails every attached stream, and
// tells the owner through OnClosed(); the owner then hands the object to
// Hub::DeferDelete(), so it is never freed inside one of its own handlers.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "H2Session.hpp"
#include "THub.hpp"

namespace grpc_green {

// Pseudo HTTP/2 error code passed to H2Stream::OnClose() when the transport
// itself is gone (socket error, EOF, connection refused, local close).
constexpr uint32_t kConnectionLost = 0xffffffffu;

struct SocketAddress {
  sockaddr_storage addr;
  socklen_t len;
  std::string Describe() const;  // "ipv4:127.0.0.1:50051" / "ipv6:[::1]:50051"
};

// Parses "host:port", "[v6]:port", "ipv4:h:p", "ipv6:[h]:p", "dns:///h:p"
// and resolves it (numeric or via getaddrinfo). Returns false with `err`.
bool ResolveTarget(const std::string& target, std::vector<SocketAddress>* out,
                   std::string* host_port, std::string* err);

class Connection : public Flushable, public IoHandler, public H2Session::Delegate,
                   public Deferred, public ForkDroppable {
 public:
  enum State { kConnecting, kReady, kClosed };

  Connection(Hub* hub, H2Session::Role role, const H2Settings& settings);
  ~Connection() override;

  // Server side: adopts an accepted, non-blocking socket.
  bool Adopt(int fd, const std::string& peer);
  // Client side: starts a non-blocking connect to the first address that
  // answers; waiters registered with WaitReady() learn the outcome.
  void Connect(std::vector<SocketAddress> addresses);
  // Parks the calling greenlet until the connection is ready or has failed
  // (or `timeout` passes). Returns Waiter's result.
  Waiter::Result WaitReady(double timeout);

  State state() const { return state_; }
  bool ready() const { return state_ == kReady && !draining_; }
  bool draining() const { return draining_; }
  const std::string& peer() const { return peer_; }
  const std::string& error() const { return error_; }
  H2Session& h2() { return *h2_; }
  Hub* hub() const { return hub_; }

  // Something was submitted: flush at the end of this hub iteration.
  void Kick() {
    if (state_ == kReady) hub_->MarkDirty(this);
  }
  // GOAWAY, then close once every stream is done.
  void Drain(uint32_t error_code);
  // Immediate close; attached streams see OnClose(kConnectionLost).
  void Close(const std::string& reason);
  // Sends GOAWAY and whatever else is queued (as far as the socket takes it
  // without blocking), then closes.
  void GoawayAndClose(const std::string& reason);

  void Flush() override;
  void OnIo(int events) override;
  // In a forked child: closes the socket without writing, and the
  // connection stays closed (its streams are the parent's; nobody is told).
  void DropAfterFork() override;

 protected:
  virtual void OnReady() {}
  virtual void OnClosed() {}
  void OnGoaway(uint32_t error_code, int32_t last_stream_id) override;

 private:
  void StartNextAddress();
  void FinishConnect();
  void WakeReadyWaiters();
  void MaybeFinishDrain();
  void UpdateWriteInterest();

  Hub* hub_;
  State state_;
  bool draining_ = false;
  int fd_ = -1;
  std::unique_ptr<IoWatcher> io_;
  std::unique_ptr<H2Session> h2_;
  std::string peer_;
  std::string error_;
  std::string out_;
  size_t out_off_ = 0;
  std::vector<SocketAddress> addresses_;
  size_t next_address_ = 0;
  std::vector<Waiter*> ready_waiters_;
};

}  // namespace grpc_green
