#include "Channel.hpp"

#include <algorithm>
#include <exception>
#include <iterator>

namespace grpc_green {

class ClientConnection final : public Connection {
 public:
  ClientConnection(Reactor* reactor, Channel* channel, const H2Settings& s)
      : Connection(reactor, H2Session::kClient, s), channel_(channel) {}
  Channel* channel_;  // null once the channel has let go of it
  bool came_up() const { return came_up_; }
  // Freed by the reactor between passes (once).
  void Bury() noexcept {
    if (buried_) return;
    buried_ = true;
    reactor()->DeferDelete(this);
  }

 protected:
  void OnReady() override {
    came_up_ = true;
    if (channel_) channel_->OnConnectionReady(this);
  }
  void OnClosed() noexcept override {
    if (channel_) channel_->OnConnectionClosed(this);
    if (state() == kClosed) Bury();
  }

 private:
  bool came_up_ = false;
  bool buried_ = false;
};

// Reconnection for wait_for_ready calls: initial_backoff (1 s), then 1.6
// times longer each failure, at most max_backoff (120 s); reset by a
// connection that comes up.
class Channel::Backoff final : private TimerHandler {
 public:
  explicit Backoff(Channel* channel) : channel_(channel), delay_(channel->opts_.initial_backoff) {}
  void Reset() { delay_ = channel_->opts_.initial_backoff; }
  // The wait before the next attempt.
  double delay() const { return delay_; }
  // False if the loop refused the timer.
  bool Schedule() {
    if (!timer_) timer_ = channel_->reactor()->io().NewTimer(this);
    bool ok = timer_->Start(delay_);
    delay_ = std::min(delay_ * 1.6, channel_->opts_.max_backoff);
    return ok;
  }
  void Stop() {
    if (timer_) timer_->Stop();
  }

 private:
  void OnTimer() noexcept override {
    if (!channel_->closed_ && !channel_->conn_ && !channel_->pending_.empty())
      channel_->StartConnecting();
  }
  Channel* channel_;
  double delay_;
  std::unique_ptr<Timer> timer_;
};

// ------------------------------------------------------------ ClientCall

ClientCall::ClientCall(bool unary_response) : H2Stream(0), unary_response_(unary_response) {}

ClientCall::~ClientCall() { Abandon(); }

std::string ClientCall::TakeMessage() {
  std::string m = deframer.Pop();
  if (attached() && session()->Consumed(this)) Kick();
  return m;
}

void ClientCall::Kick() {
  if (attached()) conn_->Kick();
}

bool ClientCall::Write(const char* data, size_t len) {
  if (done_ || send_closed) return false;
  if (max_send_ >= 0 && len > static_cast<unsigned long long>(max_send_)) {
    Cancel(kResourceExhausted, "Sent message larger than max (" + std::to_string(len) + " vs. " +
                                   std::to_string(max_send_) + ")");
    return false;
  }
  AppendFramedMessage(sendbuf, data, len);
  if (attached()) {
    session()->ResumeData(this);
    Kick();
  }
  return true;
}

bool ClientCall::send_blocked() const {
  if (done_) return false;
  // While waiting for a connection, up to the batching mark is queued.
  if (!attached()) return pending() && pending_send() > kSendHighWater;
  return session()->SendBlocked(this);
}

void ClientCall::DoneWriting() {
  if (done_ || send_closed) return;
  send_closed = true;
  if (attached()) {
    session()->ResumeData(this);
    Kick();
  }
}

bool ClientCall::Cancel(int code, std::string_view details) noexcept {
  if (done_) return false;
  deframer.Clear();
  Abandon();
  Finish(code, details);
  return true;
}

void ClientCall::Abandon(uint32_t h2_code) noexcept {
  if (pending()) channel_->RemovePending(this);
  if (!attached()) return;
  session()->Abandon(this, h2_code);
  conn_->Kick();
}

void ClientCall::Finish(int code, std::string_view details) noexcept {
  if (done_) return;
  done_ = true;
  code_ = code;
  try {
    details_.assign(details);
  } catch (...) {
    details_.clear();
  }
  if (timer_) timer_->Stop();
  if (pending()) channel_->RemovePending(this);
  if (code_ == kOk && unary_response_ && deframer.messages().size() != 1) {
    code_ = kUnimplemented;
    try {
      details_ = deframer.has_message() ? "Too many responses for unary request"
                                        : "No message returned for unary request";
    } catch (...) {
      details_.clear();
    }
    deframer.Clear();
  }
  OnDone();
}

void ClientCall::FinishFromHeaders(const Headers& src) noexcept {
  const std::string* status = FindHeader(src, "grpc-status");
  int parsed;
  try {
    if (status && ParseGrpcStatus(*status, &parsed)) {
      const std::string* msg = FindHeader(src, "grpc-message");
      if (parsed == kOk && deframer.has_partial())
        Finish(kInternal, "Stream ended in the middle of a message");
      else Finish(parsed, msg ? PercentDecode(*msg) : std::string());
    } else if (http_status != 200 && http_status != 0) {
      Finish(StatusFromHttpStatus(http_status),
             "Received http2 header with status: " + std::to_string(http_status));
    } else {
      Finish(kUnknown, "Stream removed without grpc-status");
    }
  } catch (...) {
    // Out of memory for the details: the status alone.
    if (status && ParseGrpcStatus(*status, &parsed)) Finish(parsed, {});
    else
      Finish(http_status == 200 || http_status == 0 ? kUnknown : StatusFromHttpStatus(http_status),
             {});
  }
}

void ClientCall::OnMessages() {
  if (deframer.failed()) Cancel(deframer.error_code(), deframer.error());
  else if (!unary_response_) OnResponse();
}

void ClientCall::OnRemoteEnd() {
  if (done_) return;
  FinishFromHeaders(trailers_received ? trailers : headers);
  // The server is done; whatever we have not sent yet is not wanted.
  if (!send_closed || pending_send()) Abandon(NGHTTP2_NO_ERROR);
}

void ClientCall::OnClose(uint32_t err) noexcept {
  if (done_) return;
  if (trailers_received || (headers_received && remote_ended)) {
    FinishFromHeaders(trailers_received ? trailers : headers);
    return;
  }
  int code;
  std::string details;
  try {
    if (err == kConnectionLost) {
      if (channel_->closed()) {
        code = kCancelled;
        details = "Channel closed!";
      } else {
        code = kUnavailable;
        details = conn_ && !conn_->error().empty() ? conn_->error() : "Socket closed";
      }
    } else if (!reset_reason.empty()) {  // our nghttp2 reset it: a response breaking the rules
      code = kInternal;
      details = "Stream removed (" + reset_reason + ")";
    } else if (err != NGHTTP2_NO_ERROR) {
      code = StatusFromHttp2Error(err);
      details = "Received RST_STREAM with error code " + std::to_string(err);
    } else {
      FinishFromHeaders(headers);
      return;
    }
  } catch (...) {
    code = err == kConnectionLost ? kUnavailable : StatusFromHttp2Error(err);
    details.clear();
  }
  Finish(code, details);
}

// --------------------------------------------------------------- Channel

Channel::Channel(ReactorRef reactor, std::string target, ChannelOptions opts)
    : reactor_(std::move(reactor)), target_(std::move(target)), opts_(std::move(opts)) {}

Channel::~Channel() {
  Close();
  // What is left was dropped with its reactor (an ended thread) and never
  // said it closed.
  for (ClientConnection* c : conns_) {
    c->channel_ = nullptr;
    c->Bury();
  }
}

void Channel::Close() noexcept {
  if (closed_) return;
  closed_ = true;
  if (backoff_) backoff_->Stop();
  while (ClientCall* call = pending_.pop_front()) call->Finish(kCancelled, "Channel closed!");
  // Draining connections (told to go away, finishing their calls) too.
  // Each close leaves conns_ by itself; one dropped with its reactor (an
  // ended thread) is closed already and stays.
  for (size_t i = conns_.size(); i > 0; --i) {
    if (i <= conns_.size()) conns_[i - 1]->GoawayAndClose("Channel closed!");
  }
}

void Channel::Start(ClientCall* call, CallArgs& args) {
  call->channel_ = this;
  call->reactor_ = reactor_;
  call->max_send_ = opts_.max_send;
  call->wait_for_ready_ = args.wait_for_ready;
  call->deframer.set_max_message_size(opts_.max_recv);
  if (closed_) {
    call->Finish(kCancelled, "Channel closed!");
    return;
  }
  if (args.has_message) {
    if (opts_.max_send >= 0 && args.message_len > static_cast<unsigned long long>(opts_.max_send)) {
      call->Finish(kResourceExhausted, "Sent message larger than max (" +
                                           std::to_string(args.message_len) + " vs. " +
                                           std::to_string(opts_.max_send) + ")");
      return;
    }
    AppendFramedMessage(call->sendbuf, args.message, args.message_len);
    call->send_closed = true;
  }
  if (args.timeout >= 0) {
    call->deadline_ = reactor_->Now() + args.timeout;
    call->timer_ = reactor_->io().NewTimer(call);
    if (!call->timer_->Start(args.timeout)) {
      call->Finish(kInternal, "The event loop refused the call's deadline timer");
      return;
    }
  }
  static const Headers kNoMetadata;
  const Headers& md = args.metadata ? *args.metadata : kNoMetadata;
  if (conn_ && conn_->ready()) {
    Submit(call, conn_, args.path, md, args.timeout);
    return;
  }
  call->pending_path_.assign(args.path);
  if (args.metadata) call->pending_metadata_ = std::move(*args.metadata);
  pending_.push_back(call);
  if (!conn_) StartConnecting();
}

namespace {
// Headers of a request before its metadata, at most.
constexpr size_t kFixedRequestHeaders = 9;
}  // namespace

void Channel::Submit(ClientCall* call, ClientConnection* conn, std::string_view path,
                     const Headers& md, double timeout_s) {
  // The timeout as given, for a call that goes out at once: the same value
  // call after call stays in HPACK's table (a remaining time would differ
  // each time, and cost a literal header on both ends).
  std::string timeout;
  if (call->deadline_ >= 0) timeout = EncodeGrpcTimeout(static_cast<int64_t>(timeout_s * 1e9));
  // The headers' array lives on the stack unless there is much metadata.
  nghttp2_nv fixed[16];
  std::vector<nghttp2_nv> more;
  nghttp2_nv* nva = fixed;
  if (kFixedRequestHeaders + md.size() > std::size(fixed)) {
    more.resize(kFixedRequestHeaders + md.size());
    nva = more.data();
  }
  size_t n = 0;
  nva[n++] = MakeNv(":method", "POST");
  nva[n++] = MakeNv(":scheme", "http");
  nva[n++] = MakeNv(":path", path);
  nva[n++] = MakeNv(":authority", opts_.authority);
  nva[n++] = MakeNv("te", "trailers");
  nva[n++] = MakeNv("content-type", "application/grpc");
  nva[n++] = MakeNv("user-agent", opts_.user_agent);
  nva[n++] = MakeNv("grpc-accept-encoding", "identity");
  if (!timeout.empty()) nva[n++] = MakeNv("grpc-timeout", timeout);
  for (auto& h : md) nva[n++] = MakeNv(h.first, h.second);
  if (conn->h2().SubmitRequest(call, nva, n) < 0) {
    call->Finish(kInternal, "Failed to start the call: " + conn->h2().submit_error());
    return;
  }
  call->conn_ = conn;
  conn->Kick();
}

void Channel::StartConnecting() noexcept {
  if (closed_ || conn_) return;
  try {
    if (!resolved_) {
      std::string host_port, err;
      addresses_.clear();
      if (!ResolveTarget(target_, &addresses_, &host_port, &err)) {
        last_error_ = err;
        ConnectFailed();
        return;
      }
      resolved_ = true;
      if (opts_.authority.empty()) opts_.authority = host_port;
    }
    // Everything that may throw comes before conn_ is set.
    std::vector<SocketAddress> addresses = addresses_;
    auto conn = std::make_unique<ClientConnection>(reactor_.get(), this, opts_.h2);
    conns_.push_back(conn.get());
    conn_ = conn.release();
    // gRPC's connect deadline: MIN_CONNECT_TIMEOUT, or the backoff delay
    // once that is longer.
    double timeout =
        std::max(opts_.min_connect_timeout, backoff_ ? backoff_->delay() : opts_.initial_backoff);
    conn_->Connect(std::move(addresses), timeout);  // may fail at once: OnConnectionClosed
  } catch (const std::exception& e) {
    try {
      last_error_ = e.what();
    } catch (...) {
    }
    ConnectFailed();
  }
}

void Channel::OnConnectionReady(ClientConnection* c) {
  if (c != conn_) return;
  if (backoff_) backoff_->Reset();
  // One at a time off the list's head: a call that ends meanwhile leaves
  // the list by itself.
  while (c->ready()) {
    ClientCall* call = pending_.pop_front();
    if (!call) break;
    double left = call->deadline_ < 0 ? -1 : call->deadline_ - reactor_->Now();
    Submit(call, c, call->pending_path_, call->pending_metadata_, left);
    call->pending_path_.clear();
    call->pending_metadata_.clear();
    call->OnSendReady();  // writers parked while pending may go on
  }
}

void Channel::OnConnectionClosed(ClientConnection* c) noexcept {
  bool was_current = conn_ == c;
  if (was_current) conn_ = nullptr;
  if (!c->error().empty()) {
    try {
      last_error_ = c->error();
    } catch (...) {
    }
  }
  if (c->state() == Connection::kClosed)
    conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
  if (!was_current || pending_.empty() || closed_) return;
  // Calls still wait for a connection: a new one after a connection that
  // served and went (closed, or told to go away), else the attempt failed.
  if (c->came_up()) StartConnecting();
  else ConnectFailed();
}

void Channel::ConnectFailed() noexcept {
  // Fail-fast calls end now; wait_for_ready ones wait for the next attempt.
  std::string details;
  try {
    details = "failed to connect to all addresses; last error: " + last_error_;
  } catch (...) {
  }
  // Once round the list: wait_for_ready calls go back to its end, in order.
  for (size_t n = pending_.size(); n > 0; --n) {
    ClientCall* call = pending_.pop_front();
    if (call->wait_for_ready_) pending_.push_back(call);
    else call->Finish(kUnavailable, details);
  }
  if (pending_.empty()) return;
  try {
    if (!backoff_) backoff_ = std::make_unique<Backoff>(this);
    if (backoff_->Schedule()) return;
  } catch (...) {
  }
  // No timer: the waiting calls cannot be retried.
  while (ClientCall* call = pending_.pop_front()) call->Finish(kUnavailable, {});
}

}  // namespace grpc_green
