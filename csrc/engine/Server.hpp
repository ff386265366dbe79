// The server engine: listening sockets, the connections they accept, and
// the state machine of each call. No Python, and nothing here blocks.
//
// A stream whose request headers are complete and valid becomes a call:
// the server hands it to its Delegate (OnCall), which runs a handler for
// it; the handler reads and writes through the ServerCall and ends it with
// Finish(). The greenlet bindings (../PyServer.cpp) run each handler in a
// pooled greenlet; the GoogleTests answer from the hooks themselves.
//
// Ownership: a ServerCall is made by the delegate (NewCall(), so the
// bindings can add what they keep per call) and counted: the engine holds
// it while its stream is open, whoever else keeps it Retain()s and
// Release()s it, and the last release frees it between reactor passes.
// The server owns its listeners and connections.
//
// Errors: hooks are noexcept. A handler's failure to start ends its call
// INTERNAL; what a connection's handlers throw closes that connection.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "Connection.hpp"

namespace grpc_green {

struct ServerOptions {
  long max_concurrent_rpcs = -1;  // < 0: no limit
  size_t max_recv = 4 * 1024 * 1024;
  long long max_send = -1;  // < 0: no limit
  H2Settings h2;
  bool reuseport = true;  // grpc.so_reuseport: processes may share a port
  // Seconds a client has to send its preface and SETTINGS (< 0: no limit);
  // then GOAWAY and close (grpc.server_handshake_timeout_ms).
  double handshake_timeout = 120;
};

class Server;
class ServerConnection;
class Listener;

class ServerCall : public H2Stream, public Deferred, private TimerHandler {
 public:
  ServerCall();
  ~ServerCall() override;

  // The request's :path ("/package.Service/Method" from gRPC clients).
  std::string_view method() const { return path_; }
  const std::string& peer() const { return peer_; }
  double deadline() const { return deadline_; }  // < 0: none
  Reactor* reactor() const { return reactor_.get(); }
  // On the wire, not finished, not cancelled (by the client, the deadline
  // or the server).
  bool active() const { return attached() && !finished_ && !cancelled_; }

  // --- requests
  bool has_message() const { return deframer.has_message(); }
  // Takes the next request message; reading gives the client its window back.
  std::string TakeMessage();
  // No more request messages will come: the client ended its stream, or
  // the call is over.
  bool requests_done() const {
    return remote_ended || !attached() || finished_ || cancelled_ || deframer.failed();
  }

  // --- responses
  // False when they were sent already or the call is over.
  bool SendInitialMetadata(const Headers& md);
  // Queues one response message (the initial metadata go first). False
  // when the call is no longer active; a message above the server's send
  // limit ends the call RESOURCE_EXHAUSTED.
  bool Write(const char* data, size_t len);
  // A writer should wait (OnWritable) before writing more.
  bool send_blocked() const { return active() && session()->SendBlocked(this); }
  // Sends the status and trailing metadata (a Trailers-Only response when
  // nothing else went out). False if the call was no longer active.
  bool Finish(int code, std::string_view details, const Headers& trailing);
  // Resets the stream (RST_STREAM CANCEL).
  void Cancel();

  // The reactor's owner went away (a forked child holds the parent's
  // calls): every method is inert from now on, the wire is not touched.
  void Forget() noexcept {
    finished_ = true;
    cancelled_ = true;
  }

  void Retain() noexcept { ++holds_; }
  void Release() noexcept;

 protected:
  // Hooks for the owner; they never block and never throw.
  virtual void OnReadable() noexcept {}  // a message, the end of the requests, or the end
  virtual void OnWritable() noexcept {}  // writers re-check send_blocked() and active()

 private:
  friend class Server;
  void OnHeaders() override;
  void OnMessages() override;
  void OnRemoteEnd() override { OnReadable(); }
  void OnSendProgress() override { OnWritable(); }
  void OnClose(uint32_t err) noexcept override;
  void OnTimer() noexcept override;
  bool SendHeaders(const Headers& md);
  // Ends the call here with a status (deadline, bad request stream).
  void EndLocally(int code, std::string_view details) noexcept;
  // A request that is not gRPC at all: an HTTP error status.
  void RespondHttpError(int http_status, int code, const std::string& details);
  void Kick();

  ReactorRef reactor_;
  Server* server_ = nullptr;          // while attached
  ServerConnection* conn_ = nullptr;  // while attached
  std::string peer_;
  std::string_view path_;  // into `headers`
  double deadline_ = -1;
  long long max_send_ = -1;
  bool headers_sent_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  bool counted_ = false;  // counts against maximum_concurrent_rpcs
  size_t holds_ = 1;      // the engine's, while the stream is open
  std::unique_ptr<Timer> timer_;
};

class Server final : private TimerHandler {
 public:
  class Delegate {
   public:
    // A client opened a stream: make its call (nullptr refuses the stream).
    virtual ServerCall* NewCall() = 0;
    // Valid request headers: start a handler for `call` (Retain() it to keep
    // it). False: no handler could start, and the call ends INTERNAL.
    virtual bool OnCall(ServerCall* call) noexcept = 0;
    // The call's stream is over; the engine lets go of it after this.
    virtual void OnCallClosed(ServerCall* call) noexcept = 0;
    // Stop() has finished: every call and connection has ended.
    virtual void OnTerminated() noexcept = 0;

   protected:
    ~Delegate() = default;
  };

  Server(ReactorRef reactor, Delegate* delegate, ServerOptions opts);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Reactor* reactor() const { return reactor_.get(); }

  // Binds `address` ("host:port", "[v6]:port"; port 0 picks one). Returns
  // the port, or -1 with `err`.
  int AddPort(const std::string& address, std::string* err);
  // Starts accepting. False when the loop refused to watch a listening
  // socket (those that it took accept).
  bool Start();
  // Refuses new calls at once; in-flight calls get `grace` seconds (<= 0:
  // none) before their connections close. OnTerminated() follows once
  // everything has ended (maybe from inside this call).
  void Stop(double grace);

 private:
  friend class ServerConnection;
  friend class ServerCall;
  friend class Listener;
  void Accept(int listen_fd);
  H2Stream* NewStream(ServerConnection* conn);
  void OnRequestHeaders(ServerCall* call);
  void OnCallClosed(ServerCall* call) noexcept;
  void OnConnectionClosed(ServerConnection* conn) noexcept;
  void OnTimer() noexcept override { CancelAll(); }
  // Ends every call now: connections close (after a last attempt to send
  // what is queued, the GOAWAY included); clients see UNAVAILABLE.
  void CancelAll() noexcept;
  void CloseConnections(const char* reason) noexcept;
  void CheckTerminated() noexcept;

  ReactorRef reactor_;
  Delegate* delegate_;
  ServerOptions opts_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<ServerConnection*> conns_;
  long active_ = 0;
  bool started_ = false;
  bool stopping_ = false;
  bool terminated_ = false;
  std::unique_ptr<Timer> grace_timer_;
};

}  // namespace grpc_green
