// The client engine: a channel's connections and the state machine of each
// call. No Python, and nothing here blocks.
//
// Channel::Start() begins a call and returns at once. The call goes out on
// the channel's ready connection, or waits in the channel's pending list
// while a connection comes up (and, for wait_for_ready calls, through
// reconnect backoff). What happens next reaches the call's owner through
// ClientCall's hooks (OnInitialMetadata, OnResponse, OnSendReady, OnDone),
// called from the reactor's handlers: the greenlet bindings wake parked
// greenlets there (../PyChannel.cpp), the GoogleTests record them.
//
// Ownership: the owner of a ClientCall (whoever made it) frees it, and
// only between reactor passes (Reactor::DeferDelete), never inside a hook.
// A ClientCall must not outlive its Channel while it is pending or on a
// stream; it may once done. The channel owns its connections; a closed one
// goes to the reactor's graveyard.
//
// Errors: hooks are noexcept; a call always ends with a status, even when
// memory runs out on the way (the details may then be empty).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "Connection.hpp"

namespace grpc_green {

struct ChannelOptions {
  size_t max_recv = 4 * 1024 * 1024;
  long long max_send = -1;  // < 0: no limit
  std::string authority;    // empty: the target's host:port
  std::string user_agent = "grpc_green";
  H2Settings h2;
  // Reconnection (gRPC's connection-backoff document): a connection attempt
  // that has not received the server's SETTINGS after max(min_connect_timeout,
  // the current backoff delay) seconds fails; wait_for_ready calls then wait
  // initial_backoff seconds, 1.6 times longer each failure, at most
  // max_backoff, before the next attempt.
  double min_connect_timeout = 20;
  double initial_backoff = 1;
  double max_backoff = 120;
};

// What a call needs to start.
struct CallArgs {
  std::string_view path;
  double timeout = -1;  // seconds; < 0: none
  // Validated user metadata in wire form; moved from when the call must
  // wait for a connection.
  Headers* metadata = nullptr;
  bool wait_for_ready = false;
  // The one message of a unary request, sent with the headers. Without it
  // the request is a stream: Write() each message, then DoneWriting().
  const char* message = nullptr;
  size_t message_len = 0;
  bool has_message = false;
};

class Channel;
class ClientConnection;

class ClientCall : public H2Stream, public Deferred, private TimerHandler {
 public:
  // `unary_response`: the caller takes exactly one response message, once
  // the status has come; arriving messages call no hook, and a response
  // with zero or several messages ends UNIMPLEMENTED.
  explicit ClientCall(bool unary_response);
  ~ClientCall() override;

  bool done() const { return done_; }
  int code() const { return code_; }
  const std::string& details() const { return details_; }
  double deadline() const { return deadline_; }  // < 0: none
  Reactor* reactor() const { return reactor_.get(); }

  // Initial metadata (empty for a Trailers-Only response) and trailing
  // metadata as received so far.
  const Headers* initial_headers() const {
    return headers_received && !trailers_only() ? &headers : nullptr;
  }
  const Headers* trailing_headers() const {
    if (trailers_received) return &trailers;
    return headers_received && trailers_only() ? &headers : nullptr;
  }

  // The next response message (has_message() first). Reading gives the
  // peer its flow-control window back.
  bool has_message() const { return deframer.has_message(); }
  std::string TakeMessage();

  // Queues one request message. False when the call has ended or its
  // request stream is closed (a message above the channel's send limit
  // ends the call RESOURCE_EXHAUSTED).
  bool Write(const char* data, size_t len);
  // A writer should wait (OnSendReady) before writing more: more is queued
  // than the peer's window lets out, or than the batching mark.
  bool send_blocked() const;
  // Ends the request stream.
  void DoneWriting();
  // Ends the call here with this status: RST_STREAM(CANCEL) on the wire,
  // unread messages dropped. False if it had already ended.
  bool Cancel(int code, std::string_view details) noexcept;

 protected:
  // Hooks for the owner; they never block and never throw.
  virtual void OnInitialMetadata() noexcept {}
  virtual void OnResponse() noexcept {}   // a message to read (streaming responses)
  virtual void OnSendReady() noexcept {}  // writers re-check send_blocked()
  virtual void OnDone() noexcept {}       // the status is known

 private:
  friend class Channel;
  bool trailers_only() const { return remote_ended && !trailers_received; }
  bool pending() const { return pending_link_.linked; }
  // Never fails: details that cannot be copied (out of memory) are left
  // out, the status stays.
  void Finish(int code, std::string_view details) noexcept;
  // Stops listening: resets the stream if it is on one, leaves the pending
  // list if it is there.
  void Abandon(uint32_t h2_code = NGHTTP2_CANCEL) noexcept;
  void FinishFromHeaders(const Headers& src) noexcept;
  void Kick();

  // H2Stream hooks.
  void OnHeaders() override { OnInitialMetadata(); }
  void OnMessages() override;
  void OnRemoteEnd() override;
  void OnSendProgress() override { OnSendReady(); }
  void OnClose(uint32_t err) noexcept override;
  void OnTimer() noexcept override { Cancel(kDeadlineExceeded, "Deadline Exceeded"); }

  bool unary_response_;
  bool done_ = false;
  bool wait_for_ready_ = false;
  int code_ = kUnknown;
  std::string details_;
  double deadline_ = -1;
  long long max_send_ = -1;
  ReactorRef reactor_;
  Channel* channel_ = nullptr;        // set by Start(); used while pending or on a stream
  ClientConnection* conn_ = nullptr;  // valid while attached()
  std::unique_ptr<Timer> timer_;
  // While waiting for a connection: the channel's pending list, and what
  // the request headers need then.
  ListLink<ClientCall> pending_link_;
  std::string pending_path_;
  Headers pending_metadata_;
};

class Channel {
 public:
  Channel(ReactorRef reactor, std::string target, ChannelOptions opts);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  Reactor* reactor() const { return reactor_.get(); }
  bool closed() const { return closed_; }

  // Starts `call` (owned by the caller). On return it is on a stream,
  // pending, or already done (no connection could be had, a message above
  // the send limit, a closed channel).
  void Start(ClientCall* call, CallArgs& args);
  // Ends every call CANCELLED "Channel closed!" and closes the connections.
  void Close() noexcept;

 private:
  friend class ClientCall;
  friend class ClientConnection;
  // Sends the call's headers (and its unary request) on `conn`; the
  // grpc-timeout header says `timeout_s` (no header when the call has no
  // deadline).
  void Submit(ClientCall* call, ClientConnection* conn, std::string_view path, const Headers& md,
              double timeout_s);
  void StartConnecting() noexcept;
  void OnConnectionReady(ClientConnection* c);
  void OnConnectionClosed(ClientConnection* c) noexcept;
  void RemovePending(ClientCall* call) noexcept { pending_.remove(call); }
  // No connection could be made (refused, or no SETTINGS in time):
  // fail-fast calls end UNAVAILABLE,
  // wait_for_ready ones wait for the next attempt.
  void ConnectFailed() noexcept;

  class Backoff;
  ReactorRef reactor_;
  std::string target_;
  ChannelOptions opts_;
  bool closed_ = false;
  bool resolved_ = false;
  std::vector<SocketAddress> addresses_;
  ClientConnection* conn_ = nullptr;      // the one new calls go to
  std::vector<ClientConnection*> conns_;  // every connection not closed yet
  std::string last_error_;
  // Calls waiting for a connection, oldest first.
  IntrusiveList<ClientCall, &ClientCall::pending_link_> pending_;
  std::unique_ptr<Backoff> backoff_;
};

}  // namespace grpc_green
