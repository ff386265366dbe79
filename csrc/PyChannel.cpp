// _core.Channel: the client side. A channel owns at most one live
// connection (opened lazily, replaced after it closes or is told to go
// away) and runs calls on it from whichever greenlet calls.
#include <Python.h>
#include <structmember.h>

#include <algorithm>
#include <iterator>
#include <memory>

#include "PyMetadata.hpp"
#include "PyTypes.hpp"
#include "TConnection.hpp"
#include "gg_refs.hpp"

namespace grpc_green {

namespace {

struct ChannelOptions {
  size_t max_recv = 4 * 1024 * 1024;
  long long max_send = -1;
  std::string authority;
  std::string user_agent;
  H2Settings h2;
};

class Channel;

class ClientConnection final : public Connection {
 public:
  ClientConnection(Hub* hub, Channel* channel, const H2Settings& s)
      : Connection(hub, H2Session::kClient, s), channel_(channel) {}
  Channel* channel_;
  bool deleted_ = false;

 protected:
  void OnClosed() override;
};

// One RPC on the client: a stream plus what the caller sees of it. Owned by
// the greenlet running a unary call, or by a _core.Call object.
class ClientCall final : public H2Stream, public Deferred, private TimerHandler {
 public:
  ClientCall(Channel* channel, size_t max_recv, bool unary_response);
  ~ClientCall() override { Abandon(); }

  // Who waits: readers and status waiters, writers, initial-metadata waiters.
  WaitList recv_wait;
  WaitList send_wait;
  WaitList md_wait;
  bool done = false;
  int code = kUnknown;
  std::string details;
  // The caller takes exactly one response message, at the end: the
  // response cardinality is checked when the status arrives, and arriving
  // messages wake nobody.
  bool unary_response;
  double deadline = -1;
  ClientConnection* conn = nullptr;  // valid while attached()
  OwnedObject callbacks;             // list: spawned when the call ends

  void StartDeadline(Hub* hub) {
    if (deadline < 0) return;
    timer_ = hub->io().NewTimer(this);
    timer_->Start(std::max(0.0, deadline - hub->Now()));
  }
  // The status is known: wake everyone, run the done callbacks.
  void Finish(int c, std::string d);
  // Ends the call here (deadline, cancellation, bad input): reset the
  // stream, drop what was not read, stop listening to it.
  void EndLocally(int c, std::string d) {
    if (done) return;
    deframer.Clear();
    Abandon();
    Finish(c, std::move(d));
  }
  void Abandon(uint32_t h2_code = NGHTTP2_CANCEL) {
    if (!attached()) return;
    session()->Abandon(this, h2_code);
    conn->Kick();
  }
  void Kick() {
    if (attached()) conn->Kick();
  }
  Hub* hub() const;
  long long max_send() const;
  // Initial metadata (empty for a Trailers-Only response) and trailing
  // metadata as received so far.
  bool trailers_only() const { return remote_ended && !trailers_received; }
  const Headers* initial_headers() const {
    return headers_received && !trailers_only() ? &headers : nullptr;
  }
  const Headers* trailing_headers() const {
    if (trailers_received) return &trailers;
    return headers_received && trailers_only() ? &headers : nullptr;
  }

 private:
  void OnHeaders() override { md_wait.WakeAll(); }
  void OnMessages() override {
    if (deframer.failed()) EndLocally(deframer.error_code(), deframer.error());
    else if (!unary_response) recv_wait.WakeAll();
  }
  void OnRemoteEnd() override;
  void OnSendProgress() override {
    send_wait.WakeAll();  // writers re-check SendBlocked()
  }
  void OnClose(uint32_t err) override;
  void OnTimer() override { EndLocally(kDeadlineExceeded, "Deadline Exceeded"); }
  // The status a peer's grpc-status (or its absence) gives.
  void FinishFromHeaders(const Headers& src);

  Channel* channel_;
  Hub* hub_;  // the channel's when the call started (it moves on after fork)
  std::unique_ptr<Timer> timer_;
};

class Channel {
 public:
  Channel(Hub* hub, std::string target, ChannelOptions opts)
      : hub_(hub), target_(std::move(target)), opts_(std::move(opts)) {}
  ~Channel() {
    Close();
    for (ClientConnection* c : conns_) c->channel_ = nullptr;  // closed: deleted by the hub
  }

  Hub* hub() const { return hub_; }
  bool closed() const { return closed_; }

  // True when the caller may use the channel now. A channel made before
  // os.fork() and used in the child moves to the child's hub: the parent's
  // connections were closed here without a byte sent (Hub::Orphan) and are
  // left with the parent's hub; the next call connects afresh.
  bool Usable() {
    if (hub_->orphaned()) {
      Hub* hub = Hub::Get();
      if (!hub) return false;
      for (ClientConnection* c : conns_) c->channel_ = nullptr;
      conns_.clear();
      conn_ = nullptr;
      hub_ = hub;
    }
    return hub_->CheckThread();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    // Draining connections (told to go away, finishing their calls) too.
    for (ClientConnection* c : std::vector<ClientConnection*>(conns_))
      c->GoawayAndClose("Channel closed!");
  }

  // The connection stopped taking new calls (GOAWAY) or closed.
  void OnConnectionClosed(ClientConnection* c) {
    if (conn_ == c) conn_ = nullptr;
    if (!c->error().empty()) last_error_ = c->error();
    if (c->state() == Connection::kClosed)
      conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
  }

  // Finds or opens a ready connection. On failure returns nullptr and
  // fills code/details, or returns nullptr with a Python error set
  // (code == -1).
  ClientConnection* Connect(double deadline, bool wait_for_ready, int* code, std::string* details);

  // Opens a call: connects (parking the caller), submits the headers and,
  // when `request` is given, the one request message. Returns nullptr with
  // a Python error set, or the call, already done if it could not start.
  std::unique_ptr<ClientCall> StartCall(PyObject* path, PyObject* timeout, PyObject* metadata,
                                        bool wait_for_ready, PyObject* request,
                                        bool unary_response);
  // Runs a unary call to its end, parking the caller. Returns the finished
  // call, or nullptr with a Python error set (the caller was interrupted:
  // the call is cancelled on the wire).
  std::unique_ptr<ClientCall> UnaryCall(PyObject* path, PyObject* request, PyObject* timeout,
                                        PyObject* metadata, bool wait_for_ready);

  const ChannelOptions& opts() const { return opts_; }

 private:
  bool Resolve(std::string* err);
  // Headers of a request before its metadata, at most.
  static constexpr size_t kFixedRequestHeaders = 9;
  // Fills nva (room for kFixedRequestHeaders + md.size()); returns the count.
  size_t BuildRequestHeaders(nghttp2_nv* nva, std::string_view path, const std::string& timeout,
                             const Headers& md);

  Hub* hub_;
  std::string target_;
  ChannelOptions opts_;
  bool closed_ = false;
  bool resolved_ = false;
  std::vector<SocketAddress> addresses_;
  std::string host_port_;
  ClientConnection* conn_ = nullptr;          // the one new calls go to
  std::vector<ClientConnection*> conns_;      // every connection not closed yet
  std::string last_error_;
};

void ClientConnection::OnClosed() {
  if (channel_) channel_->OnConnectionClosed(this);
  if (state() == kClosed && !deleted_) {
    deleted_ = true;
    hub()->DeferDelete(this);
  }
}

ClientCall::ClientCall(Channel* channel, size_t max_recv, bool unary_response)
    : H2Stream(max_recv), unary_response(unary_response), channel_(channel),
      hub_(channel->hub()) {}

Hub* ClientCall::hub() const { return hub_; }
long long ClientCall::max_send() const { return channel_->opts().max_send; }

void ClientCall::Finish(int c, std::string d) {
  if (done) return;
  done = true;
  code = c;
  details = std::move(d);
  if (timer_) timer_->Stop();
  if (code == kOk && unary_response && deframer.messages().size() != 1) {
    code = kUnimplemented;
    details = deframer.has_message() ? "Too many responses for unary request"
                                     : "No message returned for unary request";
    deframer.Clear();
  }
  recv_wait.WakeAll();
  send_wait.WakeAll();
  md_wait.WakeAll();
  if (callbacks) hub_->SpawnEach(std::move(callbacks));
}

void ClientCall::FinishFromHeaders(const Headers& src) {
  const std::string* status = FindHeader(src, "grpc-status");
  int parsed;
  if (status && ParseGrpcStatus(*status, &parsed)) {
    const std::string* msg = FindHeader(src, "grpc-message");
    if (parsed == kOk && deframer.has_partial())
      Finish(kInternal, "Stream ended in the middle of a message");
    else
      Finish(parsed, msg ? PercentDecode(*msg) : std::string());
  } else if (http_status != 200 && http_status != 0) {
    Finish(StatusFromHttpStatus(http_status),
           "Received http2 header with status: " + std::to_string(http_status));
  } else {
    Finish(kUnknown, "Stream removed without grpc-status");
  }
}

void ClientCall::OnRemoteEnd() {
  if (done) return;
  FinishFromHeaders(trailers_received ? trailers : headers);
  // The server is done; whatever we have not sent yet is not wanted.
  if (!send_closed || pending_send()) Abandon(NGHTTP2_NO_ERROR);
}

void ClientCall::OnClose(uint32_t err) {
  if (done) return;
  if (trailers_received || (headers_received && remote_ended)) {
    FinishFromHeaders(trailers_received ? trailers : headers);
  } else if (err == kConnectionLost) {
    if (channel_->closed())
      Finish(kCancelled, "Channel closed!");
    else
      Finish(kUnavailable, conn && !conn->error().empty() ? conn->error() : "Socket closed");
  } else if (err != NGHTTP2_NO_ERROR) {
    Finish(StatusFromHttp2Error(err), "Received RST_STREAM with error code " + std::to_string(err));
  } else {
    FinishFromHeaders(headers);
  }
}

bool Channel::Resolve(std::string* err) {
  if (resolved_) return true;
  addresses_.clear();
  if (!ResolveTarget(target_, &addresses_, &host_port_, err)) return false;
  resolved_ = true;
  if (opts_.authority.empty()) opts_.authority = host_port_;
  return true;
}

ClientConnection* Channel::Connect(double deadline, bool wait_for_ready, int* code,
                                   std::string* details) {
  double backoff = 1.0;
  bool attempted = false;
  for (;;) {
    if (closed_) {
      *code = kCancelled;
      *details = "Channel closed!";
      return nullptr;
    }
    if (conn_ && conn_->ready()) return conn_;
    double remaining = deadline < 0 ? -1 : deadline - hub_->Now();
    if (deadline >= 0 && remaining <= 0) {
      *code = kDeadlineExceeded;
      *details = "Deadline Exceeded";
      return nullptr;
    }
    if (conn_) {  // connecting: wait for the outcome
      if (conn_->WaitReady(remaining) == Waiter::kError) {
        *code = -1;
        return nullptr;
      }
      continue;
    }
    if (attempted) {
      if (!wait_for_ready) {
        *code = kUnavailable;
        *details = "failed to connect to all addresses; last error: " + last_error_;
        return nullptr;
      }
      // wait_for_ready: retry with backoff until the deadline.
      double pause = deadline < 0 ? backoff : std::min(backoff, remaining);
      auto w = std::make_unique<Waiter>();
      if (w->Wait(pause) == Waiter::kError) {
        *code = -1;
        return nullptr;
      }
      backoff = std::min(backoff * 1.6, 120.0);
      if (closed_ || conn_) continue;
    }
    std::string err;
    if (!Resolve(&err)) {
      last_error_ = err;
      attempted = true;
      continue;
    }
    attempted = true;
    conn_ = new ClientConnection(hub_, this, opts_.h2);
    conns_.push_back(conn_);
    conn_->Connect(addresses_);  // may fail at once and clear conn_
  }
}

size_t Channel::BuildRequestHeaders(nghttp2_nv* nva, std::string_view path,
                                    const std::string& timeout, const Headers& md) {
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
  return n;
}

std::unique_ptr<ClientCall> Channel::StartCall(PyObject* path, PyObject* timeout,
                                               PyObject* metadata, bool wait_for_ready,
                                               PyObject* request, bool unary_response) {
  if (!Usable()) return nullptr;
  Py_ssize_t path_len;
  const char* path_s = PyUnicode_AsUTF8AndSize(path, &path_len);
  if (!path_s) return nullptr;
  Py_buffer req;
  if (request && PyObject_GetBuffer(request, &req, PyBUF_SIMPLE) < 0) return nullptr;
  struct Release {
    Py_buffer* b;
    ~Release() {
      if (b) PyBuffer_Release(b);
    }
  } release{request ? &req : nullptr};

  Headers md;
  if (!AppendMetadata(metadata, &md)) return nullptr;
  auto call = std::make_unique<ClientCall>(this, opts_.max_recv, unary_response);
  std::string timeout_header;
  if (timeout && timeout != Py_None) {
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred()) return nullptr;
    call->deadline = hub_->Now() + t;
    timeout_header = EncodeGrpcTimeout(static_cast<int64_t>(t * 1e9));
  }
  if (request) {
    if (opts_.max_send >= 0 && req.len > opts_.max_send) {
      call->Finish(kResourceExhausted, "Sent message larger than max (" + std::to_string(req.len) +
                                           " vs. " + std::to_string(opts_.max_send) + ")");
      return call;
    }
    AppendFramedMessage(call->sendbuf, static_cast<const char*>(req.buf),
                        static_cast<size_t>(req.len));
    call->send_closed = true;
  }
  int code = 0;
  std::string details;
  ClientConnection* conn = Connect(call->deadline, wait_for_ready, &code, &details);
  if (!conn) {
    if (code < 0) return nullptr;
    call->Finish(code, std::move(details));
    return call;
  }
  // The headers' array lives on the stack unless there is much metadata.
  nghttp2_nv fixed[16];
  std::vector<nghttp2_nv> more;
  nghttp2_nv* nva = fixed;
  if (kFixedRequestHeaders + md.size() > std::size(fixed)) {
    more.resize(kFixedRequestHeaders + md.size());
    nva = more.data();
  }
  size_t nvlen = BuildRequestHeaders(
      nva, std::string_view(path_s, static_cast<size_t>(path_len)), timeout_header, md);
  if (conn->h2().SubmitRequest(call.get(), nva, nvlen) < 0) {
    call->Finish(kInternal, "Failed to start the call: " + conn->h2().submit_error());
    return call;
  }
  call->conn = conn;
  conn->Kick();
  call->StartDeadline(hub_);
  return call;
}

std::unique_ptr<ClientCall> Channel::UnaryCall(PyObject* path, PyObject* request,
                                               PyObject* timeout, PyObject* metadata,
                                               bool wait_for_ready) {
  std::unique_ptr<ClientCall> call =
      StartCall(path, timeout, metadata, wait_for_ready, request, true);
  if (!call) return nullptr;
  while (!call->done) {
    if (call->recv_wait.Wait() == Waiter::kError) {
      // The caller was killed or interrupted: cancel on the wire.
      call->EndLocally(kCancelled, "Cancelled");
      return nullptr;
    }
  }
  return call;
}

// ------------------------------------------------------------ Python type

struct PyChannelObject {
  PyObject_HEAD
  Channel* channel;
};

int Channel_init(PyChannelObject* self, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"target",     "max_receive_message_length",
                                 "max_send_message_length", "authority",
                                 "user_agent", "initial_window_size", nullptr};
  const char* target;
  long long max_recv = 4 * 1024 * 1024, max_send = -1, window = 0;
  const char* authority = "";
  const char* user_agent = "grpc_green";
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|LLssL", const_cast<char**>(kwlist), &target,
                                   &max_recv, &max_send, &authority, &user_agent, &window))
    return -1;
  Hub* hub = Hub::Get();
  if (!hub) return -1;
  ChannelOptions opts;
  opts.max_recv = max_recv < 0 ? static_cast<size_t>(-1) >> 1 : static_cast<size_t>(max_recv);
  opts.max_send = max_send;
  opts.authority = authority;
  opts.user_agent = user_agent;
  if (window > 0) opts.h2.initial_window_size = static_cast<uint32_t>(window);
  delete self->channel;
  self->channel = new Channel(hub, target, std::move(opts));
  return 0;
}

void Channel_dealloc(PyChannelObject* self) {
  delete self->channel;
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

// ------------------------------------------------------------ _core.Call

struct PyCallObject {
  PyObject_HEAD
  ClientCall* call;   // owned
  PyObject* channel;  // owned: the PyChannelObject, so the Channel outlives the call
};

PyObject* NewPyCall(PyObject* channel, std::unique_ptr<ClientCall> call) {
  auto* self = PyObject_GC_New(PyCallObject, &PyCall_Type);
  if (!self) return nullptr;
  self->call = call.release();
  self->channel = Py_NewRef(channel);
  PyObject_GC_Track(self);
  return reinterpret_cast<PyObject*>(self);
}

ClientCall* CallOnThread(PyCallObject* self) {
  return self->call->hub()->CheckThread() ? self->call : nullptr;
}

PyObject* Call_write(PyCallObject* self, PyObject* data) {
  ClientCall* c = CallOnThread(self);
  if (!c) return nullptr;
  if (c->done || c->send_closed) Py_RETURN_FALSE;
  Py_buffer b;
  if (PyObject_GetBuffer(data, &b, PyBUF_SIMPLE) < 0) return nullptr;
  long long max_send = c->max_send();
  if (max_send >= 0 && b.len > max_send) {
    c->EndLocally(kResourceExhausted, "Sent message larger than max (" + std::to_string(b.len) +
                                          " vs. " + std::to_string(max_send) + ")");
    PyBuffer_Release(&b);
    Py_RETURN_FALSE;
  }
  AppendFramedMessage(c->sendbuf, static_cast<const char*>(b.buf), static_cast<size_t>(b.len));
  PyBuffer_Release(&b);
  if (c->attached()) {
    c->session()->ResumeData(c);
    c->Kick();
  }
  // Backpressure: park while the HTTP/2 window keeps our bytes queued.
  while (!c->done && c->attached() && c->session()->SendBlocked(c)) {
    if (c->send_wait.Wait() == Waiter::kError) {
      // The writer was killed or interrupted (gevent.Timeout): cancel on
      // the wire, as for a unary call.
      c->EndLocally(kCancelled, "Cancelled");
      return nullptr;
    }
  }
  return PyBool_FromLong(!c->done);
}

PyObject* Call_done_writing(PyCallObject* self, PyObject*) {
  ClientCall* c = CallOnThread(self);
  if (!c) return nullptr;
  if (!c->done && !c->send_closed) {
    c->send_closed = true;
    if (c->attached()) {
      c->session()->ResumeData(c);
      c->Kick();
    }
  }
  Py_RETURN_NONE;
}

PyObject* Call_read(PyCallObject* self, PyObject*) {
  ClientCall* c = CallOnThread(self);
  if (!c) return nullptr;
  for (;;) {
    if (c->deframer.has_message()) {
      std::string m = c->deframer.Pop();
      if (c->attached() && c->session()->Consumed(c)) c->Kick();
      return PyBytes_FromStringAndSize(m.data(), static_cast<Py_ssize_t>(m.size()));
    }
    if (c->done) Py_RETURN_NONE;
    if (c->recv_wait.Wait() == Waiter::kError) {
      // The reader was killed or interrupted: cancel on the wire.
      c->EndLocally(kCancelled, "Cancelled");
      return nullptr;
    }
  }
}

// wait(timeout=None) -> True once the status is known.
PyObject* Call_wait(PyCallObject* self, PyObject* const* args, Py_ssize_t nargs) {
  ClientCall* c = CallOnThread(self);
  if (!c) return nullptr;
  double timeout = -1;
  if (nargs > 0 && args[0] != Py_None) {
    timeout = PyFloat_AsDouble(args[0]);
    if (timeout == -1.0 && PyErr_Occurred()) return nullptr;
    if (timeout < 0) timeout = 0;
  }
  double until = timeout < 0 ? -1 : c->hub()->Now() + timeout;
  while (!c->done) {
    double left = until < 0 ? -1 : until - c->hub()->Now();
    if (until >= 0 && left <= 0) break;
    if (c->recv_wait.Wait(left) == Waiter::kError) return nullptr;
  }
  return PyBool_FromLong(c->done);
}

PyObject* Call_initial_metadata(PyCallObject* self, PyObject*) {
  ClientCall* c = CallOnThread(self);
  if (!c) return nullptr;
  while (!c->headers_received && !c->done) {
    if (c->md_wait.Wait() == Waiter::kError) return nullptr;
  }
  const Headers* h = c->initial_headers();
  return h ? MetadataToPython(*h) : PyTuple_New(0);
}

// None until the call is done.
PyObject* Call_trailing_metadata(PyCallObject* self, PyObject*) {
  ClientCall* c = self->call;
  if (!c->done) Py_RETURN_NONE;
  const Headers* h = c->trailing_headers();
  return h ? MetadataToPython(*h) : PyTuple_New(0);
}

PyObject* Call_cancel(PyCallObject* self, PyObject* const* args, Py_ssize_t nargs) {
  ClientCall* c = CallOnThread(self);
  if (!c) return nullptr;
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "cancel(code, details)");
    return nullptr;
  }
  int code = PyLong_AsLong(args[0]);
  if (code == -1 && PyErr_Occurred()) return nullptr;
  Py_ssize_t n;
  const char* d = PyUnicode_AsUTF8AndSize(args[1], &n);
  if (!d) return nullptr;
  if (c->done) Py_RETURN_FALSE;
  c->EndLocally(code, std::string(d, static_cast<size_t>(n)));
  Py_RETURN_TRUE;
}

PyObject* Call_is_active(PyCallObject* self, PyObject*) { return PyBool_FromLong(!self->call->done); }

PyObject* Call_time_remaining(PyCallObject* self, PyObject*) {
  ClientCall* c = self->call;
  if (c->deadline < 0) Py_RETURN_NONE;
  double left = c->deadline - c->hub()->Now();
  return PyFloat_FromDouble(left > 0 ? left : 0.0);
}

// add_done_callback(fn) -> False if the call is already done (fn not kept).
PyObject* Call_add_done_callback(PyCallObject* self, PyObject* fn) {
  ClientCall* c = self->call;
  if (c->done) Py_RETURN_FALSE;
  if (!c->callbacks) {
    c->callbacks = OwnedObject::consuming(PyList_New(0));
    if (!c->callbacks) return nullptr;
  }
  if (PyList_Append(c->callbacks.get(), fn) < 0) return nullptr;
  Py_RETURN_TRUE;
}

PyObject* Call_get_code(PyCallObject* self, void*) {
  if (!self->call->done) Py_RETURN_NONE;
  return PyLong_FromLong(self->call->code);
}

PyObject* Call_get_details(PyCallObject* self, void*) {
  ClientCall* c = self->call;
  if (!c->done) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(c->details.data(), static_cast<Py_ssize_t>(c->details.size()),
                              "replace");
}

int Call_traverse(PyCallObject* self, visitproc visit, void* arg) {
  Py_VISIT(self->channel);
  if (self->call) Py_VISIT(self->call->callbacks.get());
  return 0;
}

int Call_clear(PyCallObject* self) {
  if (self->call) self->call->callbacks.reset();
  return 0;
}

void Call_dealloc(PyCallObject* self) {
  PyObject_GC_UnTrack(self);
  if (ClientCall* c = self->call) {
    self->call = nullptr;
    // An unfinished call is reset on the wire; the object itself goes
    // between hub iterations, in case this runs inside one of its hooks.
    c->Abandon();
    c->callbacks.reset();
    c->hub()->DeferDelete(c);
  }
  Py_CLEAR(self->channel);
  PyObject_GC_Del(self);
}

PyMethodDef Call_methods[] = {
    {"write", (PyCFunction)Call_write, METH_O,
     "Queues one request message; parks while the send window is full. False once the call "
     "has ended."},
    {"done_writing", (PyCFunction)Call_done_writing, METH_NOARGS, "Ends the request stream."},
    {"read", (PyCFunction)Call_read, METH_NOARGS,
     "Next response message as bytes (parks), or None when no more will come."},
    {"wait", (PyCFunction)(void (*)(void))Call_wait, METH_FASTCALL,
     "wait(timeout=None) -> True once the call has its status."},
    {"initial_metadata", (PyCFunction)Call_initial_metadata, METH_NOARGS, nullptr},
    {"trailing_metadata", (PyCFunction)Call_trailing_metadata, METH_NOARGS, nullptr},
    {"cancel", (PyCFunction)(void (*)(void))Call_cancel, METH_FASTCALL,
     "cancel(code, details) -> True if this ended the call."},
    {"is_active", (PyCFunction)Call_is_active, METH_NOARGS, nullptr},
    {"time_remaining", (PyCFunction)Call_time_remaining, METH_NOARGS, nullptr},
    {"add_done_callback", (PyCFunction)Call_add_done_callback, METH_O, nullptr},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef Call_getset[] = {
    {"code", (getter)Call_get_code, nullptr, "Status code, None while active.", nullptr},
    {"details", (getter)Call_get_details, nullptr, "Status details, None while active.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// start(path, timeout, metadata, wait_for_ready, request_or_None, unary_response) -> Call
PyObject* Channel_start(PyChannelObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 6) {
    PyErr_SetString(PyExc_TypeError,
                    "start(path, timeout, metadata, wait_for_ready, request, unary_response)");
    return nullptr;
  }
  if (!self->channel) return PyErr_Format(PyExc_ValueError, "channel not initialised");
  if (self->channel->closed()) {
    PyErr_SetString(PyExc_ValueError, "Cannot invoke RPC on closed channel!");
    return nullptr;
  }
  int wfr = PyObject_IsTrue(args[3]);
  int unary_response = PyObject_IsTrue(args[5]);
  if (wfr < 0 || unary_response < 0) return nullptr;
  std::unique_ptr<ClientCall> call =
      self->channel->StartCall(args[0], args[1], args[2], wfr == 1,
                               args[4] == Py_None ? nullptr : args[4], unary_response == 1);
  if (!call) return nullptr;
  return NewPyCall(reinterpret_cast<PyObject*>(self), std::move(call));
}

PyObject* Channel_close(PyChannelObject* self, PyObject*) {
  if (self->channel) {
    if (!self->channel->Usable()) return nullptr;
    self->channel->Close();
  }
  Py_RETURN_NONE;
}

PyMethodDef Channel_methods[] = {
    {"start", (PyCFunction)(void (*)(void))Channel_start, METH_FASTCALL,
     "start(path, timeout, metadata, wait_for_ready, request_or_None, unary_response) -> Call"},
    {"close", (PyCFunction)Channel_close, METH_NOARGS, "Closes the connection; in-flight calls end CANCELLED."},
    {nullptr, nullptr, 0, nullptr}};

// ------------------------------------------------------------ _core.UnaryUnary

// The unary-unary multicallable's engine half. grpc_green._channel
// subclasses it (adding with_call(), future() and the exception factory
// _fail()), so a stub call goes from the caller straight into C:
// serialize, run the call on the hub, deserialize.
struct PyUnaryObject {
  PyObject_HEAD
  PyObject* channel;       // owned: grpc_green._channel.Channel
  PyObject* core;          // owned: its _core.Channel
  PyObject* method;        // owned: str
  PyObject* serializer;    // owned: callable or None
  PyObject* deserializer;  // owned: callable or None
  vectorcallfunc vectorcall;
};

// __call__'s parameters, grpcio's names and order.
enum UnaryArg { kRequest, kTimeout, kMetadata, kCredentials, kWaitForReady, kCompression, kNumArgs };
const char* const kUnaryArgNames[kNumArgs] = {"request",     "timeout",        "metadata",
                                              "credentials", "wait_for_ready", "compression"};
PyObject* g_unary_arg_names[kNumArgs];  // interned, set when the type is readied

bool InternUnaryArgNames() {
  for (int i = 0; i < kNumArgs; ++i) {
    if (g_unary_arg_names[i]) continue;
    g_unary_arg_names[i] = PyUnicode_InternFromString(kUnaryArgNames[i]);
    if (!g_unary_arg_names[i]) return false;
  }
  return true;
}

// Vectorcall arguments into out[] (borrowed; NULL where not given).
bool ParseUnaryArgs(PyObject* const* args, size_t nargsf, PyObject* kwnames,
                    PyObject* out[kNumArgs]) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs > kNumArgs) {
    PyErr_Format(PyExc_TypeError, "__call__() takes at most %d arguments (%zd given)", kNumArgs,
                 nargs);
    return false;
  }
  for (int i = 0; i < kNumArgs; ++i) out[i] = i < nargs ? args[i] : nullptr;
  Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* name = PyTuple_GET_ITEM(kwnames, k);
    int i = 0;
    while (i < kNumArgs && name != g_unary_arg_names[i]) ++i;  // interned: usually identical
    if (i == kNumArgs) {
      for (i = 0; i < kNumArgs; ++i) {
        int eq = PyObject_RichCompareBool(name, g_unary_arg_names[i], Py_EQ);
        if (eq < 0) return false;
        if (eq) break;
      }
    }
    if (i == kNumArgs) {
      PyErr_Format(PyExc_TypeError, "__call__() got an unexpected keyword argument '%S'", name);
      return false;
    }
    if (out[i]) {
      PyErr_Format(PyExc_TypeError, "__call__() got multiple values for argument '%s'",
                   kUnaryArgNames[i]);
      return false;
    }
    out[i] = args[nargs + k];
  }
  if (!out[kRequest]) {
    PyErr_SetString(PyExc_TypeError, "__call__() missing required argument 'request'");
    return false;
  }
  return true;
}

PyObject* MetadataOf(const Headers* h) { return h ? MetadataToPython(*h) : PyTuple_New(0); }

// Raises what self._fail(code, details, initial, trailing) returns (the
// RpcError the application sees). `pending` is the exception being
// replaced, if any: it becomes the new one's __cause__ (as_cause) or
// __context__.
PyObject* RaiseRpcError(PyUnaryObject* self, int code, const std::string& details,
                        const ClientCall* call, bool replace_pending, bool as_cause = false) {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  if (replace_pending) {
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
  }
  OwnedObject pending = OwnedObject::consuming(value);
  OwnedObject d = OwnedObject::consuming(PyUnicode_DecodeUTF8(
      details.data(), static_cast<Py_ssize_t>(details.size()), "replace"));
  OwnedObject initial = OwnedObject::consuming(MetadataOf(call ? call->initial_headers() : nullptr));
  OwnedObject trailing =
      OwnedObject::consuming(MetadataOf(call ? call->trailing_headers() : nullptr));
  if (!d || !initial || !trailing) return nullptr;
  OwnedObject exc = OwnedObject::consuming(PyObject_CallMethod(
      reinterpret_cast<PyObject*>(self), "_fail", "iOOO", code, d.get(), initial.get(),
      trailing.get()));
  if (!exc) return nullptr;
  if (!PyExceptionInstance_Check(exc.get())) {
    PyErr_SetString(PyExc_TypeError, "_fail() must return an exception");
    return nullptr;
  }
  if (pending) {
    if (as_cause) PyException_SetCause(exc.get(), pending.relinquish());
    else PyException_SetContext(exc.get(), pending.relinquish());
  }
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.get())), exc.get());
  return nullptr;
}

// The whole unary call. Returns the response, or with `with_metadata`
// (response, initial_metadata, trailing_metadata); raises the RpcError of a
// call that did not end OK.
PyObject* UnaryInvoke(PyUnaryObject* self, PyObject* request, PyObject* timeout,
                      PyObject* metadata, PyObject* wait_for_ready, bool with_metadata) {
  Channel* channel = self->core ? reinterpret_cast<PyChannelObject*>(self->core)->channel : nullptr;
  if (!channel) return PyErr_Format(PyExc_ValueError, "channel not initialised");
  if (channel->closed()) {
    PyErr_SetString(PyExc_ValueError, "Cannot invoke RPC on closed channel!");
    return nullptr;
  }
  int wfr = wait_for_ready ? PyObject_IsTrue(wait_for_ready) : 0;
  if (wfr < 0) return nullptr;
  OwnedObject payload;
  if (self->serializer == Py_None) {
    payload = OwnedObject::owning(request);
  } else {
    payload = OwnedObject::consuming(PyObject_CallOneArg(self->serializer, request));
    if (!payload) {
      if (!PyErr_ExceptionMatches(PyExc_Exception)) return nullptr;
      return RaiseRpcError(self, kInternal, "Exception serializing request!", nullptr, true);
    }
  }
  std::unique_ptr<ClientCall> call = channel->UnaryCall(
      self->method, payload.get(), timeout ? timeout : Py_None, metadata ? metadata : Py_None,
      wfr == 1);
  if (!call) {
    if (!PyErr_ExceptionMatches(InvalidMetadataError)) return nullptr;
    // grpcio fails the call locally; the cause says what was wrong.
    return RaiseRpcError(self, kInternal, "Invalid metadata", nullptr, true, true);
  }
  // The finished call is freed by the hub between passes, after the
  // caller's next request has gone out rather than before.
  struct FreeLater {
    std::unique_ptr<ClientCall>& call;
    ~FreeLater() {
      Hub* hub = call->hub();
      hub->DeferDelete(call.release());
    }
  } free_later{call};
  if (call->code != kOk) return RaiseRpcError(self, call->code, call->details, call.get(), false);
  std::string msg = call->deframer.Pop();
  OwnedObject response = OwnedObject::consuming(
      PyBytes_FromStringAndSize(msg.data(), static_cast<Py_ssize_t>(msg.size())));
  if (!response) return nullptr;
  if (self->deserializer != Py_None) {
    response = OwnedObject::consuming(PyObject_CallOneArg(self->deserializer, response.get()));
    if (!response) {
      if (!PyErr_ExceptionMatches(PyExc_Exception)) return nullptr;
      return RaiseRpcError(self, kInternal, "Exception deserializing response!", call.get(),
                           true);
    }
  }
  if (!with_metadata) return response.relinquish();
  OwnedObject initial = OwnedObject::consuming(MetadataOf(call->initial_headers()));
  OwnedObject trailing = OwnedObject::consuming(MetadataOf(call->trailing_headers()));
  if (!initial || !trailing) return nullptr;
  return PyTuple_Pack(3, response.get(), initial.get(), trailing.get());
}

// __call__(request, timeout=None, metadata=None, credentials=None,
//          wait_for_ready=None, compression=None) -> response
PyObject* Unary_vectorcall(PyObject* self, PyObject* const* args, size_t nargsf,
                           PyObject* kwnames) {
  PyObject* a[kNumArgs];
  if (!ParseUnaryArgs(args, nargsf, kwnames, a)) return nullptr;
  return UnaryInvoke(reinterpret_cast<PyUnaryObject*>(self), a[kRequest], a[kTimeout],
                     a[kMetadata], a[kWaitForReady], false);
}

// _invoke(request, timeout, metadata, wait_for_ready) -> (response, initial, trailing)
PyObject* Unary_invoke(PyUnaryObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "_invoke(request, timeout, metadata, wait_for_ready)");
    return nullptr;
  }
  return UnaryInvoke(self, args[0], args[1], args[2], args[3], true);
}

int Unary_init(PyUnaryObject* self, PyObject* args, PyObject* kwds) {
  PyObject *channel, *method, *serializer = Py_None, *deserializer = Py_None;
  static const char* kwlist[] = {"channel", "method", "serializer", "deserializer", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "OU|OO", const_cast<char**>(kwlist), &channel,
                                   &method, &serializer, &deserializer))
    return -1;
  OwnedObject core = OwnedObject::consuming(PyObject_GetAttrString(channel, "_core"));
  if (!core) return -1;
  if (!PyObject_TypeCheck(core.get(), &PyChannel_Type)) {
    PyErr_SetString(PyExc_TypeError, "channel._core must be a grpc_green._core.Channel");
    return -1;
  }
  Py_INCREF(channel);
  Py_INCREF(method);
  Py_INCREF(serializer);
  Py_INCREF(deserializer);
  Py_XSETREF(self->channel, channel);
  Py_XSETREF(self->core, core.relinquish());
  Py_XSETREF(self->method, method);
  Py_XSETREF(self->serializer, serializer);
  Py_XSETREF(self->deserializer, deserializer);
  return 0;
}

PyObject* Unary_new(PyTypeObject* type, PyObject*, PyObject*) {
  if (!InternUnaryArgNames()) return nullptr;
  auto* self = reinterpret_cast<PyUnaryObject*>(type->tp_alloc(type, 0));
  if (self) self->vectorcall = Unary_vectorcall;
  return reinterpret_cast<PyObject*>(self);
}

int Unary_traverse(PyUnaryObject* self, visitproc visit, void* arg) {
  Py_VISIT(self->channel);
  Py_VISIT(self->serializer);
  Py_VISIT(self->deserializer);
  return 0;
}

int Unary_clear(PyUnaryObject* self) {
  Py_CLEAR(self->channel);
  Py_CLEAR(self->serializer);
  Py_CLEAR(self->deserializer);
  return 0;
}

// A Python subclass's instances come here through subtype_dealloc, which
// also releases their class.
void Unary_dealloc(PyUnaryObject* self) {
  PyObject_GC_UnTrack(self);
  Unary_clear(self);
  Py_CLEAR(self->core);
  Py_CLEAR(self->method);
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

// A Python subclass that keeps __call__ is called through vectorcall too:
// Python 3.12 arranges that itself, 3.11 leaves heap subclasses on tp_call
// (a tuple and a dict per call).
PyObject* Unary_init_subclass(PyObject* cls, PyObject* args, PyObject* kwds) {
  if (PyTuple_GET_SIZE(args) != 0 || (kwds && PyDict_GET_SIZE(kwds) != 0)) {
    PyErr_SetString(PyExc_TypeError, "UnaryUnary.__init_subclass__() takes no arguments");
    return nullptr;
  }
#if PY_VERSION_HEX < 0x030C0000
  auto* type = reinterpret_cast<PyTypeObject*>(cls);
  PyObject* own_call = PyDict_GetItemString(type->tp_dict, "__call__");  // borrowed
  if (!own_call && type->tp_call == PyVectorcall_Call &&
      type->tp_vectorcall_offset == offsetof(PyUnaryObject, vectorcall))
    type->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
#endif
  Py_RETURN_NONE;
}

PyMethodDef Unary_methods[] = {
    {"__init_subclass__", (PyCFunction)(void (*)(void))Unary_init_subclass,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, nullptr},
    {"_invoke", (PyCFunction)(void (*)(void))Unary_invoke, METH_FASTCALL,
     "_invoke(request, timeout, metadata, wait_for_ready) -> (response, initial_metadata, "
     "trailing_metadata); raises the RpcError of a call that did not end OK."},
    {nullptr, nullptr, 0, nullptr}};

PyMemberDef Unary_members[] = {
    {"_channel", T_OBJECT, offsetof(PyUnaryObject, channel), READONLY, nullptr},
    {"_method", T_OBJECT, offsetof(PyUnaryObject, method), READONLY, nullptr},
    {"_serializer", T_OBJECT, offsetof(PyUnaryObject, serializer), READONLY, nullptr},
    {"_deserializer", T_OBJECT, offsetof(PyUnaryObject, deserializer), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

}  // namespace

PyTypeObject PyCall_Type = [] {
  PyTypeObject t = {PyVarObject_HEAD_INIT(nullptr, 0)};
  t.tp_name = "grpc_green._core.Call";
  t.tp_basicsize = sizeof(PyCallObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
  t.tp_doc = "A client call whose messages are read and written one at a time.";
  t.tp_dealloc = (destructor)Call_dealloc;
  t.tp_traverse = (traverseproc)Call_traverse;
  t.tp_clear = (inquiry)Call_clear;
  t.tp_methods = Call_methods;
  t.tp_getset = Call_getset;
  return t;
}();

PyTypeObject PyUnaryUnary_Type = [] {
  PyTypeObject t = {PyVarObject_HEAD_INIT(nullptr, 0)};
  t.tp_name = "grpc_green._core.UnaryUnary";
  t.tp_basicsize = sizeof(PyUnaryObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
               Py_TPFLAGS_HAVE_VECTORCALL;
  t.tp_doc = "UnaryUnary(channel, method, serializer=None, deserializer=None): calling it "
             "runs one unary call.";
  t.tp_vectorcall_offset = offsetof(PyUnaryObject, vectorcall);
  t.tp_call = PyVectorcall_Call;  // subclasses, which do not inherit vectorcall
  t.tp_new = Unary_new;
  t.tp_init = (initproc)Unary_init;
  t.tp_dealloc = (destructor)Unary_dealloc;
  t.tp_traverse = (traverseproc)Unary_traverse;
  t.tp_clear = (inquiry)Unary_clear;
  t.tp_methods = Unary_methods;
  t.tp_members = Unary_members;
  return t;
}();

PyTypeObject PyChannel_Type = [] {
  PyTypeObject t = {PyVarObject_HEAD_INIT(nullptr, 0)};
  t.tp_name = "grpc_green._core.Channel";
  t.tp_basicsize = sizeof(PyChannelObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT;
  t.tp_doc = "A connection manager for one target; calls run on the hub.";
  t.tp_new = PyType_GenericNew;
  t.tp_init = (initproc)Channel_init;
  t.tp_dealloc = (destructor)Channel_dealloc;
  t.tp_methods = Channel_methods;
  return t;
}();

}  // namespace grpc_green
