#include "Server.hpp"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <exception>

namespace grpc_green {

class ServerConnection final : public Connection {
 public:
  ServerConnection(Reactor* reactor, Server* server, const H2Settings& s)
      : Connection(reactor, H2Session::kServer, s), server_(server) {}
  Server* server_;  // null once the server has let go of it

 protected:
  H2Stream* NewStream(int32_t) override { return server_ ? server_->NewStream(this) : nullptr; }
  void OnClosed() noexcept override {
    if (state() == kClosed && server_) server_->OnConnectionClosed(this);
  }
};

class Listener final : public IoHandler, public Droppable {
 public:
  Listener(Reactor* reactor, Server* server, int fd) : reactor_(reactor), server_(server), fd_(fd) {
    try {
      reactor_->Track(this);
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }
  ~Listener() {
    reactor_->Untrack(this);
    io_.reset();
    if (fd_ >= 0) ::close(fd_);
  }
  // False when the loop refused to watch the socket.
  bool Start() {
    if (fd_ < 0 || io_) return true;
    io_ = reactor_->io().NewIo(fd_, this);
    return io_->Set(kIoRead);
  }
  void OnIo(int) noexcept override {
    try {
      server_->Accept(fd_);
    } catch (...) {
      // Out of memory for a new connection: the socket is closed, and the
      // next readiness accepts again.
    }
  }
  // A forked child never accepts on its parent's port.
  void Drop() noexcept override {
    io_.reset();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  Reactor* reactor_;
  Server* server_;
  int fd_;
  std::unique_ptr<IoWatcher> io_;
};

namespace {

bool IsGrpcContentType(const std::string& ct) {
  static const char kPrefix[] = "application/grpc";
  if (ct.compare(0, sizeof kPrefix - 1, kPrefix) != 0) return false;
  return ct.size() == sizeof kPrefix - 1 || ct[sizeof kPrefix - 1] == '+' ||
         ct[sizeof kPrefix - 1] == ';';
}

std::string TooLarge(size_t len, long long max) {
  return "Sent message larger than max (" + std::to_string(len) + " vs. " + std::to_string(max) +
         ")";
}

}  // namespace

// ------------------------------------------------------------ ServerCall

ServerCall::ServerCall() : H2Stream(0) {}

ServerCall::~ServerCall() {
  // Freed after the stream closed (the engine's hold ends there), unless
  // it never got one.
  if (attached()) session()->Abandon(this, NGHTTP2_CANCEL);
}

void ServerCall::Release() noexcept {
  if (--holds_ == 0) reactor_->DeferDelete(this);
}

void ServerCall::Kick() {
  if (attached()) conn_->Kick();
}

std::string ServerCall::TakeMessage() {
  std::string m = deframer.Pop();
  if (attached() && session()->Consumed(this)) Kick();
  return m;
}

bool ServerCall::SendHeaders(const Headers& md) {
  if (headers_sent_ || finished_ || !attached()) return false;
  std::vector<nghttp2_nv> nva;
  nva.reserve(2 + md.size());
  nva.push_back(MakeNv(":status", "200"));
  nva.push_back(MakeNv("content-type", "application/grpc"));
  for (auto& h : md) nva.push_back(MakeNv(h.first, h.second));
  headers_sent_ = session()->SubmitResponse(this, nva.data(), nva.size(), false);
  Kick();
  return headers_sent_;
}

bool ServerCall::SendInitialMetadata(const Headers& md) { return SendHeaders(md); }

bool ServerCall::Write(const char* data, size_t len) {
  if (!active()) return false;
  if (max_send_ >= 0 && len > static_cast<unsigned long long>(max_send_)) {
    EndLocally(kResourceExhausted, TooLarge(len, max_send_));
    return false;
  }
  if (!headers_sent_ && !SendHeaders({})) return false;
  AppendFramedMessage(sendbuf, data, len);
  session()->ResumeData(this);
  Kick();
  return true;
}

bool ServerCall::Finish(int code, std::string_view details, const Headers& md) {
  if (finished_) return false;
  bool was_active = active();
  if (!attached()) {
    finished_ = true;
    if (timer_) timer_->Stop();
    return false;
  }
  // What may throw comes first: the call is finished only once its status
  // is queued.
  Headers tr;
  tr.reserve(2 + md.size());
  tr.emplace_back("grpc-status", std::to_string(code));
  if (!details.empty()) tr.emplace_back("grpc-message", PercentEncode(details));
  tr.insert(tr.end(), md.begin(), md.end());
  bool submitted;
  if (!headers_sent_ && pending_send() == 0) {
    // Trailers-Only: one HEADERS frame ends the stream.
    std::vector<nghttp2_nv> nva;
    nva.reserve(2 + tr.size());
    nva.push_back(MakeNv(":status", "200"));
    nva.push_back(MakeNv("content-type", "application/grpc"));
    for (auto& h : tr) nva.push_back(MakeNv(h.first, h.second));
    submitted = session()->SubmitResponse(this, nva.data(), nva.size(), true);
    headers_sent_ = true;
  } else {
    submitted = headers_sent_ || SendHeaders({});
    send_trailers = std::move(tr);
    has_trailers = true;
    send_closed = true;
    session()->ResumeData(this);
  }
  finished_ = true;
  if (timer_) timer_->Stop();
  if (!submitted) session()->Reset(this, NGHTTP2_INTERNAL_ERROR);
  Kick();
  return was_active;
}

void ServerCall::EndLocally(int code, std::string_view details) noexcept {
  if (finished_) return;
  try {
    Finish(code, details, {});
  } catch (...) {
    // No memory for the trailers: reset the stream instead.
    finished_ = true;
    if (attached()) {
      session()->Reset(this, NGHTTP2_INTERNAL_ERROR);
      conn_->Kick();
    }
  }
  cancelled_ = true;
  OnReadable();
  OnWritable();
}

void ServerCall::RespondHttpError(int http_status, int code, const std::string& details) {
  finished_ = true;
  headers_sent_ = true;
  std::string status = std::to_string(http_status);
  std::string grpc_status = std::to_string(code);
  std::string message = PercentEncode(details);
  nghttp2_nv nva[] = {MakeNv(":status", status), MakeNv("content-type", "application/grpc"),
                      MakeNv("grpc-status", grpc_status), MakeNv("grpc-message", message)};
  session()->SubmitResponse(this, nva, 4, true);
  Kick();
}

void ServerCall::Cancel() {
  if (!attached() || finished_) return;
  cancelled_ = true;
  session()->Reset(this, NGHTTP2_CANCEL);
  Kick();
  OnReadable();
  OnWritable();
}

void ServerCall::OnHeaders() { server_->OnRequestHeaders(this); }

void ServerCall::OnMessages() {
  if (deframer.failed()) EndLocally(deframer.error_code(), deframer.error());
  else OnReadable();
}

void ServerCall::OnTimer() noexcept { EndLocally(kDeadlineExceeded, "Deadline Exceeded"); }

void ServerCall::OnClose(uint32_t) noexcept {
  if (!finished_) cancelled_ = true;
  if (timer_) timer_->Stop();
  OnReadable();
  OnWritable();
  if (server_) server_->OnCallClosed(this);
}

// ---------------------------------------------------------------- Server

Server::Server(ReactorRef reactor, Delegate* delegate, ServerOptions opts)
    : reactor_(std::move(reactor)), delegate_(delegate), opts_(std::move(opts)) {}

Server::~Server() {
  listeners_.clear();
  CloseConnections("Server destroyed");
  // What is left was dropped with its reactor (a forked child) and never
  // said it closed.
  for (ServerConnection* c : conns_) {
    c->server_ = nullptr;
    reactor_->DeferDelete(c);
  }
}

void Server::CloseConnections(const char* reason) noexcept {
  // Each close ends its calls (OnCallClosed) and leaves conns_ by itself;
  // a dropped connection stays (it is closed already).
  for (size_t i = conns_.size(); i > 0; --i) {
    if (i <= conns_.size()) conns_[i - 1]->GoawayAndClose(reason);
  }
}

int Server::AddPort(const std::string& address, std::string* err) {
  std::vector<int> fds;
  int port = OpenListeners(address, opts_.reuseport, &fds, err);
  if (port < 0) return -1;
  size_t i = 0;
  try {
    for (; i < fds.size(); ++i) {
      listeners_.push_back(std::make_unique<Listener>(reactor_.get(), this, fds[i]));
      if (started_ && !listeners_.back()->Start()) {
        *err = "the event loop refused to watch the socket";
        listeners_.pop_back();
        for (++i; i < fds.size(); ++i) ::close(fds[i]);
        return -1;
      }
    }
  } catch (...) {
    for (++i; i < fds.size(); ++i) ::close(fds[i]);  // the Listener owns fds[i] if it was made
    throw;
  }
  return port;
}

bool Server::Start() {
  if (started_) return true;
  started_ = true;
  bool ok = true;
  for (auto& l : listeners_) ok = l->Start() && ok;
  return ok;
}

void Server::Accept(int lfd) {
  for (int i = 0; i < 64; ++i) {
    SocketAddress peer;
    peer.len = sizeof peer.addr;
    int fd = accept4(lfd, reinterpret_cast<sockaddr*>(&peer.addr), &peer.len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or an error that the next readiness retries
    if (stopping_) {
      ::close(fd);
      continue;
    }
    // Everything that may throw comes before the connection takes the fd.
    std::string name;
    std::unique_ptr<ServerConnection> conn;
    try {
      name = peer.Describe();
      conn = std::make_unique<ServerConnection>(reactor_.get(), this, opts_.h2);
      conns_.push_back(conn.get());
    } catch (...) {
      ::close(fd);
      throw;
    }
    conn.release()->Adopt(fd, std::move(name), opts_.handshake_timeout);
  }
}

H2Stream* Server::NewStream(ServerConnection* conn) {
  ServerCall* call = delegate_->NewCall();
  if (!call) return nullptr;
  call->reactor_ = reactor_;
  call->server_ = this;
  call->conn_ = conn;
  call->max_send_ = opts_.max_send;
  call->deframer.set_max_message_size(opts_.max_recv);
  try {
    call->peer_ = conn->peer();
  } catch (...) {
    call->Release();
    throw;
  }
  return call;  // the engine's hold: released in OnCallClosed()
}

void Server::OnRequestHeaders(ServerCall* s) {
  const std::string* method = FindHeader(s->headers, ":method");
  const std::string* path = FindHeader(s->headers, ":path");
  const std::string* ct = FindHeader(s->headers, "content-type");
  if (!method || *method != "POST") {
    s->RespondHttpError(405, kInternal, "gRPC requires method POST");
    return;
  }
  if (!ct || !IsGrpcContentType(*ct)) {
    s->RespondHttpError(415, kInternal,
                        "invalid gRPC request content-type \"" + (ct ? *ct : std::string()) + "\"");
    return;
  }
  s->path_ = *path;  // H2Session made sure there is one
  if (const std::string* t = FindHeader(s->headers, "grpc-timeout")) {
    int64_t ns;
    if (ParseGrpcTimeout(*t, &ns)) {
      double after = static_cast<double>(ns) * 1e-9;
      s->deadline_ = reactor_->Now() + after;
      s->timer_ = reactor_->io().NewTimer(s);
      if (!s->timer_->Start(after)) {
        s->Finish(kInternal, "The event loop refused the call's deadline timer", {});
        return;
      }
    }
  }
  if (stopping_) {
    s->Finish(kUnavailable, "Server is shutting down", {});
    return;
  }
  if (opts_.max_concurrent_rpcs >= 0 && active_ >= opts_.max_concurrent_rpcs) {
    s->Finish(kResourceExhausted, "Concurrent RPC limit exceeded!", {});
    return;
  }
  if (!delegate_->OnCall(s)) {
    s->Finish(kInternal, "Server failed to start the handler", {});
    return;
  }
  ++active_;
  s->counted_ = true;
}

void Server::OnCallClosed(ServerCall* s) noexcept {
  if (s->counted_) {
    s->counted_ = false;
    --active_;
  }
  s->server_ = nullptr;
  delegate_->OnCallClosed(s);
  s->Release();
  CheckTerminated();
}

void Server::OnConnectionClosed(ServerConnection* c) noexcept {
  conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
  c->server_ = nullptr;
  reactor_->DeferDelete(c);
  CheckTerminated();
}

void Server::Stop(double grace) {
  if (!stopping_) {
    stopping_ = true;
    listeners_.clear();
    for (ServerConnection* c : std::vector<ServerConnection*>(conns_)) c->Drain(NGHTTP2_NO_ERROR);
  }
  if (grace <= 0) {
    CancelAll();
  } else if (!grace_timer_) {
    grace_timer_ = reactor_->io().NewTimer(this);
    if (!grace_timer_->Start(grace)) CancelAll();
  }
  CheckTerminated();
}

void Server::CancelAll() noexcept { CloseConnections("Server shutdown"); }

void Server::CheckTerminated() noexcept {
  if (stopping_ && !terminated_ && active_ == 0 && conns_.empty()) {
    terminated_ = true;
    if (grace_timer_) grace_timer_->Stop();
    delegate_->OnTerminated();
  }
}

}  // namespace grpc_green
