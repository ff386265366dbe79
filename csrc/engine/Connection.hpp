// A TCP connection carrying one HTTP/2 session, driven by a Reactor.
//
// Reads happen in the io handler (as much as the socket has, fed straight
// into nghttp2); writes are corked: submitting frames only marks the
// connection dirty, and the reactor flushes it once per pass with a single
// send(). When the socket is full the rest waits for writability.
//
// Lifetime: a Connection is owned by its channel or server. Close() stops
// the watchers before closing the fd, fails every attached stream, and
// tells the owner through OnClosed(); the owner then hands the object to
// Reactor::DeferDelete(), so it is never freed inside one of its own
// handlers.
//
// Handshake deadline: a connection whose peer has not sent its SETTINGS
// within the handshake timeout closes (one timer per connection, armed at
// connect or accept and stopped by the peer's SETTINGS). A client connection
// is ready for calls (OnReady()) only once the server's SETTINGS are in.
//
// Errors: the io handler and Flush() never throw. What their work throws
// (std::bad_alloc, say) closes the connection, and its streams end.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "Address.hpp"
#include "H2Session.hpp"
#include "Reactor.hpp"

namespace grpc_green {

// Pseudo HTTP/2 error code passed to H2Stream::OnClose() when the transport
// itself is gone (socket error, EOF, connection refused, local close).
constexpr uint32_t kConnectionLost = 0xffffffffu;

class Connection : public Flushable,
                   public IoHandler,
                   public H2Session::Delegate,
                   public Deferred,
                   public Droppable,
                   private TimerHandler {
 public:
  enum State { kConnecting, kReady, kClosed };

  Connection(Reactor* reactor, H2Session::Role role, const H2Settings& settings);
  ~Connection() override;

  // Server side: adopts an accepted, non-blocking socket (closed on failure).
  // The client has `handshake_timeout` seconds (< 0: no limit) to send its
  // preface and SETTINGS.
  void Adopt(int fd, std::string peer, double handshake_timeout = -1) noexcept;
  // Client side: starts a non-blocking connect to the first address that
  // answers; OnReady() or OnClosed() tells the outcome. Each address gets
  // `handshake_timeout` seconds (< 0: no limit) to accept the connection
  // and send its SETTINGS; one that has not accepted by then makes way for
  // the next.
  void Connect(std::vector<SocketAddress> addresses, double handshake_timeout = -1) noexcept;

  State state() const { return state_; }
  // The peer's SETTINGS have come.
  bool handshake_done() const { return handshake_done_; }
  bool ready() const { return state_ == kReady && handshake_done_ && !draining_; }
  bool draining() const { return draining_; }
  const std::string& peer() const { return peer_; }
  const std::string& error() const { return error_; }
  H2Session& h2() { return *h2_; }
  Reactor* reactor() const { return reactor_; }

  // Something was submitted: flush at the end of this pass.
  void Kick() {
    if (state_ == kReady) reactor_->MarkDirty(this);
  }
  // GOAWAY, then close once every stream is done.
  void Drain(uint32_t error_code);
  // Immediate close; attached streams see OnClose(kConnectionLost).
  void Close(std::string_view reason) noexcept;
  // Sends GOAWAY (`error_code`, `reason` as its debug data when
  // `debug`) and whatever else is queued, as far as the socket takes it
  // without blocking, then closes.
  void GoawayAndClose(std::string_view reason, uint32_t error_code = NGHTTP2_NO_ERROR,
                      bool debug = false) noexcept;

  void Flush() noexcept override;
  void OnIo(int events) noexcept override;
  // The reactor's owner went away: closes the socket without writing, and
  // the connection stays closed (its streams are not told).
  void Drop() noexcept override;

 protected:
  virtual void OnReady() {}
  // Closed, or (draining() true) told by the peer to go away: no new
  // streams here.
  virtual void OnClosed() noexcept {}
  void OnGoaway(uint32_t error_code, int32_t last_stream_id) override;

 private:
  void HandleIo(int events);
  void DoFlush();
  void StartNextAddress();
  void FinishConnect();
  // The peer's SETTINGS came: the handshake timer stops.
  void FinishHandshake();
  // Arms the handshake timer for one attempt; false (the connection
  // closed) when the loop refused it.
  bool StartHandshakeTimer();
  void OnTimer() noexcept override;
  void MaybeFinishDrain();
  void UpdateWriteInterest();
  // Close() for an exception caught in a handler.
  void Fail(const char* what) noexcept;

  Reactor* reactor_;
  State state_;
  bool draining_ = false;
  bool handshake_done_ = false;
  int fd_ = -1;
  double handshake_timeout_ = -1;
  std::unique_ptr<IoWatcher> io_;
  std::unique_ptr<Timer> handshake_timer_;
  std::unique_ptr<H2Session> h2_;
  std::string peer_;
  std::string error_;
  std::string out_;
  size_t out_off_ = 0;
  std::vector<SocketAddress> addresses_;
  size_t next_address_ = 0;
};

}  // namespace grpc_green
