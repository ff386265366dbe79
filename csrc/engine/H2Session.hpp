// HTTP/2 sessions for gRPC: one nghttp2 session per connection, client or
// server role, fed from and drained into memory buffers.
//
// Pure C++: no Python, no sockets, no event loop. The IO layer feeds
// received bytes with Receive() and collects bytes to write with
// CollectOutput(); the call layer subclasses H2Stream and reacts to its
// hooks. This is also what the GoogleTest suite drives, two sessions
// talking through strings.
//
// Ownership: an H2Session never owns its streams. A stream is attached by
// SubmitRequest() (client) or returned by Delegate::NewStream() (server)
// and detached right after its OnClose() hook (or by Abandon()); whoever
// created it frees it, never during a hook of its own.
//
// Hooks are called from inside Receive() or CollectOutput(): they must not
// call Receive()/CollectOutput() again, and must not switch greenlets.
//
// Errors: no exception leaves an nghttp2 callback. What a hook or the
// session's own bookkeeping throws (std::bad_alloc, say) fails the
// callback, nghttp2 then fails the session, and Receive()/CollectOutput()
// return false with error() set: the connection closes. OnClose() is
// noexcept, as it runs while a connection is being torn down.
//
// Request headers (server role) are checked here rather than by nghttp2's
// HTTP messaging rules, which would reset a gRPC request whose :path lacks
// its leading "/" before the server could answer UNIMPLEMENTED as gRPC
// servers do. The rest of those rules is kept: known pseudo headers first
// and once each, :method, :scheme and :path present, lower-case token
// names, no connection-specific fields, "te" only "trailers", no pseudo
// headers in trailers, trailers end the stream. A request that breaks one
// is reset with PROTOCOL_ERROR and never reaches the server's hooks; a
// field whose value holds CR, LF or NUL is dropped, as nghttp2 drops it.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpc_codec.hpp"

namespace grpc_green {

using Header = std::pair<std::string, std::string>;
using Headers = std::vector<Header>;

// Value of the first header named `key`, or nullptr.
inline const std::string* FindHeader(const Headers& headers, std::string_view key) {
  for (auto& h : headers)
    if (h.first == key) return &h.second;
  return nullptr;
}

class H2Session;

// A header for nghttp2's submit calls; it points into k and v (nghttp2
// copies them during the call).
inline nghttp2_nv MakeNv(std::string_view k, std::string_view v) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(), v.size(),
          NGHTTP2_NV_FLAG_NONE};
}

class H2Stream {
 public:
  explicit H2Stream(size_t max_recv_message) : deframer(max_recv_message) {}
  virtual ~H2Stream() = default;

  int32_t id() const { return id_; }
  H2Session* session() const { return session_; }
  bool attached() const { return session_ != nullptr; }

  // --- receive side (filled by the session) ---
  Headers headers;   // request (server) or response (client) headers
  Headers trailers;  // client: trailers, or the headers of a Trailers-Only
                     // response are in `headers` with headers_end_stream
  bool headers_received = false;
  bool trailers_received = false;
  bool remote_ended = false;  // END_STREAM seen
  bool malformed = false;     // server: a request that broke HTTP/2's rules (reset)
  // Why nghttp2 reset this stream itself (a response that broke HTTP/2's
  // rules, say); empty otherwise.
  std::string reset_reason;
  int http_status = 0;  // client: value of :status
  Deframer deframer;

  // --- send side (drained by the session's data provider) ---
  std::string sendbuf;
  size_t send_off = 0;
  bool send_closed = false;   // no more messages will be queued
  bool has_trailers = false;  // server: submit `send_trailers` at the end
  Headers send_trailers;
  bool data_deferred = false;
  bool body_started = false;  // a data provider is attached

  size_t pending_send() const { return sendbuf.size() - send_off; }

  // --- flow control ---
  // DATA bytes received on this stream that have not been given back to
  // the peer as stream window yet. They are given back while the reader
  // keeps up (see H2Session::Consumed()).
  size_t unconsumed = 0;

  // --- hooks (called inside Receive()/CollectOutput()) ---
  virtual void OnHeaders() {}       // headers block complete
  virtual void OnTrailers() {}      // client: trailers complete
  virtual void OnMessages() {}      // deframer gained messages or failed
  virtual void OnSendProgress() {}  // part of sendbuf went to the wire
  virtual void OnRemoteEnd() {}     // END_STREAM received
  // Last hook; detached after. Also called by CloseAllStreams().
  virtual void OnClose(uint32_t /*h2_error_code*/) noexcept {}

 private:
  friend class H2Session;
  int32_t id_ = -1;
  uint8_t pseudo_seen_ = 0;    // server: request pseudo headers received (bits)
  bool regular_seen_ = false;  // server: a regular field came, pseudo ones may not
  H2Session* session_ = nullptr;
  H2Stream* prev_ = nullptr;  // the session's list of attached streams
  H2Stream* next_ = nullptr;
};

struct H2Settings {
  uint32_t initial_window_size = 1 << 20;  // per stream
  uint32_t connection_window_size = 4 << 20;
  uint32_t max_concurrent_streams = 0;  // 0: leave nghttp2's default
  uint32_t max_frame_size = 16384;
  size_t max_header_list_size = 16384 * 4;
  // Server: client RST_STREAMs tolerated in a burst / per second after it.
  uint64_t reset_burst = 100000;
  uint64_t reset_rate = 10000;
  // Flow control: a stream's window is given back to the peer only while
  // fewer than this many bytes of complete messages wait for the reader,
  // so a reader that stops reading stops the sender after at most this
  // plus one window (plus the message being assembled) per stream.
  size_t max_buffered_per_stream = 16 * 1024;
};

// Bytes of queued outgoing messages past which a writer parks even when
// the peer's window is wide open: writes are batched up to this much.
constexpr size_t kSendHighWater = 64 * 1024;

class H2Session {
 public:
  enum Role { kClient, kServer };

  class Delegate {
   public:
    virtual ~Delegate() = default;
    // Server: a peer opened stream `id`. Return the stream to attach, or
    // nullptr to refuse it with RST_STREAM(REFUSED_STREAM).
    virtual H2Stream* NewStream(int32_t /*id*/) { return nullptr; }
    // The peer sent GOAWAY.
    virtual void OnGoaway(uint32_t /*error_code*/, int32_t /*last_stream_id*/) {}
  };

  H2Session(Role role, Delegate* delegate, const H2Settings& settings);
  ~H2Session();
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  bool ok() const { return session_ != nullptr && error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& submit_error() const { return submit_error_; }
  Role role() const { return role_; }

  // Feeds bytes read from the peer. Returns false on a connection-level
  // error (error() says which); the connection must then be closed.
  bool Receive(const uint8_t* data, size_t len);
  // Appends everything the session wants to send to `out`.
  bool CollectOutput(std::string& out);
  bool WantsOutput() const;
  // False once both sides are done (after GOAWAY and all streams closed).
  bool WantsIo() const;
  // The peer's first SETTINGS frame has come: the HTTP/2 handshake is done.
  bool settings_received() const { return settings_received_; }

  // Client: opens a stream with `headers` (pseudo headers first) and a body
  // taken from stream->sendbuf. Returns the stream id, or -1 with
  // submit_error() saying why (e.g. stream ids exhausted: open a new
  // connection); the session stays usable for its other streams.
  int32_t SubmitRequest(H2Stream* stream, const nghttp2_nv* nva, size_t nvlen);
  // Server: response headers; with `end_stream` they are a Trailers-Only
  // response. Otherwise a body follows from sendbuf, ended by trailers.
  bool SubmitResponse(H2Stream* stream, const nghttp2_nv* nva, size_t nvlen, bool end_stream);
  // More of sendbuf is ready, or send_closed/has_trailers changed.
  void ResumeData(H2Stream* stream);
  // Bytes the peer's flow-control windows (stream and connection) let this
  // stream send now; SIZE_MAX when the stream is not open yet.
  size_t SendWindow(const H2Stream* stream) const;
  // True when a writer on `stream` should park: more is queued than the
  // batching high-water mark, or than the peer's window lets out now (so
  // a sender gets at most one message past the window ahead).
  bool SendBlocked(const H2Stream* stream) const {
    size_t pending = stream->pending_send();
    return pending > kSendHighWater || (pending > 0 && pending > SendWindow(stream));
  }
  // The reader popped messages from stream->deframer: give the peer its
  // window back if the stream's backlog is under the limit. Returns true
  // when a WINDOW_UPDATE may be waiting to be sent.
  bool Consumed(H2Stream* stream);
  // RST_STREAM; the stream's OnClose() runs when nghttp2 closes it.
  void Reset(H2Stream* stream, uint32_t error_code);
  // Resets the stream and detaches it at once: no hook runs for it again.
  void Abandon(H2Stream* stream, uint32_t error_code);
  // GOAWAY with the last stream id processed so far; `debug` goes in its
  // debug data.
  void Goaway(uint32_t error_code, std::string_view debug = {});
  // Connection lost: calls OnClose(error_code) on every attached stream and
  // detaches them all.
  void CloseAllStreams(uint32_t error_code);
  size_t stream_count() const { return stream_count_; }

 private:
  static nghttp2_session_callbacks* MakeCallbacks();
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t,
                      const uint8_t*, size_t, uint8_t, void*);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int OnStreamClose(nghttp2_session*, int32_t, uint32_t, void*);
  static int OnFrameSend(nghttp2_session*, const nghttp2_frame*, void*);
  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*,
                          nghttp2_data_source*, void*);
  static int OnInvalidFrame(nghttp2_session*, const nghttp2_frame*, int, void*);
  static int OnError(nghttp2_session*, int, const char*, size_t, void*);
  // The bodies of the callbacks above; they may throw.
  int BeginHeaders(const nghttp2_frame* frame);
  int Header(const nghttp2_frame* frame, std::string_view name, std::string_view value);
  int FrameRecv(const nghttp2_frame* frame);
  int DataChunk(int32_t stream_id, const uint8_t* data, size_t len);
  ssize_t ReadStreamBody(int32_t stream_id, uint8_t* buf, size_t length, uint32_t* data_flags);
  // Server: checks one request field; false when it makes the request malformed.
  bool CheckRequestField(H2Stream* s, bool trailers, std::string_view name, std::string_view value,
                         bool* keep);
  // Server: the request broke HTTP/2's rules; reset it.
  void RejectMalformed(H2Stream* s);
  // A callback caught an exception: the session fails.
  int CallbackFailed(const char* what) noexcept;

  void Attach(H2Stream* s, int32_t id);
  void Detach(H2Stream* s);
  H2Stream* StreamOf(int32_t id) const;

  Role role_;
  Delegate* delegate_;
  size_t max_buffered_;
  nghttp2_session* session_ = nullptr;
  std::string error_;
  std::string submit_error_;
  std::string stream_error_;  // nghttp2's words on the stream error it is about to report
  H2Stream* streams_ = nullptr;
  size_t stream_count_ = 0;
  bool settings_received_ = false;
  // StreamOf()'s last answer; Attach() and Detach() keep it true.
  mutable int32_t cached_id_ = -1;
  mutable H2Stream* cached_stream_ = nullptr;
};

}  // namespace grpc_green
