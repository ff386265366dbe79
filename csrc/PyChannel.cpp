// _core.Channel: the client side. A channel owns at most one live
// connection (opened lazily, replaced after it closes or is told to go
// away) and runs calls on it from whichever greenlet calls.
#include <Python.h>

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

class ClientCall final : public H2Stream, private TimerHandler {
 public:
  ClientCall(Channel* channel, size_t max_recv) : H2Stream(max_recv), channel_(channel) {}

  Waiter waiter;
  bool done = false;
  int code = kUnknown;
  std::string details;
  ClientConnection* conn = nullptr;  // valid while attached()

  void StartDeadline(Hub* hub, double after) {
    timer_ = hub->io().NewTimer(this);
    timer_->Start(after);
  }
  // Ends the call here (deadline, cancellation, bad input): reset the
  // stream and stop listening to it.
  void EndLocally(int c, std::string d) {
    if (done) return;
    code = c;
    details = std::move(d);
    done = true;
    if (attached()) {
      session()->Abandon(this, NGHTTP2_CANCEL);
      conn->Kick();
    }
    waiter.Wake();
  }

 private:
  void OnMessages() override {
    if (deframer.failed()) EndLocally(deframer.error_code(), deframer.error());
  }
  void OnClose(uint32_t err) override;
  void OnTimer() override { EndLocally(kDeadlineExceeded, "Deadline Exceeded"); }

  Channel* channel_;
  std::unique_ptr<Timer> timer_;
};

class Channel {
 public:
  Channel(Hub* hub, std::string target, ChannelOptions opts)
      : hub_(hub), target_(std::move(target)), opts_(std::move(opts)) {}
  ~Channel() { Close(); }

  Hub* hub() const { return hub_; }
  bool closed() const { return closed_; }

  void Close() {
    if (closed_) return;
    closed_ = true;
    if (conn_) {
      ClientConnection* c = conn_;
      c->GoawayAndClose("Channel closed!");
    }
  }

  void OnConnectionClosed(ClientConnection* c) {
    if (conn_ == c) conn_ = nullptr;
    if (!c->error().empty()) last_error_ = c->error();
  }

  // Finds or opens a ready connection. On failure returns nullptr and
  // fills code/details, or returns nullptr with a Python error set
  // (code == -1).
  ClientConnection* Connect(double deadline, bool wait_for_ready, int* code, std::string* details);

  PyObject* UnaryCall(PyObject* path, PyObject* request, PyObject* timeout, PyObject* metadata,
                      bool wait_for_ready);

  const ChannelOptions& opts() const { return opts_; }

 private:
  bool Resolve(std::string* err);
  void BuildRequestHeaders(std::vector<nghttp2_nv>* nva, std::string_view path,
                           const std::string& timeout, const Headers& md);

  Hub* hub_;
  std::string target_;
  ChannelOptions opts_;
  bool closed_ = false;
  bool resolved_ = false;
  std::vector<SocketAddress> addresses_;
  std::string host_port_;
  ClientConnection* conn_ = nullptr;
  std::string last_error_;
};

void ClientConnection::OnClosed() {
  if (channel_) channel_->OnConnectionClosed(this);
  if (state() == kClosed && !deleted_) {
    deleted_ = true;
    hub()->DeferDelete(this);
  }
}

void ClientCall::OnClose(uint32_t err) {
  if (done) return;
  done = true;
  const Headers& src = trailers_received ? trailers : headers;
  const std::string* status = FindHeader(src, "grpc-status");
  int parsed;
  if (status && ParseGrpcStatus(*status, &parsed)) {
    code = parsed;
    const std::string* msg = FindHeader(src, "grpc-message");
    details = msg ? PercentDecode(*msg) : std::string();
    if (code == kOk && deframer.has_partial()) {
      code = kInternal;
      details = "Stream ended in the middle of a message";
    }
  } else if (err == kConnectionLost) {
    if (channel_->closed()) {
      code = kCancelled;
      details = "Channel closed!";
    } else {
      code = kUnavailable;
      details = conn && !conn->error().empty() ? conn->error() : "Socket closed";
    }
  } else if (err != NGHTTP2_NO_ERROR) {
    code = StatusFromHttp2Error(err);
    details = "Received RST_STREAM with error code " + std::to_string(err);
  } else if (http_status != 200 && http_status != 0) {
    code = StatusFromHttpStatus(http_status);
    details = "Received http2 header with status: " + std::to_string(http_status);
  } else {
    code = kUnknown;
    details = "Stream removed without grpc-status";
  }
  waiter.Wake();
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
    conn_->Connect(addresses_);  // may fail at once and clear conn_
  }
}

void Channel::BuildRequestHeaders(std::vector<nghttp2_nv>* nva, std::string_view path,
                                  const std::string& timeout, const Headers& md) {
  nva->reserve(9 + md.size());
  nva->push_back(MakeNv(":method", "POST"));
  nva->push_back(MakeNv(":scheme", "http"));
  nva->push_back(MakeNv(":path", path));
  nva->push_back(MakeNv(":authority", opts_.authority));
  nva->push_back(MakeNv("te", "trailers"));
  nva->push_back(MakeNv("content-type", "application/grpc"));
  nva->push_back(MakeNv("user-agent", opts_.user_agent));
  nva->push_back(MakeNv("grpc-accept-encoding", "identity"));
  if (!timeout.empty()) nva->push_back(MakeNv("grpc-timeout", timeout));
  for (auto& h : md) nva->push_back(MakeNv(h.first, h.second));
}

PyObject* StatusTuple(int code, const std::string& details, PyObject* response, PyObject* initial,
                      PyObject* trailing) {
  OwnedObject d = OwnedObject::consuming(
      PyUnicode_DecodeUTF8(details.data(), static_cast<Py_ssize_t>(details.size()), "replace"));
  if (!d) return nullptr;
  OwnedObject empty = OwnedObject::consuming(PyTuple_New(0));
  if (!empty) return nullptr;
  return Py_BuildValue("(iOOOO)", code, d.get(), response ? response : Py_None,
                       initial ? initial : empty.get(), trailing ? trailing : empty.get());
}

PyObject* Channel::UnaryCall(PyObject* path, PyObject* request, PyObject* timeout,
                             PyObject* metadata, bool wait_for_ready) {
  if (!hub_->CheckThread()) return nullptr;
  Py_ssize_t path_len;
  const char* path_s = PyUnicode_AsUTF8AndSize(path, &path_len);
  if (!path_s) return nullptr;
  Py_buffer req;
  if (PyObject_GetBuffer(request, &req, PyBUF_SIMPLE) < 0) return nullptr;
  struct Release {
    Py_buffer* b;
    ~Release() { PyBuffer_Release(b); }
  } release{&req};

  Headers md;
  if (!AppendMetadata(metadata, &md)) return nullptr;
  double deadline = -1;
  std::string timeout_header;
  if (timeout && timeout != Py_None) {
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred()) return nullptr;
    deadline = hub_->Now() + t;
    timeout_header = EncodeGrpcTimeout(static_cast<int64_t>(t * 1e9));
  }
  if (opts_.max_send >= 0 && req.len > opts_.max_send) {
    return StatusTuple(kResourceExhausted,
                       "Sent message larger than max (" + std::to_string(req.len) + " vs. " +
                           std::to_string(opts_.max_send) + ")",
                       nullptr, nullptr, nullptr);
  }
  int code = 0;
  std::string details;
  ClientConnection* conn = Connect(deadline, wait_for_ready, &code, &details);
  if (!conn) {
    if (code < 0) return nullptr;
    return StatusTuple(code, details, nullptr, nullptr, nullptr);
  }

  auto call = std::make_unique<ClientCall>(this, opts_.max_recv);
  AppendFramedMessage(call->sendbuf, static_cast<const char*>(req.buf), static_cast<size_t>(req.len));
  call->send_closed = true;
  std::vector<nghttp2_nv> nva;
  BuildRequestHeaders(&nva, std::string_view(path_s, static_cast<size_t>(path_len)),
                      timeout_header, md);
  if (conn->h2().SubmitRequest(call.get(), nva.data(), nva.size()) < 0) {
    return StatusTuple(kInternal, "Failed to start the call: " + conn->h2().submit_error(), nullptr,
                       nullptr, nullptr);
  }
  call->conn = conn;
  conn->Kick();
  if (deadline >= 0) call->StartDeadline(hub_, deadline - hub_->Now());

  while (!call->done) {
    if (call->waiter.Wait() == Waiter::kError) {
      // The caller was killed or interrupted: cancel on the wire.
      call->EndLocally(kCancelled, "Cancelled");
      return nullptr;
    }
  }
  OwnedObject response;
  if (call->code == kOk) {
    auto& msgs = call->deframer.messages();
    if (msgs.size() != 1) {
      call->code = kUnimplemented;
      call->details = msgs.empty() ? "No message returned for unary request"
                                   : "Too many responses for unary request";
    } else {
      response = OwnedObject::consuming(PyBytes_FromStringAndSize(
          msgs.front().data(), static_cast<Py_ssize_t>(msgs.front().size())));
      if (!response) return nullptr;
    }
  }
  bool trailers_only = !call->trailers_received;
  OwnedObject initial = OwnedObject::consuming(
      trailers_only ? PyTuple_New(0) : MetadataToPython(call->headers));
  OwnedObject trailing = OwnedObject::consuming(
      MetadataToPython(trailers_only ? call->headers : call->trailers));
  if (!initial || !trailing) return nullptr;
  return StatusTuple(call->code, call->details, response.get(), initial.get(), trailing.get());
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

PyObject* Channel_unary_unary(PyChannelObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 5) {
    PyErr_SetString(PyExc_TypeError,
                    "unary_unary(path, request, timeout, metadata, wait_for_ready)");
    return nullptr;
  }
  if (!self->channel) return PyErr_Format(PyExc_ValueError, "channel not initialised");
  if (self->channel->closed()) {
    PyErr_SetString(PyExc_ValueError, "Cannot invoke RPC on closed channel!");
    return nullptr;
  }
  int wfr = PyObject_IsTrue(args[4]);
  if (wfr < 0) return nullptr;
  return self->channel->UnaryCall(args[0], args[1], args[2], args[3], wfr == 1);
}

PyObject* Channel_close(PyChannelObject* self, PyObject*) {
  if (self->channel) {
    if (!self->channel->hub()->CheckThread()) return nullptr;
    self->channel->Close();
  }
  Py_RETURN_NONE;
}

PyMethodDef Channel_methods[] = {
    {"unary_unary", (PyCFunction)(void (*)(void))Channel_unary_unary, METH_FASTCALL,
     "unary_unary(path, request, timeout, metadata, wait_for_ready) -> "
     "(code, details, response, initial_metadata, trailing_metadata)"},
    {"close", (PyCFunction)Channel_close, METH_NOARGS, "Closes the connection; in-flight calls end CANCELLED."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

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
