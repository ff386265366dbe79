#include "H2Session.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>

namespace grpc_green {

H2Session::H2Session(Role role, Delegate* delegate, const H2Settings& settings)
    : role_(role), delegate_(delegate), max_buffered_(settings.max_buffered_per_stream) {
  static nghttp2_session_callbacks* callbacks = MakeCallbacks();
  nghttp2_option* option = nullptr;
  int rv = nghttp2_option_new(&option);
  if (rv != 0) {
    error_ = nghttp2_strerror(rv);
    return;
  }
  nghttp2_option_set_max_send_header_block_length(option, 1 << 20);
  // nghttp2 keeps closed streams for RFC 7540 priorities, as many as
  // MAX_CONCURRENT_STREAMS allows (unlimited by default): memory that grows
  // with every call. gRPC does not use priorities.
  nghttp2_option_set_no_closed_streams(option, 1);
  // Flow control is ours: the connection window is given back as DATA
  // arrives, a stream's window as its reader takes messages (Consumed()).
  nghttp2_option_set_no_auto_window_update(option, 1);
  // grpc-message values may end in spaces (percent-encoding leaves them
  // alone); RFC 9113's whitespace rule would reset such streams.
  nghttp2_option_set_no_rfc9113_leading_and_trailing_ws_validation(option, 1);
  // A server checks requests itself (CheckRequestField): see the header.
  if (role == kServer) nghttp2_option_set_no_http_messaging(option, 1);
#ifdef GRPC_GREEN_HAVE_STREAM_RESET_RATE_LIMIT
  // The rapid-reset guard (CVE-2023-44487) ends a connection after a burst
  // of 1000 client resets by default; gRPC clients cancel legitimately (every
  // expired deadline is a RST_STREAM), so allow far more before calling it a
  // flood.
  if (role == kServer)
    nghttp2_option_set_stream_reset_rate_limit(option, settings.reset_burst, settings.reset_rate);
#endif
  if (role == kClient) {
    rv = nghttp2_session_client_new2(&session_, callbacks, this, option);
  } else {
    rv = nghttp2_session_server_new2(&session_, callbacks, this, option);
  }
  nghttp2_option_del(option);
  if (rv != 0) {
    error_ = nghttp2_strerror(rv);
    session_ = nullptr;
    return;
  }
  nghttp2_settings_entry iv[5];
  size_t n = 0;
  iv[n++] = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings.initial_window_size};
  iv[n++] = {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, settings.max_frame_size};
  iv[n++] = {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
             static_cast<uint32_t>(settings.max_header_list_size)};
  if (role == kClient) iv[n++] = {NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
  if (settings.max_concurrent_streams)
    iv[n++] = {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings.max_concurrent_streams};
  rv = nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, n);
  if (rv == 0 && settings.connection_window_size > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    rv = nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                               settings.connection_window_size);
  }
  if (rv != 0) error_ = nghttp2_strerror(rv);
}

H2Session::~H2Session() {
  // Streams still attached are detached silently: their owners learn of the
  // connection's end through CloseAllStreams(), which the IO layer calls
  // first.
  while (streams_) Detach(streams_);
  if (session_) nghttp2_session_del(session_);
}

bool H2Session::Receive(const uint8_t* data, size_t len) {
  if (!ok()) return false;
  ssize_t rv = nghttp2_session_mem_recv(session_, data, len);
  if (rv < 0) {
    if (error_.empty()) error_ = nghttp2_strerror(static_cast<int>(rv));
    return false;
  }
  // A protocol error after the preface queues GOAWAY and ends the session
  // without failing mem_recv: report it too (error() has nghttp2's reason).
  if (!nghttp2_session_want_read(session_) && !error_.empty()) return false;
  return true;
}

bool H2Session::CollectOutput(std::string& out) {
  if (!session_) return false;
  for (;;) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      error_ = nghttp2_strerror(static_cast<int>(n));
      return false;
    }
    if (n == 0) return true;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

bool H2Session::WantsOutput() const { return session_ && nghttp2_session_want_write(session_); }

bool H2Session::WantsIo() const {
  return session_ && (nghttp2_session_want_read(session_) || nghttp2_session_want_write(session_));
}

int32_t H2Session::SubmitRequest(H2Stream* stream, const nghttp2_nv* nva, size_t nvlen) {
  nghttp2_data_provider prd;
  prd.source.ptr = stream;
  prd.read_callback = ReadBody;
  int32_t id = nghttp2_submit_request(session_, nullptr, nva, nvlen, &prd, stream);
  if (id < 0) {
    submit_error_ = nghttp2_strerror(id);  // the session itself stays usable
    return -1;
  }
  stream->body_started = true;
  Attach(stream, id);
  return id;
}

bool H2Session::SubmitResponse(H2Stream* stream, const nghttp2_nv* nva, size_t nvlen,
                               bool end_stream) {
  nghttp2_data_provider prd;
  prd.source.ptr = stream;
  prd.read_callback = ReadBody;
  int rv = nghttp2_submit_response(session_, stream->id_, nva, nvlen, end_stream ? nullptr : &prd);
  if (rv != 0) return false;
  stream->body_started = !end_stream;
  return true;
}

void H2Session::ResumeData(H2Stream* stream) {
  if (stream->data_deferred && stream->attached()) {
    stream->data_deferred = false;
    nghttp2_session_resume_data(session_, stream->id_);
  }
}

size_t H2Session::SendWindow(const H2Stream* stream) const {
  if (!stream->attached()) return 0;
  int32_t w = nghttp2_session_get_stream_remote_window_size(session_, stream->id_);
  if (w < 0) return SIZE_MAX;
  int32_t c = nghttp2_session_get_remote_window_size(session_);
  return static_cast<size_t>(std::max(0, std::min(w, c)));
}

bool H2Session::Consumed(H2Stream* stream) {
  if (!stream->attached() || stream->unconsumed == 0 ||
      stream->deframer.queued_bytes() >= max_buffered_)
    return false;
  nghttp2_session_consume_stream(session_, stream->id_, stream->unconsumed);
  stream->unconsumed = 0;
  return true;
}

void H2Session::Reset(H2Stream* stream, uint32_t error_code) {
  if (stream->attached())
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream->id_, error_code);
}

void H2Session::Abandon(H2Stream* stream, uint32_t error_code) {
  if (!stream->attached()) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream->id_, error_code);
  Detach(stream);
}

void H2Session::Goaway(uint32_t error_code, std::string_view debug) {
  if (!session_) return;
  int32_t last = nghttp2_session_get_last_proc_stream_id(session_);
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last, error_code,
                        reinterpret_cast<const uint8_t*>(debug.data()), debug.size());
}

void H2Session::CloseAllStreams(uint32_t error_code) {
  while (streams_) {
    H2Stream* s = streams_;
    s->OnClose(error_code);  // noexcept
    if (s->session_ == this) Detach(s);
  }
}

void H2Session::Attach(H2Stream* s, int32_t id) {
  cached_id_ = id;
  cached_stream_ = s;
  s->id_ = id;
  s->session_ = this;
  s->prev_ = nullptr;
  s->next_ = streams_;
  if (streams_) streams_->prev_ = s;
  streams_ = s;
  ++stream_count_;
}

void H2Session::Detach(H2Stream* s) {
  if (s->session_ != this) return;
  if (cached_stream_ == s) {
    cached_id_ = -1;
    cached_stream_ = nullptr;
  }
  if (session_ && s->id_ > 0) nghttp2_session_set_stream_user_data(session_, s->id_, nullptr);
  if (s->prev_) s->prev_->next_ = s->next_;
  else streams_ = s->next_;
  if (s->next_) s->next_->prev_ = s->prev_;
  s->prev_ = s->next_ = nullptr;
  s->session_ = nullptr;
  --stream_count_;
}

H2Stream* H2Session::StreamOf(int32_t id) const {
  // The callbacks of one frame (and of one response) ask for the same
  // stream again and again.
  if (id != cached_id_) {
    cached_stream_ = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session_, id));
    cached_id_ = id;
  }
  return cached_stream_;
}

// ------------------------------------------------------------ callbacks
//
// Each static callback is a barrier: its body (a member function) may
// throw, and the exception fails the callback, which fails the session.

int H2Session::CallbackFailed(const char* what) noexcept {
  if (error_.empty()) {
    try {
      error_ = what;
    } catch (...) {
    }
  }
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

#define GG_H2_CALLBACK(self, body)                  \
  try {                                             \
    return body;                                    \
  } catch (const std::exception& e) {               \
    return (self)->CallbackFailed(e.what());        \
  } catch (...) {                                   \
    return (self)->CallbackFailed("unknown error"); \
  }

int H2Session::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  GG_H2_CALLBACK(self, self->BeginHeaders(frame));
}

int H2Session::BeginHeaders(const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST ||
      role_ != kServer)
    return 0;
  int32_t id = frame->hd.stream_id;
  H2Stream* s = delegate_->NewStream(id);
  if (!s) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  Attach(s, id);
  nghttp2_session_set_stream_user_data(session_, id, s);
  return 0;
}

int H2Session::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                        size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  GG_H2_CALLBACK(self,
                 self->Header(frame, std::string_view(reinterpret_cast<const char*>(name), namelen),
                              std::string_view(reinterpret_cast<const char*>(value), valuelen)));
}

namespace {

// Request pseudo headers, a bit each.
int PseudoBit(std::string_view name) {
  if (name == ":method") return 1;
  if (name == ":scheme") return 2;
  if (name == ":path") return 4;
  if (name == ":authority") return 8;
  return 0;
}
constexpr uint8_t kRequiredPseudo = 1 | 2 | 4;

bool IsConnectionSpecific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade";
}

const uint8_t* Bytes(std::string_view v) { return reinterpret_cast<const uint8_t*>(v.data()); }

}  // namespace

bool H2Session::CheckRequestField(H2Stream* s, bool trailers, std::string_view k,
                                  std::string_view v, bool* keep) {
  *keep = true;
  if (k.empty()) {
    *keep = false;  // nghttp2 drops an empty name too
    return true;
  }
  if (k[0] == ':') {
    int bit = PseudoBit(k);
    if (!bit || trailers || s->regular_seen_ || (s->pseudo_seen_ & bit) || v.empty()) return false;
    s->pseudo_seen_ = static_cast<uint8_t>(s->pseudo_seen_ | bit);
    if (bit == 1) return nghttp2_check_method(Bytes(v), v.size()) != 0;
    if (bit == 4) return nghttp2_check_path(Bytes(v), v.size()) != 0;
    if (bit == 8) return nghttp2_check_authority(Bytes(v), v.size()) != 0;
    return nghttp2_check_header_value(Bytes(v), v.size()) != 0;
  }
  s->regular_seen_ = true;
  if (!nghttp2_check_header_name(Bytes(k), k.size())) return false;
  if (IsConnectionSpecific(k)) return false;
  if (k == "te" && v != "trailers") return false;
  if (!nghttp2_check_header_value(Bytes(v), v.size())) *keep = false;
  return true;
}

void H2Session::RejectMalformed(H2Stream* s) {
  if (s->malformed) return;
  s->malformed = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id_, NGHTTP2_PROTOCOL_ERROR);
}

int H2Session::Header(const nghttp2_frame* frame, std::string_view k, std::string_view v) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  H2Stream* s = StreamOf(frame->hd.stream_id);
  if (!s || s->malformed) return 0;
  // After a 1xx block the final response is also a "HEADERS" category
  // block: trailers are what follows the response headers.
  bool trailers = s->headers_received && frame->headers.cat == NGHTTP2_HCAT_HEADERS;
  if (role_ == kServer) {
    bool keep;
    if (!CheckRequestField(s, trailers, k, v, &keep)) {
      RejectMalformed(s);
      return 0;
    }
    if (!keep) return 0;
  } else {
    if (!trailers && k == ":status") {
      int code = 0;
      for (char c : v) code = code * 10 + (c - '0');  // nghttp2 validated 3 digits
      s->http_status = code;
      return 0;
    }
    if (!trailers && s->http_status / 100 == 1) return 0;
    // A client keeps what the application sees as metadata and the status;
    // the other reserved headers of a response (content-type,
    // grpc-accept-encoding, ...) are read by nobody.
    if (IsReservedHeader(k) && k != "grpc-status" && k != "grpc-message" && k != "user-agent")
      return 0;
  }
  Headers& into = trailers ? s->trailers : s->headers;
  // One allocation for a typical block: a request's headers, or a
  // response's headers or trailers (a few each).
  if (into.empty()) into.reserve(role_ == kServer ? 12 : 4);
  into.emplace_back(k, v);
  return 0;
}

int H2Session::OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  GG_H2_CALLBACK(self, self->FrameRecv(frame));
}

int H2Session::FrameRecv(const nghttp2_frame* frame) {
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    delegate_->OnGoaway(frame->goaway.error_code, frame->goaway.last_stream_id);
    return 0;
  }
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
    // Off the HEADERS/DATA path: the handshake's end costs those nothing.
    if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK))
      settings_received_ = true;
    return 0;
  }
  H2Stream* s = StreamOf(frame->hd.stream_id);
  if (!s || s->malformed) return 0;
  bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (role_ == kClient && !s->headers_received && s->http_status / 100 == 1) {
      s->http_status = 0;  // informational (1xx): wait for the real response
      return 0;
    }
    if (s->headers_received && frame->headers.cat == NGHTTP2_HCAT_HEADERS) {
      if (role_ == kServer && !end_stream) {  // request trailers must end the stream
        RejectMalformed(s);
        return 0;
      }
      s->trailers_received = true;
      s->OnTrailers();
    } else {
      if (role_ == kServer && (s->pseudo_seen_ & kRequiredPseudo) != kRequiredPseudo) {
        RejectMalformed(s);
        return 0;
      }
      s->headers_received = true;
      s->OnHeaders();
    }
  }
  if (end_stream && s->attached() && !s->malformed) {
    s->remote_ended = true;
    s->OnRemoteEnd();
  }
  return 0;
}

int H2Session::OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                           size_t len, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  GG_H2_CALLBACK(self, self->DataChunk(stream_id, data, len));
}

int H2Session::DataChunk(int32_t stream_id, const uint8_t* data, size_t len) {
  // The connection window comes back at once: the per-stream windows are
  // what bounds buffering, and a slow stream must not stall the others.
  nghttp2_session_consume_connection(session_, len);
  H2Stream* s = StreamOf(stream_id);
  if (!s || s->malformed || s->deframer.failed()) return 0;
  s->unconsumed += len;
  size_t before = s->deframer.messages().size();
  bool ok = s->deframer.Feed(data, len);
  if (!ok || s->deframer.messages().size() != before) s->OnMessages();
  if (s->attached()) Consumed(s);
  return 0;
}

int H2Session::OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  H2Stream* s = self->StreamOf(stream_id);
  if (!s) return 0;
  s->OnClose(error_code);  // noexcept
  self->Detach(s);
  return 0;
}

ssize_t H2Session::ReadBody(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                            uint32_t* data_flags, nghttp2_data_source*, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  GG_H2_CALLBACK(self, self->ReadStreamBody(stream_id, buf, length, data_flags));
}

ssize_t H2Session::ReadStreamBody(int32_t stream_id, uint8_t* buf, size_t length,
                                  uint32_t* data_flags) {
  H2Stream* s = StreamOf(stream_id);
  if (!s) {
    // The owner abandoned the stream; a reset is already queued.
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  size_t n = s->pending_send();
  if (n > length) n = length;
  if (n) {
    std::memcpy(buf, s->sendbuf.data() + s->send_off, n);
    s->send_off += n;
    if (s->send_off == s->sendbuf.size()) {
      s->sendbuf.clear();
      s->send_off = 0;
    } else if (s->send_off >= (64u << 10) && s->send_off * 2 >= s->sendbuf.size()) {
      // A writer that keeps the buffer topped up never lets it empty:
      // drop the sent prefix once it is the larger half.
      s->sendbuf.erase(0, s->send_off);
      s->send_off = 0;
    }
    s->OnSendProgress();
  }
  if (s->pending_send() == 0) {
    if (s->send_closed) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      if (s->has_trailers) {
        std::vector<nghttp2_nv> nva;
        nva.reserve(s->send_trailers.size());
        for (auto& h : s->send_trailers) nva.push_back(MakeNv(h.first, h.second));
        if (nghttp2_submit_trailer(session_, stream_id, nva.data(), nva.size()) == 0)
          *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        s->has_trailers = false;
      }
    } else if (n == 0) {
      s->data_deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

int H2Session::OnFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  // A server that has sent its status before the request ended does not
  // want the rest of it: RST_STREAM(NO_ERROR) tells the client to stop.
  if (self->role_ != kServer || frame->hd.type != NGHTTP2_HEADERS ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  H2Stream* s = self->StreamOf(frame->hd.stream_id);
  if (s && !s->remote_ended)
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
  return 0;
}

int H2Session::OnInvalidFrame(nghttp2_session*, const nghttp2_frame* frame, int lib_error_code,
                              void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  // A stream nghttp2 resets itself for breaking HTTP/2's rules: its owner
  // learns why (the peer did not send that RST_STREAM, we do).
  if (lib_error_code != NGHTTP2_ERR_HTTP_HEADER && lib_error_code != NGHTTP2_ERR_HTTP_MESSAGING)
    return 0;
  H2Stream* s = self->StreamOf(frame->hd.stream_id);
  std::string reason = std::move(self->stream_error_);
  self->stream_error_.clear();
  if (!s || !s->reset_reason.empty()) return 0;
  try {
    s->reset_reason = reason.empty() ? nghttp2_strerror(lib_error_code) : std::move(reason);
  } catch (...) {
  }
  return 0;
}

int H2Session::OnError(nghttp2_session*, int lib_error_code, const char* msg, size_t len,
                       void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  // A stream-level error (a bad header on one stream) resets just that
  // stream: its reason goes to the stream (OnInvalidFrame, next).
  if (lib_error_code == NGHTTP2_ERR_HTTP_HEADER || lib_error_code == NGHTTP2_ERR_HTTP_MESSAGING) {
    try {
      self->stream_error_.assign(msg, len);
    } catch (...) {
    }
    return 0;
  }
  // Only errors that end the connection are kept.
  if (lib_error_code == NGHTTP2_ERR_PROTO || lib_error_code == NGHTTP2_ERR_FLOW_CONTROL ||
      lib_error_code == NGHTTP2_ERR_FRAME_SIZE_ERROR || lib_error_code == NGHTTP2_ERR_HEADER_COMP ||
      lib_error_code == NGHTTP2_ERR_SETTINGS_EXPECTED ||
      lib_error_code == NGHTTP2_ERR_BAD_CLIENT_MAGIC || lib_error_code == NGHTTP2_ERR_FLOODED) {
    if (self->error_.empty()) {
      try {
        self->error_.assign(msg, len);
      } catch (...) {
      }
    }
  }
  return 0;
}

nghttp2_session_callbacks* H2Session::MakeCallbacks() {
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return nullptr;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnStreamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, OnFrameSend);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, OnInvalidFrame);
  nghttp2_session_callbacks_set_error_callback2(cb, OnError);
  return cb;  // shared by every session, never freed
}

}  // namespace grpc_green
