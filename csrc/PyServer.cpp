// _core.Server and _core.ServerCall: the bindings of the server engine
// (engine/Server.hpp).
//
// Each call whose request headers are valid gets a _core.ServerCall and a
// pooled greenlet running `dispatch(call)` (the Python layer finds the
// handler, reads, runs it and responds). The call's methods convert
// arguments and park the handler's greenlet until the engine's hooks wake
// it.
//
// Threads: the methods that act on the call (read, write, respond, ...)
// run on its hub's thread only. is_active, time_remaining,
// invocation_metadata, peer and add_callback only read the call (or append
// to its list of callbacks) and may be called from any thread holding the
// GIL, which the hub holds whenever it changes the call: a handler running
// in an executor thread calls them directly (grpc_green/_threads.py).
#include <Python.h>

#include <memory>
#include <string>
#include <unordered_map>

#include "PyMetadata.hpp"
#include "PyTypes.hpp"
#include "Server.hpp"
#include "gg_refs.hpp"

namespace grpc_green {

namespace {

// A server call and the greenlets waiting on it.
class GreenServerCall final : public ServerCall {
 public:
  WaitList recv_wait;       // the request reader
  WaitList send_wait;       // a writer waiting for the send window
  OwnedObject callbacks;    // list or empty: spawned when the stream closes
  OwnedObject method_name;  // the method as a str, shared by the calls of one method

 protected:
  void OnReadable() noexcept override { recv_wait.WakeAll(); }
  void OnWritable() noexcept override { send_wait.WakeAll(); }
};

struct PyServerCallObject {
  PyObject_HEAD
  GreenServerCall* call;  // retained; released in dealloc
  OwnedObject server;     // the PyServerObject
};

// The server engine and what the bindings keep beside it.
class GreenServer final : public Server::Delegate {
 public:
  GreenServer(BorrowedObject py, Hub* hub, OwnedObject dispatch, ServerOptions opts)
      : py_(py),
        dispatch(std::move(dispatch)),
        termination(OwnedObject::consuming(NewEvent())),
        server(std::make_unique<Server>(ReactorRef(hub), this, std::move(opts))) {}
  ~GreenServer() {
    // The engine goes first: closing its connections ends their calls,
    // which calls back into this object.
    server.reset();
  }

  Hub* hub() const { return Hub::Of(server->reactor()); }

  ServerCall* NewCall() override { return new GreenServerCall(); }
  bool OnCall(ServerCall* call) noexcept override;
  void OnCallClosed(ServerCall* call) noexcept override {
    auto* c = static_cast<GreenServerCall*>(call);
    // Callbacks run in greenlets of their own, after this hook returns.
    if (c->callbacks) hub()->SpawnEach(std::move(c->callbacks));
  }
  void OnTerminated() noexcept override {
    if (termination) SetEvent(termination.borrow());
  }

  // The method path as a str, made once per method (its hash too, for the
  // handler lookup); paths beyond the first kMaxMethodNames are not kept.
  OwnedObject MethodName(std::string_view path);

  BorrowedObject py_;       // the PyServerObject that owns this
  OwnedObject dispatch;     // dispatch(call), run in a pool greenlet per call
  OwnedObject termination;  // _core.Event set when Stop() has finished
  std::unordered_map<std::string, OwnedObject> method_names;
  static constexpr size_t kMaxMethodNames = 1024;
  std::unique_ptr<Server> server;  // last: destroyed first
};

OwnedObject GreenServer::MethodName(std::string_view path) {
  auto it = method_names.find(std::string(path));
  if (it != method_names.end()) return it->second;
  OwnedObject name = OwnedObject::consuming(
      PyUnicode_DecodeUTF8(path.data(), static_cast<Py_ssize_t>(path.size()), "replace"));
  if (!name) throw PyErrOccurred();
  if (method_names.size() < kMaxMethodNames) method_names.emplace(path, name);
  return name;
}

bool GreenServer::OnCall(ServerCall* call) noexcept {
  auto* c = static_cast<GreenServerCall*>(call);
  if (!dispatch) return false;  // cleared by the garbage collector
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  bool ok = false;
  try {
    c->method_name = MethodName(c->method());
    auto* obj = PyObject_New(PyServerCallObject, &PyServerCall_Type);
    if (!obj) throw PyErrOccurred();
    obj->call = c;
    c->Retain();
    Construct(&obj->server, OwnedObject::owning(py_));
    OwnedObject pycall = OwnedObject::consuming(reinterpret_cast<PyObject*>(obj));
    OwnedObject args = NewRef(PyTuple_Pack(1, pycall.get()));
    ok = hub()->Spawn(dispatch.borrow(), args.borrow());
  } catch (...) {
    SetPythonErrorFromException();
  }
  if (!ok) PyErr_WriteUnraisable(dispatch.get());
  PyErr_Restore(type, value, tb);
  return ok;
}

struct PyServerObject {
  PyObject_HEAD
  std::unique_ptr<GreenServer> impl;
};

// ------------------------------------------------------ ServerCall methods

GreenServerCall* LiveCall(PyServerCallObject* self) {
  GreenServerCall* c = self->call;
  Hub* hub = Hub::Of(c->reactor());
  if (hub->orphaned()) {
    // A call of the parent process seen from a forked child (gevent resumes
    // the parent's greenlets there): it is over here, and every method is
    // inert, so the handler ends quietly without touching the socket.
    c->Forget();
    return c;
  }
  return hub->CheckThread() ? c : nullptr;
}

PyObject* BytesOf(const std::string& m) {
  return PyBytes_FromStringAndSize(m.data(), static_cast<Py_ssize_t>(m.size()));
}

PyObject* ServerCall_read(PyServerCallObject* self, PyObject*) {
  GreenServerCall* c = LiveCall(self);
  if (!c) return nullptr;
  for (;;) {
    if (c->has_message()) {
      if (!Hub::GiveWay()) return nullptr;
      if (c->has_message()) return BytesOf(c->TakeMessage());
    }
    if (c->requests_done()) Py_RETURN_NONE;
    if (c->recv_wait.Wait() == Waiter::kError) return nullptr;
  }
}

// The request of a unary-request method: its one message once the client
// has ended the stream, or None (no message, more than one, or the call
// ended first). One call where read() would take two.
PyObject* ServerCall_read_unary(PyServerCallObject* self, PyObject*) {
  GreenServerCall* c = LiveCall(self);
  if (!c) return nullptr;
  for (;;) {
    size_t n = c->deframer.messages().size();
    bool over = !c->active() || c->deframer.failed();
    if (n > 1 || over) Py_RETURN_NONE;
    if (c->remote_ended) {
      if (n == 0) Py_RETURN_NONE;
      return BytesOf(c->TakeMessage());
    }
    if (c->recv_wait.Wait() == Waiter::kError) return nullptr;
  }
}

PyObject* ServerCall_send_initial_metadata(PyServerCallObject* self, PyObject* md) {
  GreenServerCall* c = LiveCall(self);
  if (!c) return nullptr;
  Headers h;
  if (!AppendMetadata(md, &h)) return nullptr;
  return PyBool_FromLong(c->SendInitialMetadata(h));
}

PyObject* ServerCall_write(PyServerCallObject* self, PyObject* data) {
  GreenServerCall* c = LiveCall(self);
  if (!c) return nullptr;
  char* buf;
  Py_ssize_t len;
  if (PyBytes_AsStringAndSize(data, &buf, &len) < 0) return nullptr;
  if (!c->Write(buf, static_cast<size_t>(len))) Py_RETURN_FALSE;
  // Backpressure: park while the HTTP/2 window keeps our bytes queued.
  while (c->send_blocked()) {
    if (c->send_wait.Wait() == Waiter::kError) return nullptr;
  }
  if (!Hub::GiveWay()) return nullptr;
  return PyBool_FromLong(c->active());
}

// respond(message_or_None, code, details, trailing_metadata)
PyObject* ServerCall_respond(PyServerCallObject* self, PyObject* const* args, Py_ssize_t nargs) {
  GreenServerCall* c = LiveCall(self);
  if (!c) return nullptr;
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "respond(message, code, details, trailing_metadata)");
    return nullptr;
  }
  int code;
  if (!ParseStatusCode(args[1], &code)) return nullptr;
  std::string_view details;
  if (args[2] != Py_None) {
    Py_ssize_t n;
    const char* d = PyUnicode_AsUTF8AndSize(args[2], &n);
    if (!d) return nullptr;
    details = std::string_view(d, static_cast<size_t>(n));
  }
  Headers md;
  if (!AppendMetadata(args[3], &md)) return nullptr;
  if (args[0] != Py_None) {
    char* buf;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(args[0], &buf, &len) < 0) return nullptr;
    // False: the call has ended (or the message was over the send limit,
    // which ended it RESOURCE_EXHAUSTED).
    if (!c->Write(buf, static_cast<size_t>(len))) Py_RETURN_FALSE;
  }
  return PyBool_FromLong(c->Finish(code, details, md));
}

PyObject* ServerCall_is_active(PyServerCallObject* self, PyObject*) {
  GreenServerCall* c = self->call;
  return PyBool_FromLong(!Hub::Of(c->reactor())->orphaned() && c->active());
}

PyObject* ServerCall_cancel(PyServerCallObject* self, PyObject*) {
  GreenServerCall* c = LiveCall(self);
  if (!c) return nullptr;
  c->Cancel();
  Py_RETURN_NONE;
}

PyObject* ServerCall_add_callback(PyServerCallObject* self, PyObject* cb) {
  GreenServerCall* c = self->call;
  if (!c->attached()) Py_RETURN_FALSE;  // the RPC has ended
  if (!c->callbacks) {
    c->callbacks = OwnedObject::consuming(PyList_New(0));
    if (!c->callbacks) return nullptr;
  }
  if (PyList_Append(c->callbacks.get(), cb) < 0) return nullptr;
  Py_RETURN_TRUE;
}

PyObject* ServerCall_invocation_metadata(PyServerCallObject* self, PyObject*) {
  return MetadataToPython(&self->call->headers);
}

PyObject* ServerCall_peer(PyServerCallObject* self, PyObject*) {
  const std::string& peer = self->call->peer();
  return PyUnicode_FromStringAndSize(peer.data(), static_cast<Py_ssize_t>(peer.size()));
}

PyObject* ServerCall_time_remaining(PyServerCallObject* self, PyObject*) {
  GreenServerCall* c = self->call;
  if (c->deadline() < 0) Py_RETURN_NONE;
  double left = c->deadline() - c->reactor()->Now();
  return PyFloat_FromDouble(left > 0 ? left : 0.0);
}

PyObject* ServerCall_get_method(PyServerCallObject* self, void*) {
  return Py_NewRef(self->call->method_name.get());
}

void ServerCall_dealloc(PyServerCallObject* self) {
  self->call->Release();
  Destroy(&self->server);
  PyObject_Free(self);
}

PyMethodDef ServerCall_methods[] = {
    {"read_unary", GG_METHOD(ServerCall_read_unary), METH_NOARGS,
     "The one request message of a unary-request call, or None if it did not bring "
     "exactly one."},
    {"read", GG_METHOD(ServerCall_read), METH_NOARGS,
     "Next request message as bytes, or None at the end of the requests."},
    {"send_initial_metadata", GG_METHOD(ServerCall_send_initial_metadata), METH_O, nullptr},
    {"write", GG_METHOD(ServerCall_write), METH_O, "Queues one response message."},
    {"respond", GG_METHOD(ServerCall_respond), METH_FASTCALL,
     "respond(message_or_None, code, details, trailing_metadata): last message and status."},
    {"is_active", GG_METHOD(ServerCall_is_active), METH_NOARGS, nullptr},
    {"cancel", GG_METHOD(ServerCall_cancel), METH_NOARGS, nullptr},
    {"add_callback", GG_METHOD(ServerCall_add_callback), METH_O, nullptr},
    {"invocation_metadata", GG_METHOD(ServerCall_invocation_metadata), METH_NOARGS, nullptr},
    {"peer", GG_METHOD(ServerCall_peer), METH_NOARGS, nullptr},
    {"time_remaining", GG_METHOD(ServerCall_time_remaining), METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef ServerCall_getset[] = {
    {"method", reinterpret_cast<getter>(GG_ENTRY(ServerCall_get_method)), nullptr,
     "The full method path.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// ---------------------------------------------------------- Server methods

int Server_init(PyServerObject* self, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"dispatch",
                                 "maximum_concurrent_rpcs",
                                 "max_receive_message_length",
                                 "max_send_message_length",
                                 "max_concurrent_streams",
                                 "initial_window_size",
                                 "so_reuseport",
                                 "handshake_timeout_ms",
                                 nullptr};
  PyObject* dispatch;
  long max_concurrent = -1;
  long long max_recv = 4 * 1024 * 1024, max_send = -1;
  long long max_streams = 0, window = 0;
  int reuseport = 1;
  long long handshake_ms = 120000;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|lLLLLpL", const_cast<char**>(kwlist), &dispatch,
                                   &max_concurrent, &max_recv, &max_send, &max_streams, &window,
                                   &reuseport, &handshake_ms))
    return -1;
  if (self->impl) {
    // Calls in flight point into the server it would replace.
    PyErr_SetString(PyExc_RuntimeError, "_core.Server is already initialised");
    return -1;
  }
  if (max_streams < 0 || max_streams > 0xffffffffLL || window < 0 || window > 0x7fffffff) {
    PyErr_SetString(PyExc_ValueError,
                    "max_concurrent_streams and initial_window_size must be 0 to 2**31-1");
    return -1;
  }
  if (handshake_ms < 0) {
    PyErr_SetString(PyExc_ValueError, "handshake_timeout_ms must be >= 0");
    return -1;
  }
  Hub* hub = Hub::Get();
  if (!hub) return -1;
  ServerOptions opts;
  opts.max_concurrent_rpcs = max_concurrent;
  opts.max_recv = max_recv < 0 ? static_cast<size_t>(-1) >> 1 : static_cast<size_t>(max_recv);
  opts.max_send = max_send;
  if (max_streams > 0) opts.h2.max_concurrent_streams = static_cast<uint32_t>(max_streams);
  if (window > 0) opts.h2.initial_window_size = static_cast<uint32_t>(window);
  opts.reuseport = reuseport;
  opts.handshake_timeout = static_cast<double>(handshake_ms) / 1000;
  self->impl = std::make_unique<GreenServer>(reinterpret_cast<PyObject*>(self), hub,
                                             OwnedObject::owning(dispatch), std::move(opts));
  return self->impl->termination ? 0 : -1;
}

PyObject* Server_new(PyTypeObject* type, PyObject*, PyObject*) {
  auto* self = reinterpret_cast<PyServerObject*>(type->tp_alloc(type, 0));
  if (self) Construct(&self->impl);
  return reinterpret_cast<PyObject*>(self);
}

// The cycle _Server -> _core.Server -> dispatch (the bound _Server._dispatch)
// is the collector's to break.
int Server_traverse(PyServerObject* self, visitproc visit, void* arg) {
  if (self->impl) {
    Py_VISIT(self->impl->dispatch.get());
    Py_VISIT(self->impl->termination.get());
  }
  return 0;
}

int Server_clear(PyServerObject* self) {
  if (self->impl) self->impl->dispatch.reset();
  return 0;
}

void Server_dealloc(PyServerObject* self) {
  PyObject_GC_UnTrack(self);
  // Its listening sockets and connections close; calls in flight end.
  Destroy(&self->impl);
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

GreenServer* CheckedServer(PyServerObject* self) {
  if (!self->impl) {
    PyErr_SetString(PyExc_ValueError, "server not initialised");
    return nullptr;
  }
  return self->impl->hub()->CheckThread() ? self->impl.get() : nullptr;
}

PyObject* Server_add_insecure_port(PyServerObject* self, PyObject* address) {
  GreenServer* s = CheckedServer(self);
  if (!s) return nullptr;
  const char* a = PyUnicode_AsUTF8(address);
  if (!a) return nullptr;
  std::string err;
  int port = s->server->AddPort(a, &err);
  if (port < 0)
    return PyErr_Format(PyExc_RuntimeError, "Failed to bind to address %s: %s", a, err.c_str());
  return PyLong_FromLong(port);
}

PyObject* Server_start(PyServerObject* self, PyObject*) {
  GreenServer* s = CheckedServer(self);
  if (!s) return nullptr;
  if (!s->server->Start()) {
    PyErr_SetString(PyExc_RuntimeError, "grpc_green: the event loop refused a listening socket");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* Server_stop(PyServerObject* self, PyObject* grace) {
  GreenServer* s = CheckedServer(self);
  if (!s) return nullptr;
  double g;
  if (!ParseTimeout(grace, &g)) return nullptr;
  s->server->Stop(g < 0 ? 0 : g);
  return Py_NewRef(s->termination.get());
}

PyObject* Server_termination(PyServerObject* self, PyObject*) {
  GreenServer* s = CheckedServer(self);
  if (!s) return nullptr;
  return Py_NewRef(s->termination.get());
}

PyMethodDef Server_methods[] = {
    {"add_insecure_port", GG_METHOD(Server_add_insecure_port), METH_O,
     "Binds 'host:port' (port 0 picks one) and returns the port."},
    {"start", GG_METHOD(Server_start), METH_NOARGS, nullptr},
    {"stop", GG_METHOD(Server_stop), METH_O,
     "stop(grace) -> Event set when every call and connection has ended."},
    {"termination", GG_METHOD(Server_termination), METH_NOARGS,
     "The Event set when the server has stopped."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

PyTypeObject PyServerCall_Type = [] {
  PyTypeObject t = EmptyTypeObject();
  t.tp_name = "grpc_green._core.ServerCall";
  t.tp_basicsize = sizeof(PyServerCallObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT;
  t.tp_doc = "One RPC on the server side.";
  t.tp_dealloc = reinterpret_cast<destructor>(ServerCall_dealloc);
  t.tp_methods = ServerCall_methods;
  t.tp_getset = ServerCall_getset;
  return t;
}();

PyTypeObject PyServer_Type = [] {
  PyTypeObject t = EmptyTypeObject();
  t.tp_name = "grpc_green._core.Server";
  t.tp_basicsize = sizeof(PyServerObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
  t.tp_doc = "Listening sockets and the connections they accept.";
  t.tp_new = GG_ENTRY(Server_new);
  t.tp_init = reinterpret_cast<initproc>(GG_ENTRY(Server_init));
  t.tp_dealloc = reinterpret_cast<destructor>(Server_dealloc);
  t.tp_traverse = reinterpret_cast<traverseproc>(Server_traverse);
  t.tp_clear = reinterpret_cast<inquiry>(Server_clear);
  t.tp_methods = Server_methods;
  return t;
}();

}  // namespace grpc_green
