// _core.Server and _core.ServerCall: listeners, server connections, and
// the per-RPC object a handler greenlet talks to.
//
// A stream whose request headers are complete and valid becomes a call:
// the server hands it to `dispatch(call)` in a pooled greenlet (the Python
// layer finds the handler, reads, runs it and responds). Everything a call
// does on the wire goes through its ServerStream while it is attached.
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <unordered_map>

#include "PyMetadata.hpp"
#include "PyTypes.hpp"
#include "TConnection.hpp"
#include "gg_refs.hpp"

namespace grpc_green {

namespace {

class Server;
class ServerConnection;
class ServerStream;

struct PyServerCallObject {
  PyObject_HEAD
  ServerStream* stream;  // owned
  PyObject* server;      // owned: the PyServerObject
  PyObject* callbacks;   // owned list or NULL
};

struct PyServerObject {
  PyObject_HEAD
  Server* server;
};

// Drops a reference between hub iterations (never inside an nghttp2 hook,
// where the object's own stream may still be in use).
class DeferredDecref final : public Deferred {
 public:
  explicit DeferredDecref(PyObject* o) : o_(o) {}
  ~DeferredDecref() override { Py_DECREF(o_); }

 private:
  PyObject* o_;
};

class ServerConnection final : public Connection {
 public:
  ServerConnection(Hub* hub, Server* server, const H2Settings& s)
      : Connection(hub, H2Session::kServer, s), server_(server) {}
  Server* server_;

 protected:
  H2Stream* NewStream(int32_t id) override;
  void OnClosed() override;
};

class ServerStream final : public H2Stream, private TimerHandler {
 public:
  ServerStream(PyServerCallObject* owner, Server* server, ServerConnection* conn, size_t max_recv)
      : H2Stream(max_recv), owner(owner), server(server), conn(conn), peer(conn->peer()) {}

  PyServerCallObject* owner;  // borrowed back pointer
  Server* server;
  ServerConnection* conn;  // valid while attached()
  std::string peer;
  std::string method;
  OwnedObject method_name;  // the same as a str, shared by the calls of one method
  WaitList recv_wait;  // the request reader
  WaitList send_wait;  // a writer waiting for the send window
  bool headers_sent = false;
  bool finished = false;
  bool cancelled = false;
  bool counted = false;  // counts against maximum_concurrent_rpcs
  double deadline = -1;

  bool active() const { return attached() && !finished && !cancelled; }
  void Kick() {
    if (attached()) conn->Kick();
  }
  void StartDeadline(Hub* hub, double after) {
    timer_ = hub->io().NewTimer(this);
    timer_->Start(after);
  }

  bool SendHeaders(const Headers& md) {
    if (headers_sent || finished || !attached()) return false;
    std::vector<nghttp2_nv> nva;
    nva.reserve(2 + md.size());
    nva.push_back(MakeNv(":status", "200"));
    nva.push_back(MakeNv("content-type", "application/grpc"));
    for (auto& h : md) nva.push_back(MakeNv(h.first, h.second));
    headers_sent = session()->SubmitResponse(this, nva.data(), nva.size(), false);
    Kick();
    return headers_sent;
  }

  bool Write(const char* data, size_t len) {
    if (!active()) return false;
    if (!headers_sent && !SendHeaders({})) return false;
    AppendFramedMessage(sendbuf, data, len);
    session()->ResumeData(this);
    Kick();
    return true;
  }

  void Finish(int code, const std::string& details, const Headers& md) {
    if (finished) return;
    finished = true;
    if (timer_) timer_->Stop();
    if (!attached()) return;
    Headers tr;
    tr.reserve(2 + md.size());
    tr.emplace_back("grpc-status", std::to_string(code));
    if (!details.empty()) tr.emplace_back("grpc-message", PercentEncode(details));
    tr.insert(tr.end(), md.begin(), md.end());
    if (!headers_sent && pending_send() == 0) {
      // Trailers-Only: one HEADERS frame ends the stream.
      std::vector<nghttp2_nv> nva;
      nva.reserve(2 + tr.size());
      nva.push_back(MakeNv(":status", "200"));
      nva.push_back(MakeNv("content-type", "application/grpc"));
      for (auto& h : tr) nva.push_back(MakeNv(h.first, h.second));
      headers_sent = true;
      session()->SubmitResponse(this, nva.data(), nva.size(), true);
    } else {
      if (!headers_sent) SendHeaders({});
      send_trailers = std::move(tr);
      has_trailers = true;
      send_closed = true;
      session()->ResumeData(this);
    }
    Kick();
  }

  // A request that is not gRPC at all: an HTTP error status.
  void RespondHttpError(int http_status, int code, const std::string& details) {
    finished = true;
    headers_sent = true;
    std::string status = std::to_string(http_status);
    std::string grpc_status = std::to_string(code);
    std::string message = PercentEncode(details);
    nghttp2_nv nva[] = {MakeNv(":status", status), MakeNv("content-type", "application/grpc"),
                        MakeNv("grpc-status", grpc_status), MakeNv("grpc-message", message)};
    session()->SubmitResponse(this, nva, 4, true);
    Kick();
  }

  void Cancel() {
    if (!attached() || finished) return;
    cancelled = true;
    session()->Reset(this, NGHTTP2_CANCEL);
    Kick();
  }

 private:
  void OnHeaders() override;
  void OnMessages() override {
    if (deframer.failed()) {
      Finish(deframer.error_code(), deframer.error(), {});
      cancelled = true;
      send_wait.WakeAll();
    }
    recv_wait.WakeAll();
  }
  void OnRemoteEnd() override { recv_wait.WakeAll(); }
  void OnSendProgress() override {
    send_wait.WakeAll();  // writers re-check SendBlocked()
  }
  void OnClose(uint32_t err) override;
  void OnTimer() override {
    if (finished) return;
    Finish(kDeadlineExceeded, "Deadline Exceeded", {});
    cancelled = true;
    recv_wait.WakeAll();
    send_wait.WakeAll();
  }

  std::unique_ptr<Timer> timer_;
};

class Listener final : public IoHandler, public ForkDroppable {
 public:
  Listener(Hub* hub, Server* server, int fd) : hub_(hub), server_(server), fd_(fd) {
    hub_->Track(this);
  }
  ~Listener() {
    hub_->Untrack(this);
    io_.reset();
    if (fd_ >= 0) ::close(fd_);
  }
  void Start() {
    if (fd_ < 0) return;
    io_ = hub_->io().NewIo(fd_, this);
    io_->Set(kIoRead);
  }
  void OnIo(int) override;
  // A forked child never accepts on its parent's port.
  void DropAfterFork() override {
    io_.reset();
    ::close(fd_);
    fd_ = -1;
  }

 private:
  Hub* hub_;
  Server* server_;
  int fd_;
  std::unique_ptr<IoWatcher> io_;
};

class Server final : private TimerHandler {
 public:
  Server(Hub* hub, PyObject* py, PyObject* dispatch, long max_concurrent, size_t max_recv,
         const H2Settings& h2, bool reuseport)
      : hub_(hub),
        py_(py),
        dispatch_(OwnedObject::owning(dispatch)),
        max_concurrent_(max_concurrent),
        max_recv_(max_recv),
        h2_(h2),
        reuseport_(reuseport) {
    termination_ = OwnedObject::consuming(NewEvent());
  }
  ~Server() {
    listeners_.clear();
    std::vector<ServerConnection*> conns;
    conns.swap(conns_);
    for (ServerConnection* c : conns) {
      c->server_ = nullptr;
      c->GoawayAndClose("Server destroyed");
      hub_->DeferDelete(c);
    }
  }

  Hub* hub() const { return hub_; }
  PyObject* termination() const { return termination_.get(); }
  bool ok() const { return bool(termination_); }

  int AddPort(const std::string& address);
  void Start() {
    if (started_) return;
    started_ = true;
    for (auto& l : listeners_) l->Start();
  }
  PyObject* Stop(double grace);
  // The method path as a str, made once per method (its hash too, for the
  // handler lookup); paths beyond the first kMaxMethodNames are not kept.
  OwnedObject MethodName(const std::string& path) {
    auto it = method_names_.find(path);
    if (it != method_names_.end()) return it->second;
    OwnedObject name = OwnedObject::consuming(PyUnicode_DecodeUTF8(
        path.data(), static_cast<Py_ssize_t>(path.size()), "replace"));
    if (!name) {
      PyErr_Clear();
      return name;
    }
    if (method_names_.size() < kMaxMethodNames) method_names_.emplace(path, name);
    return name;
  }
  void Accept(int lfd);
  H2Stream* NewStream(ServerConnection* conn, int32_t id);
  void OnRequestHeaders(ServerStream* s);
  void OnCallClosed(ServerStream* s);
  void OnConnectionClosed(ServerConnection* c) {
    conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
    c->server_ = nullptr;
    hub_->DeferDelete(c);
    CheckTerminated();
  }

 private:
  void OnTimer() override { CancelAll(); }
  // Ends every call now: connections close (after a last attempt to send
  // what is queued, the GOAWAY included); clients see UNAVAILABLE.
  void CancelAll() {
    for (ServerConnection* c : std::vector<ServerConnection*>(conns_))
      c->GoawayAndClose("Server shutdown");
  }
  void CheckTerminated() {
    if (stopping_ && !terminated_ && active_ == 0 && conns_.empty()) {
      terminated_ = true;
      if (grace_timer_) grace_timer_->Stop();
      SetEvent(termination_.get());
    }
  }

  Hub* hub_;
  PyObject* py_;  // borrowed: the PyServerObject owning this
  OwnedObject dispatch_;
  long max_concurrent_;
  size_t max_recv_;
  static constexpr size_t kMaxMethodNames = 1024;
  std::unordered_map<std::string, OwnedObject> method_names_;
  H2Settings h2_;
  bool reuseport_;  // grpc.so_reuseport: processes may share a port
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<ServerConnection*> conns_;
  long active_ = 0;
  bool started_ = false;
  bool stopping_ = false;
  bool terminated_ = false;
  OwnedObject termination_;
  std::unique_ptr<Timer> grace_timer_;
};

// ------------------------------------------------------------ connections

H2Stream* ServerConnection::NewStream(int32_t id) {
  return server_ ? server_->NewStream(this, id) : nullptr;
}

void ServerConnection::OnClosed() {
  if (state() == kClosed && server_) server_->OnConnectionClosed(this);
}

void Listener::OnIo(int) { server_->Accept(fd_); }

void ServerStream::OnHeaders() { server->OnRequestHeaders(this); }

void ServerStream::OnClose(uint32_t) {
  if (!finished) cancelled = true;
  if (timer_) timer_->Stop();
  recv_wait.WakeAll();
  send_wait.WakeAll();
  server->OnCallClosed(this);
}

// ------------------------------------------------------------------ Server

int Server::AddPort(const std::string& address) {
  std::string host, port;
  if (!address.empty() && address[0] == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      PyErr_Format(PyExc_RuntimeError, "Failed to bind to address %s", address.c_str());
      return -1;
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      PyErr_Format(PyExc_RuntimeError, "Failed to bind to address %s: no port", address.c_str());
      return -1;
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rv = getaddrinfo(host.empty() || host == "*" ? nullptr : host.c_str(), port.c_str(), &hints,
                       &res);
  if (rv != 0) {
    PyErr_Format(PyExc_RuntimeError, "Failed to bind to address %s: %s", address.c_str(),
                 gai_strerror(rv));
    return -1;
  }
  int bound_port = atoi(port.c_str());
  std::string last_error;
  size_t bound = 0;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    sockaddr_storage sa;
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
    if (bound_port) {
      if (sa.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&sa)->sin_port = htons(bound_port);
      else reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port = htons(bound_port);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport_) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), ai->ai_addrlen) < 0 || ::listen(fd, 1024) < 0) {
      last_error = strerror(errno);
      ::close(fd);
      // A dual-stack [::] already covers 0.0.0.0 on the same port.
      continue;
    }
    if (!bound_port) {
      sockaddr_storage got;
      socklen_t len = sizeof got;
      getsockname(fd, reinterpret_cast<sockaddr*>(&got), &len);
      bound_port = ntohs(got.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&got)->sin_port
                                                  : reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
    }
    listeners_.push_back(std::make_unique<Listener>(hub_, this, fd));
    if (started_) listeners_.back()->Start();
    ++bound;
  }
  freeaddrinfo(res);
  if (!bound) {
    PyErr_Format(PyExc_RuntimeError, "Failed to bind to address %s: %s", address.c_str(),
                 last_error.c_str());
    return -1;
  }
  return bound_port;
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
    auto* conn = new ServerConnection(hub_, this, h2_);
    conns_.push_back(conn);
    conn->Adopt(fd, peer.Describe());
  }
}

H2Stream* Server::NewStream(ServerConnection* conn, int32_t) {
  auto* call = PyObject_New(PyServerCallObject, &PyServerCall_Type);
  if (!call) {
    PyErr_WriteUnraisable(py_);
    return nullptr;
  }
  call->stream = new ServerStream(call, this, conn, max_recv_);
  call->server = py_;
  Py_INCREF(py_);
  call->callbacks = nullptr;
  return call->stream;  // the attached stream holds `call`'s first reference
}

static bool IsGrpcContentType(const std::string& ct) {
  static const char kPrefix[] = "application/grpc";
  if (ct.compare(0, sizeof kPrefix - 1, kPrefix) != 0) return false;
  return ct.size() == sizeof kPrefix - 1 || ct[sizeof kPrefix - 1] == '+' ||
         ct[sizeof kPrefix - 1] == ';';
}

void Server::OnRequestHeaders(ServerStream* s) {
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
  if (!path || path->empty() || (*path)[0] != '/') {
    s->RespondHttpError(400, kInternal, "bad :path");
    return;
  }
  s->method = *path;
  s->method_name = MethodName(*path);
  if (const std::string* t = FindHeader(s->headers, "grpc-timeout")) {
    int64_t ns;
    if (ParseGrpcTimeout(*t, &ns)) {
      double after = static_cast<double>(ns) * 1e-9;
      s->deadline = hub_->Now() + after;
      s->StartDeadline(hub_, after);
    }
  }
  if (stopping_) {
    s->Finish(kUnavailable, "Server is shutting down", {});
    return;
  }
  if (max_concurrent_ >= 0 && active_ >= max_concurrent_) {
    s->Finish(kResourceExhausted, "Concurrent RPC limit exceeded!", {});
    return;
  }
  OwnedObject args = OwnedObject::consuming(PyTuple_Pack(1, reinterpret_cast<PyObject*>(s->owner)));
  if (!args || !hub_->Spawn(dispatch_.get(), args.get())) {
    PyErr_WriteUnraisable(dispatch_.get());
    s->Finish(kInternal, "Server failed to start the handler", {});
    return;
  }
  ++active_;
  s->counted = true;
}

void Server::OnCallClosed(ServerStream* s) {
  if (s->counted) {
    s->counted = false;
    --active_;
  }
  PyServerCallObject* call = s->owner;
  if (call->callbacks) {
    // Callbacks run in greenlets of their own, after this hook returns.
    hub_->SpawnEach(OwnedObject::consuming(call->callbacks));
    call->callbacks = nullptr;
  }
  hub_->DeferDelete(new DeferredDecref(reinterpret_cast<PyObject*>(call)));
  CheckTerminated();
}

PyObject* Server::Stop(double grace) {
  if (!stopping_) {
    stopping_ = true;
    listeners_.clear();
    for (ServerConnection* c : std::vector<ServerConnection*>(conns_)) c->Drain(NGHTTP2_NO_ERROR);
  }
  if (grace <= 0) {
    CancelAll();
  } else if (!grace_timer_) {
    grace_timer_ = hub_->io().NewTimer(this);
    grace_timer_->Start(grace);
  }
  CheckTerminated();
  return Py_NewRef(termination_.get());
}

// ------------------------------------------------------ ServerCall methods

ServerStream* LiveStream(PyServerCallObject* self) {
  ServerStream* s = self->stream;
  if (s->server->hub()->orphaned()) {
    // A call of the parent process seen from a forked child (gevent resumes
    // the parent's greenlets there): it is over here, and every method is
    // inert, so the handler ends quietly without touching the socket.
    s->finished = true;
    s->cancelled = true;
    return s;
  }
  if (!s->server->hub()->CheckThread()) return nullptr;
  return s;
}

PyObject* ServerCall_read(PyServerCallObject* self, PyObject*) {
  ServerStream* s = LiveStream(self);
  if (!s) return nullptr;
  for (;;) {
    if (s->deframer.has_message()) {
      std::string m = s->deframer.Pop();
      if (s->attached() && s->session()->Consumed(s)) s->Kick();
      return PyBytes_FromStringAndSize(m.data(), static_cast<Py_ssize_t>(m.size()));
    }
    if (s->remote_ended || !s->attached() || s->finished || s->cancelled || s->deframer.failed())
      Py_RETURN_NONE;
    if (s->recv_wait.Wait() == Waiter::kError) return nullptr;
  }
}

// The request of a unary-request method: its one message once the client
// has ended the stream, or None (no message, more than one, or the call
// ended first). One call where read() would take two.
PyObject* ServerCall_read_unary(PyServerCallObject* self, PyObject*) {
  ServerStream* s = LiveStream(self);
  if (!s) return nullptr;
  for (;;) {
    size_t n = s->deframer.messages().size();
    bool over = !s->attached() || s->finished || s->cancelled || s->deframer.failed();
    if (n > 1 || over) Py_RETURN_NONE;
    if (s->remote_ended) {
      if (n == 0) Py_RETURN_NONE;
      std::string m = s->deframer.Pop();
      if (s->session()->Consumed(s)) s->Kick();
      return PyBytes_FromStringAndSize(m.data(), static_cast<Py_ssize_t>(m.size()));
    }
    if (s->recv_wait.Wait() == Waiter::kError) return nullptr;
  }
}

PyObject* ServerCall_send_initial_metadata(PyServerCallObject* self, PyObject* md) {
  ServerStream* s = LiveStream(self);
  if (!s) return nullptr;
  Headers h;
  if (!AppendMetadata(md, &h)) return nullptr;
  return PyBool_FromLong(s->SendHeaders(h));
}

PyObject* ServerCall_write(PyServerCallObject* self, PyObject* data) {
  ServerStream* s = LiveStream(self);
  if (!s) return nullptr;
  char* buf;
  Py_ssize_t len;
  if (PyBytes_AsStringAndSize(data, &buf, &len) < 0) return nullptr;
  if (!s->Write(buf, static_cast<size_t>(len))) Py_RETURN_FALSE;
  // Backpressure: park while the HTTP/2 window keeps our bytes queued.
  while (s->active() && s->session()->SendBlocked(s)) {
    if (s->send_wait.Wait() == Waiter::kError) return nullptr;
  }
  return PyBool_FromLong(s->active());
}

// respond(message_or_None, code, details, trailing_metadata)
PyObject* ServerCall_respond(PyServerCallObject* self, PyObject* const* args, Py_ssize_t nargs) {
  ServerStream* s = LiveStream(self);
  if (!s) return nullptr;
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "respond(message, code, details, trailing_metadata)");
    return nullptr;
  }
  int code = PyLong_AsLong(args[1]);
  if (code == -1 && PyErr_Occurred()) return nullptr;
  std::string details;
  if (args[2] != Py_None) {
    Py_ssize_t n;
    const char* d = PyUnicode_AsUTF8AndSize(args[2], &n);
    if (!d) return nullptr;
    details.assign(d, static_cast<size_t>(n));
  }
  Headers md;
  if (!AppendMetadata(args[3], &md)) return nullptr;
  if (args[0] != Py_None) {
    char* buf;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(args[0], &buf, &len) < 0) return nullptr;
    if (!s->Write(buf, static_cast<size_t>(len))) Py_RETURN_FALSE;
  }
  bool was_active = s->active();
  s->Finish(code, details, md);
  return PyBool_FromLong(was_active);
}

PyObject* ServerCall_is_active(PyServerCallObject* self, PyObject*) {
  return PyBool_FromLong(!self->stream->server->hub()->orphaned() && self->stream->active());
}

PyObject* ServerCall_cancel(PyServerCallObject* self, PyObject*) {
  ServerStream* s = LiveStream(self);
  if (!s) return nullptr;
  s->Cancel();
  s->recv_wait.WakeAll();
  s->send_wait.WakeAll();
  Py_RETURN_NONE;
}

PyObject* ServerCall_add_callback(PyServerCallObject* self, PyObject* cb) {
  if (!self->stream->attached()) Py_RETURN_FALSE;  // the RPC has ended
  if (!self->callbacks && !(self->callbacks = PyList_New(0))) return nullptr;
  if (PyList_Append(self->callbacks, cb) < 0) return nullptr;
  Py_RETURN_TRUE;
}

PyObject* ServerCall_invocation_metadata(PyServerCallObject* self, PyObject*) {
  return MetadataToPython(self->stream->headers);
}

PyObject* ServerCall_peer(PyServerCallObject* self, PyObject*) {
  return PyUnicode_FromStringAndSize(self->stream->peer.data(),
                                     static_cast<Py_ssize_t>(self->stream->peer.size()));
}

PyObject* ServerCall_time_remaining(PyServerCallObject* self, PyObject*) {
  ServerStream* s = self->stream;
  if (s->deadline < 0) Py_RETURN_NONE;
  double left = s->deadline - s->server->hub()->Now();
  return PyFloat_FromDouble(left > 0 ? left : 0.0);
}

PyObject* ServerCall_get_method(PyServerCallObject* self, void*) {
  if (self->stream->method_name) return Py_NewRef(self->stream->method_name.get());
  return PyUnicode_DecodeUTF8(self->stream->method.data(),
                              static_cast<Py_ssize_t>(self->stream->method.size()), "replace");
}

void ServerCall_dealloc(PyServerCallObject* self) {
  delete self->stream;
  Py_XDECREF(self->callbacks);
  Py_XDECREF(self->server);
  PyObject_Free(self);
}

PyMethodDef ServerCall_methods[] = {
    {"read_unary", (PyCFunction)ServerCall_read_unary, METH_NOARGS,
     "The one request message of a unary-request call, or None if it did not bring "
     "exactly one."},
    {"read", (PyCFunction)ServerCall_read, METH_NOARGS,
     "Next request message as bytes, or None at the end of the requests."},
    {"send_initial_metadata", (PyCFunction)ServerCall_send_initial_metadata, METH_O, nullptr},
    {"write", (PyCFunction)ServerCall_write, METH_O, "Queues one response message."},
    {"respond", (PyCFunction)(void (*)(void))ServerCall_respond, METH_FASTCALL,
     "respond(message_or_None, code, details, trailing_metadata): last message and status."},
    {"is_active", (PyCFunction)ServerCall_is_active, METH_NOARGS, nullptr},
    {"cancel", (PyCFunction)ServerCall_cancel, METH_NOARGS, nullptr},
    {"add_callback", (PyCFunction)ServerCall_add_callback, METH_O, nullptr},
    {"invocation_metadata", (PyCFunction)ServerCall_invocation_metadata, METH_NOARGS, nullptr},
    {"peer", (PyCFunction)ServerCall_peer, METH_NOARGS, nullptr},
    {"time_remaining", (PyCFunction)ServerCall_time_remaining, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef ServerCall_getset[] = {
    {"method", (getter)ServerCall_get_method, nullptr, "The full method path.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// ---------------------------------------------------------- Server methods

int Server_init(PyServerObject* self, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"dispatch", "maximum_concurrent_rpcs",
                                 "max_receive_message_length", "max_concurrent_streams",
                                 "initial_window_size", "so_reuseport", nullptr};
  PyObject* dispatch;
  long max_concurrent = -1;
  long long max_recv = 4 * 1024 * 1024;
  long long max_streams = 0, window = 0;
  int reuseport = 1;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|lLLLp", const_cast<char**>(kwlist), &dispatch,
                                   &max_concurrent, &max_recv, &max_streams, &window, &reuseport))
    return -1;
  Hub* hub = Hub::Get();
  if (!hub) return -1;
  H2Settings h2;
  if (max_streams > 0) h2.max_concurrent_streams = static_cast<uint32_t>(max_streams);
  if (window > 0) h2.initial_window_size = static_cast<uint32_t>(window);
  delete self->server;
  self->server = new Server(hub, reinterpret_cast<PyObject*>(self), dispatch, max_concurrent,
                            max_recv < 0 ? static_cast<size_t>(-1) >> 1 : static_cast<size_t>(max_recv),
                            h2, reuseport);
  return self->server->ok() ? 0 : -1;
}

void Server_dealloc(PyServerObject* self) {
  delete self->server;
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

Server* CheckedServer(PyServerObject* self) {
  if (!self->server) {
    PyErr_SetString(PyExc_ValueError, "server not initialised");
    return nullptr;
  }
  return self->server->hub()->CheckThread() ? self->server : nullptr;
}

PyObject* Server_add_insecure_port(PyServerObject* self, PyObject* address) {
  Server* s = CheckedServer(self);
  if (!s) return nullptr;
  const char* a = PyUnicode_AsUTF8(address);
  if (!a) return nullptr;
  int port = s->AddPort(a);
  return port < 0 ? nullptr : PyLong_FromLong(port);
}

PyObject* Server_start(PyServerObject* self, PyObject*) {
  Server* s = CheckedServer(self);
  if (!s) return nullptr;
  s->Start();
  Py_RETURN_NONE;
}

PyObject* Server_stop(PyServerObject* self, PyObject* grace) {
  Server* s = CheckedServer(self);
  if (!s) return nullptr;
  double g = grace == Py_None ? 0 : PyFloat_AsDouble(grace);
  if (g == -1.0 && PyErr_Occurred()) return nullptr;
  return s->Stop(g);
}

PyObject* Server_termination(PyServerObject* self, PyObject*) {
  Server* s = CheckedServer(self);
  if (!s) return nullptr;
  return Py_NewRef(s->termination());
}

PyMethodDef Server_methods[] = {
    {"add_insecure_port", (PyCFunction)Server_add_insecure_port, METH_O,
     "Binds 'host:port' (port 0 picks one) and returns the port."},
    {"start", (PyCFunction)Server_start, METH_NOARGS, nullptr},
    {"stop", (PyCFunction)Server_stop, METH_O,
     "stop(grace) -> Event set when every call and connection has ended."},
    {"termination", (PyCFunction)Server_termination, METH_NOARGS,
     "The Event set when the server has stopped."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

PyTypeObject PyServerCall_Type = [] {
  PyTypeObject t = {PyVarObject_HEAD_INIT(nullptr, 0)};
  t.tp_name = "grpc_green._core.ServerCall";
  t.tp_basicsize = sizeof(PyServerCallObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT;
  t.tp_doc = "One RPC on the server side.";
  t.tp_dealloc = (destructor)ServerCall_dealloc;
  t.tp_methods = ServerCall_methods;
  t.tp_getset = ServerCall_getset;
  return t;
}();

PyTypeObject PyServer_Type = [] {
  PyTypeObject t = {PyVarObject_HEAD_INIT(nullptr, 0)};
  t.tp_name = "grpc_green._core.Server";
  t.tp_basicsize = sizeof(PyServerObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT;
  t.tp_doc = "Listening sockets and the connections they accept.";
  t.tp_new = PyType_GenericNew;
  t.tp_init = (initproc)Server_init;
  t.tp_dealloc = (destructor)Server_dealloc;
  t.tp_methods = Server_methods;
  return t;
}();

}  // namespace grpc_green
