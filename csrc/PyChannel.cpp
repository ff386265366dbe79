// _core.Channel, _core.Call and _core.UnaryUnary: the bindings of the client
// engine (engine/Channel.hpp). They convert Python arguments, start calls,
// and park the calling greenlet on a Waiter until the engine's hooks wake
// it; the engine itself never blocks and never sees a Python object.
#include <Python.h>
#include <structmember.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "Channel.hpp"
#include "PyMetadata.hpp"
#include "PyTypes.hpp"
#include "gg_refs.hpp"

namespace grpc_green {

namespace {

static_assert(sizeof(OwnedObject) == sizeof(PyObject*), "T_OBJECT members read OwnedObjects");

// A client call and the greenlets waiting on it.
class GreenCall final : public ClientCall {
 public:
  explicit GreenCall(bool unary_response) : ClientCall(unary_response) {}

  WaitList recv_wait;     // readers, and whoever waits for the status
  WaitList send_wait;     // writers waiting for the send window
  WaitList md_wait;       // waiting for the initial metadata
  OwnedObject callbacks;  // list: spawned when the call ends

 protected:
  void OnInitialMetadata() noexcept override { md_wait.WakeAll(); }
  void OnResponse() noexcept override { recv_wait.WakeAll(); }
  void OnSendReady() noexcept override { send_wait.WakeAll(); }
  void OnDone() noexcept override {
    recv_wait.WakeAll();
    send_wait.WakeAll();
    md_wait.WakeAll();
    if (callbacks) Hub::Of(reactor())->SpawnEach(std::move(callbacks));
  }
};

// Frees a call between hub passes (it may be inside one of its hooks, or a
// woken greenlet may still look at it).
struct DeferredDelete {
  void operator()(ClientCall* c) const noexcept {
    if (Reactor* r = c->reactor()) r->DeferDelete(c);
    else delete c;
  }
};
using CallPtr = std::unique_ptr<GreenCall, DeferredDelete>;

// What a channel was made with: another thread's engine is made the same.
struct ChannelSpec {
  std::string target;
  ChannelOptions options;
};

// A channel serves every thread (grpcio's channels are thread-safe). Each
// thread that calls on it gets an engine Channel of its own on its own hub,
// with its own connections: a thread's calls need no other thread's loop to
// run. The thread that made the channel finds its engine with one pointer
// comparison (`fast`); other threads look theirs up. Everything here runs
// with the GIL held; an engine is only ever touched from its hub's thread,
// and what another thread needs done to it (close, free) is posted to that
// hub (Hub::PostThreadsafe).
struct ThreadEngine;
struct PyChannelObject {
  PyObject_HEAD
  std::vector<std::unique_ptr<ThreadEngine>> engines;  // one per thread that used it
  Channel* fast;                                       // the maker's engine, while it lives
  Hub* fast_hub;
  std::unique_ptr<ChannelSpec> spec;  // what makes another thread's engine
  bool closed;
};

// One thread's engine of a channel. It goes when that thread ends (its
// loop will never run again), so a channel that many short-lived threads
// used keeps nothing of theirs.
struct ThreadEngine final : Hub::EndListener {
  ThreadEngine(PyChannelObject* owner, Hub* hub)
      : owner(owner),
        hub(hub),
        engine(std::make_unique<Channel>(ReactorRef(hub), owner->spec->target,
                                         ChannelOptions(owner->spec->options))) {
    hub->Listen(this);
  }
  ~ThreadEngine() {
    if (end_link.linked) hub->Unlisten(this);  // linked: the hub is alive
    if (owner->fast && owner->fast == engine.get()) owner->fast = nullptr;
  }
  void OnHubEnded() noexcept override {
    auto& v = owner->engines;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it->get() == this) {
        std::unique_ptr<ThreadEngine> self = std::move(*it);
        v.erase(it);
        return;  // self goes here, and the engine with it
      }
    }
  }
  PyChannelObject* owner;
  Hub* hub;  // the engine's
  std::unique_ptr<Channel> engine;
};

// Runs on an engine's own hub what another thread asked for: close it, or
// free it (the channel object is gone).
struct EngineTask final : Hub::Task {
  Channel* engine = nullptr;       // to close; the holder keeps it alive
  OwnedObject holder;              // the PyChannelObject
  std::unique_ptr<Channel> owned;  // to free
  void Run() noexcept override {
    if (owned) owned.reset();
    else engine->Close();
  }
};

// Closes an engine on its own thread: here when the caller is on that
// thread or when its hub never runs again; otherwise with a task posted to
// that hub. (A forked parent's engine has no sockets left to close.)
void CloseEngine(PyChannelObject* self, ThreadEngine* e) {
  if (e->hub->OnThread() || e->hub->ended() || e->hub->orphaned()) {
    e->engine->Close();
  } else {
    auto task = std::make_unique<EngineTask>();
    task->engine = e->engine.get();
    task->holder = OwnedObject::owning(reinterpret_cast<PyObject*>(self));
    e->hub->PostThreadsafe(std::move(task));
  }
}

// Frees an engine on its own thread, as CloseEngine closes it.
void FreeEngine(ThreadEngine* e) noexcept {
  if (e->end_link.linked) e->hub->Unlisten(e);
  if (e->hub->OnThread() || e->hub->ended() || e->hub->orphaned()) {
    e->engine.reset();
    return;
  }
  auto task = std::make_unique<EngineTask>();
  task->owned = std::move(e->engine);
  e->hub->PostThreadsafe(std::move(task));
}

// This thread's engine of the channel, made on first use. (Those of
// threads that ended went with their hubs; a forked parent's go here: its
// sockets were closed without a byte written when the child began.)
Channel* EngineOfThisThread(PyChannelObject* self) {
  Hub* hub = Hub::Get();
  if (!hub) return nullptr;
  for (const auto& e : self->engines) {
    if (e->hub == hub) return e->engine.get();
  }
  auto& v = self->engines;
  v.erase(std::remove_if(v.begin(), v.end(),
                         [](const std::unique_ptr<ThreadEngine>& e) { return e->hub->orphaned(); }),
          v.end());
  v.push_back(std::make_unique<ThreadEngine>(self, hub));
  Channel* engine = v.back()->engine.get();
  if (!self->fast) {
    self->fast = engine;
    self->fast_hub = hub;
  }
  return engine;
}

// The calling thread's engine of the channel; ValueError once it is closed.
Channel* UsableChannel(PyChannelObject* self) {
  if (!self->spec) {
    PyErr_SetString(PyExc_ValueError, "channel not initialised");
    return nullptr;
  }
  if (self->closed) {
    PyErr_SetString(PyExc_ValueError, "Cannot invoke RPC on closed channel!");
    return nullptr;
  }
  if (self->fast && self->fast_hub->OnThread()) return self->fast;
  return EngineOfThisThread(self);
}

// Starts a call from Python arguments. Returns the call, done already if
// it could not start; throws PyErrOccurred for bad arguments (nothing sent).
CallPtr StartCall(Channel* channel, BorrowedObject path, BorrowedObject timeout,
                  BorrowedObject metadata, bool wait_for_ready, BorrowedObject request,
                  bool unary_response) {
  CallArgs args;
  Py_ssize_t path_len;
  const char* path_s = PyUnicode_AsUTF8AndSize(path.get(), &path_len);
  if (!path_s) throw PyErrOccurred();
  args.path = std::string_view(path_s, static_cast<size_t>(path_len));
  if (!ParseTimeout(timeout.get(), &args.timeout, false)) throw PyErrOccurred();
  Headers md;
  if (!AppendMetadata(metadata.get(), &md)) throw PyErrOccurred();
  args.metadata = &md;
  args.wait_for_ready = wait_for_ready;
  Py_buffer req;
  if (request) {
    if (PyObject_GetBuffer(request.get(), &req, PyBUF_SIMPLE) < 0) throw PyErrOccurred();
    args.message = static_cast<const char*>(req.buf);
    args.message_len = static_cast<size_t>(req.len);
    args.has_message = true;
  }
  struct Release {
    Py_buffer* b;
    ~Release() {
      if (b) PyBuffer_Release(b);
    }
  } release{request ? &req : nullptr};
  CallPtr call(new GreenCall(unary_response));
  channel->Start(call.get(), args);
  return call;
}

// ------------------------------------------------------------ _core.Channel

int Channel_init(PyChannelObject* self, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"target",
                                 "max_receive_message_length",
                                 "max_send_message_length",
                                 "authority",
                                 "user_agent",
                                 "initial_window_size",
                                 "min_connect_timeout_ms",
                                 "initial_backoff_ms",
                                 "max_backoff_ms",
                                 nullptr};
  const char* target;
  long long max_recv = 4 * 1024 * 1024, max_send = -1, window = 0;
  const char* authority = "";
  const char* user_agent = "grpc_green";
  long long min_connect_ms = 20000, initial_backoff_ms = 1000, max_backoff_ms = 120000;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|LLssLLLL", const_cast<char**>(kwlist), &target,
                                   &max_recv, &max_send, &authority, &user_agent, &window,
                                   &min_connect_ms, &initial_backoff_ms, &max_backoff_ms))
    return -1;
  if (self->spec) {
    // Calls in flight point into the channel it would replace.
    PyErr_SetString(PyExc_RuntimeError, "_core.Channel is already initialised");
    return -1;
  }
  if (window < 0 || window > 0x7fffffff) {
    PyErr_SetString(PyExc_ValueError, "initial_window_size must be 0 to 2**31-1");
    return -1;
  }
  if (min_connect_ms < 0 || initial_backoff_ms < 0 || max_backoff_ms < 0) {
    PyErr_SetString(PyExc_ValueError,
                    "min_connect_timeout_ms, initial_backoff_ms and max_backoff_ms must be >= 0");
    return -1;
  }
  ChannelOptions opts;
  opts.max_recv = max_recv < 0 ? static_cast<size_t>(-1) >> 1 : static_cast<size_t>(max_recv);
  opts.max_send = max_send;
  opts.authority = authority;
  opts.user_agent = user_agent;
  if (window > 0) opts.h2.initial_window_size = static_cast<uint32_t>(window);
  opts.min_connect_timeout = static_cast<double>(min_connect_ms) / 1000;
  opts.initial_backoff = static_cast<double>(initial_backoff_ms) / 1000;
  opts.max_backoff = static_cast<double>(max_backoff_ms) / 1000;
  self->spec = std::make_unique<ChannelSpec>(ChannelSpec{target, std::move(opts)});
  return EngineOfThisThread(self) ? 0 : -1;
}

PyObject* Channel_new(PyTypeObject* type, PyObject*, PyObject*) {
  auto* self = reinterpret_cast<PyChannelObject*>(type->tp_alloc(type, 0));
  if (self) {
    Construct(&self->engines);
    Construct(&self->spec);
    self->fast = nullptr;
    self->fast_hub = nullptr;
    self->closed = false;
  }
  return reinterpret_cast<PyObject*>(self);
}

// Frees the engines, each on its own thread (freeing one closes it: calls in
// flight there end CANCELLED). The last reference may go in any thread.
void Channel_dealloc(PyChannelObject* self) {
  self->fast = nullptr;
  for (auto& e : self->engines) FreeEngine(e.get());
  Destroy(&self->engines);
  Destroy(&self->spec);
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

// ------------------------------------------------------------ _core.Call

struct PyCallObject {
  PyObject_HEAD
  CallPtr call;
  OwnedObject channel;  // the PyChannelObject, so the Channel outlives the call
};

PyObject* NewPyCall(BorrowedObject channel, CallPtr call) {
  auto* self = PyObject_GC_New(PyCallObject, &PyCall_Type);
  if (!self) return nullptr;
  Construct(&self->call, std::move(call));
  Construct(&self->channel, OwnedObject::owning(channel));
  PyObject_GC_Track(self);
  return reinterpret_cast<PyObject*>(self);
}

// The call, when the caller may wait on it or drive it: only its own
// thread can (its hub's loop carries it). Other threads may cancel it and
// read what is known of it.
GreenCall* CallOnThread(PyCallObject* self) {
  GreenCall* c = self->call.get();
  return Hub::Of(c->reactor())->CheckThread() ? c : nullptr;
}

// The caller was killed or interrupted (gevent.Timeout, a signal) while it
// waited: the call is cancelled on the wire, and what interrupted it is
// raised.
PyObject* Interrupted(ClientCall* c) {
  c->Cancel(kCancelled, "Cancelled");  // its done callbacks keep the error aside
  return nullptr;
}

PyObject* Call_write(PyCallObject* self, PyObject* data) {
  GreenCall* c = CallOnThread(self);
  if (!c) return nullptr;
  if (c->done() || c->send_closed) Py_RETURN_FALSE;
  Py_buffer b;
  if (PyObject_GetBuffer(data, &b, PyBUF_SIMPLE) < 0) return nullptr;
  struct Release {
    Py_buffer* b;
    ~Release() { PyBuffer_Release(b); }
  } release{&b};
  if (!c->Write(static_cast<const char*>(b.buf), static_cast<size_t>(b.len))) Py_RETURN_FALSE;
  // Backpressure: park while the HTTP/2 window keeps our bytes queued.
  while (c->send_blocked()) {
    if (c->send_wait.Wait() == Waiter::kError) return Interrupted(c);
  }
  if (!Hub::GiveWay()) return Interrupted(c);
  return PyBool_FromLong(!c->done());
}

PyObject* Call_done_writing(PyCallObject* self, PyObject*) {
  GreenCall* c = CallOnThread(self);
  if (!c) return nullptr;
  c->DoneWriting();
  Py_RETURN_NONE;
}

PyObject* Call_read(PyCallObject* self, PyObject*) {
  GreenCall* c = CallOnThread(self);
  if (!c) return nullptr;
  for (;;) {
    if (c->has_message()) {
      if (!Hub::GiveWay()) return Interrupted(c);
      if (!c->has_message()) continue;  // the call ended meanwhile
      std::string m = c->TakeMessage();
      return PyBytes_FromStringAndSize(m.data(), static_cast<Py_ssize_t>(m.size()));
    }
    if (c->done()) Py_RETURN_NONE;
    if (c->recv_wait.Wait() == Waiter::kError) return Interrupted(c);
  }
}

// wait(timeout=None) -> True once the status is known.
PyObject* Call_wait(PyCallObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (self->call->done()) Py_RETURN_TRUE;  // from any thread
  GreenCall* c = CallOnThread(self);
  if (!c) return nullptr;
  double timeout;
  if (!ParseTimeout(nargs > 0 ? args[0] : nullptr, &timeout)) return nullptr;
  Reactor* r = c->reactor();
  double until = timeout < 0 ? -1 : r->Now() + timeout;
  while (!c->done()) {
    double left = until < 0 ? -1 : until - r->Now();
    if (until >= 0 && left <= 0) break;
    if (c->recv_wait.Wait(left) == Waiter::kError) return nullptr;
  }
  return PyBool_FromLong(c->done());
}

PyObject* Call_initial_metadata(PyCallObject* self, PyObject*) {
  GreenCall* c = self->call.get();
  // Known already: any thread may read it. Waiting for it needs the call's
  // own thread.
  if (!c->headers_received && !c->done() && !CallOnThread(self)) return nullptr;
  while (!c->headers_received && !c->done()) {
    if (c->md_wait.Wait() == Waiter::kError) return nullptr;
  }
  return MetadataToPython(c->initial_headers());
}

// None until the call is done.
PyObject* Call_trailing_metadata(PyCallObject* self, PyObject*) {
  GreenCall* c = self->call.get();
  if (!c->done()) Py_RETURN_NONE;
  return MetadataToPython(c->trailing_headers());
}

// Call work another thread asked for, run on the call's hub: cancel it, or
// free it (the Python object is gone).
struct CallTask final : Hub::Task {
  OwnedObject call;  // cancel: the PyCallObject, alive until then
  int code = 0;
  std::string details;
  CallPtr owned;  // free: the call, and the channel it points into
  OwnedObject channel;
  void Run() noexcept override {
    if (owned) {
      owned->callbacks.reset();
      owned->Cancel(kCancelled, "Cancelled");
      owned.reset();
      channel.reset();
    } else {
      reinterpret_cast<PyCallObject*>(call.get())->call->Cancel(code, details);
    }
  }
};

// cancel(code, details) -> True if this ends the call. From another thread
// the call is cancelled on its own hub at its next pass (True while it is
// still active).
PyObject* Call_cancel(PyCallObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "cancel(code, details)");
    return nullptr;
  }
  int code;
  if (!ParseStatusCode(args[0], &code)) return nullptr;
  Py_ssize_t n;
  const char* d = PyUnicode_AsUTF8AndSize(args[1], &n);
  if (!d) return nullptr;
  std::string_view details(d, static_cast<size_t>(n));
  GreenCall* c = self->call.get();
  Hub* hub = Hub::Of(c->reactor());
  if (hub->OnThread()) return PyBool_FromLong(c->Cancel(code, details));
  if (c->done()) Py_RETURN_FALSE;
  if (hub->ended() || hub->orphaned()) {
    hub->CheckThread();  // says why: RuntimeError
    return nullptr;
  }
  auto task = std::make_unique<CallTask>();
  task->call = OwnedObject::owning(reinterpret_cast<PyObject*>(self));
  task->code = code;
  task->details = std::string(details);
  hub->PostThreadsafe(std::move(task));
  Py_RETURN_TRUE;
}

// hub() -> the _core.Hub the call runs on (another thread hands it work).
PyObject* Call_hub(PyCallObject* self, PyObject*) {
  return NewHubHandle(Hub::Of(self->call->reactor()));
}

PyObject* Call_is_active(PyCallObject* self, PyObject*) {
  return PyBool_FromLong(!self->call->done());
}

PyObject* Call_time_remaining(PyCallObject* self, PyObject*) {
  GreenCall* c = self->call.get();
  if (c->deadline() < 0) Py_RETURN_NONE;
  double left = c->deadline() - c->reactor()->Now();
  return PyFloat_FromDouble(left > 0 ? left : 0.0);
}

// add_done_callback(fn) -> False if the call is already done (fn not kept).
PyObject* Call_add_done_callback(PyCallObject* self, PyObject* fn) {
  GreenCall* c = self->call.get();
  if (c->done()) Py_RETURN_FALSE;
  if (!c->callbacks) {
    c->callbacks = OwnedObject::consuming(PyList_New(0));
    if (!c->callbacks) return nullptr;
  }
  if (PyList_Append(c->callbacks.get(), fn) < 0) return nullptr;
  Py_RETURN_TRUE;
}

PyObject* Call_get_code(PyCallObject* self, void*) {
  if (!self->call->done()) Py_RETURN_NONE;
  return PyLong_FromLong(self->call->code());
}

PyObject* Call_get_details(PyCallObject* self, void*) {
  GreenCall* c = self->call.get();
  if (!c->done()) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(c->details().data(), static_cast<Py_ssize_t>(c->details().size()),
                              "replace");
}

int Call_traverse(PyCallObject* self, visitproc visit, void* arg) {
  Py_VISIT(self->channel.get());
  if (self->call) Py_VISIT(self->call->callbacks.get());
  return 0;
}

int Call_clear(PyCallObject* self) {
  if (self->call) self->call->callbacks.reset();
  return 0;
}

void Call_dealloc(PyCallObject* self) {
  PyObject_GC_UnTrack(self);
  if (GreenCall* c = self->call.get()) {
    Hub* hub = Hub::Of(c->reactor());
    if (!hub->OnThread() && !hub->ended() && !hub->orphaned()) {
      // The last reference went in another thread (or its GC): the call
      // is cancelled and freed on its own hub.
      auto task = std::make_unique<CallTask>();
      task->owned = std::move(self->call);
      task->channel = std::move(self->channel);
      hub->PostThreadsafe(std::move(task));
    }
  }
  if (GreenCall* c = self->call.get()) {
    // An unfinished call is reset on the wire; its done callbacks do not
    // run (they would see an object being freed).
    c->callbacks.reset();
    c->Cancel(kCancelled, "Cancelled");
  }
  Destroy(&self->call);
  Destroy(&self->channel);
  PyObject_GC_Del(self);
}

PyMethodDef Call_methods[] = {
    {"write", GG_METHOD(Call_write), METH_O,
     "Queues one request message; parks while the send window is full. False once the call "
     "has ended."},
    {"done_writing", GG_METHOD(Call_done_writing), METH_NOARGS, "Ends the request stream."},
    {"read", GG_METHOD(Call_read), METH_NOARGS,
     "Next response message as bytes (parks), or None when no more will come."},
    {"wait", GG_METHOD(Call_wait), METH_FASTCALL,
     "wait(timeout=None) -> True once the call has its status."},
    {"initial_metadata", GG_METHOD(Call_initial_metadata), METH_NOARGS, nullptr},
    {"trailing_metadata", GG_METHOD(Call_trailing_metadata), METH_NOARGS, nullptr},
    {"cancel", GG_METHOD(Call_cancel), METH_FASTCALL,
     "cancel(code, details) -> True if this ended the call."},
    {"is_active", GG_METHOD(Call_is_active), METH_NOARGS, nullptr},
    {"hub", GG_METHOD(Call_hub), METH_NOARGS, "The _core.Hub the call runs on."},
    {"time_remaining", GG_METHOD(Call_time_remaining), METH_NOARGS, nullptr},
    {"add_done_callback", GG_METHOD(Call_add_done_callback), METH_O, nullptr},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef Call_getset[] = {{"code", reinterpret_cast<getter>(GG_ENTRY(Call_get_code)), nullptr,
                              "Status code, None while active.", nullptr},
                             {"details", reinterpret_cast<getter>(GG_ENTRY(Call_get_details)),
                              nullptr, "Status details, None while active.", nullptr},
                             {nullptr, nullptr, nullptr, nullptr, nullptr}};

// start(path, timeout, metadata, wait_for_ready, request_or_None, unary_response) -> Call
PyObject* Channel_start(PyChannelObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 6) {
    PyErr_SetString(PyExc_TypeError,
                    "start(path, timeout, metadata, wait_for_ready, request, unary_response)");
    return nullptr;
  }
  Channel* channel = UsableChannel(self);
  if (!channel) return nullptr;
  int wfr = PyObject_IsTrue(args[3]);
  int unary_response = PyObject_IsTrue(args[5]);
  if (wfr < 0 || unary_response < 0) return nullptr;
  CallPtr call = StartCall(channel, args[0], args[1], args[2], wfr == 1,
                           args[4] == Py_None ? nullptr : args[4], unary_response == 1);
  return NewPyCall(reinterpret_cast<PyObject*>(self), std::move(call));
}

// From any thread: every thread's engine closes (another thread's on its
// own hub, at its next pass); calls started after this raise ValueError.
PyObject* Channel_close(PyChannelObject* self, PyObject*) {
  if (self->closed) Py_RETURN_NONE;
  self->closed = true;
  for (const auto& e : self->engines) CloseEngine(self, e.get());
  Py_RETURN_NONE;
}

PyMethodDef Channel_methods[] = {
    {"start", GG_METHOD(Channel_start), METH_FASTCALL,
     "start(path, timeout, metadata, wait_for_ready, request_or_None, unary_response) -> Call"},
    {"close", GG_METHOD(Channel_close), METH_NOARGS,
     "Closes the connections; in-flight calls end CANCELLED."},
    {nullptr, nullptr, 0, nullptr}};

// ------------------------------------------------------------ _core.UnaryUnary

// The unary-unary multicallable's engine half. grpc_green._channel
// subclasses it (adding with_call(), future() and the exception factory
// _fail()), so a stub call goes from the caller straight into C:
// serialize, run the call on the hub, deserialize.
struct PyUnaryObject {
  PyObject_HEAD
  OwnedObject channel;       // grpc_green._channel.Channel
  OwnedObject core;          // its _core.Channel
  OwnedObject method;        // str
  OwnedObject serializer;    // callable or None
  OwnedObject deserializer;  // callable or None
  vectorcallfunc vectorcall;
};

// __call__'s parameters, grpcio's names and order.
enum UnaryArg {
  kRequest,
  kTimeout,
  kMetadata,
  kCredentials,
  kWaitForReady,
  kCompression,
  kNumArgs
};
const char* const kUnaryArgNames[kNumArgs] = {"request",     "timeout",        "metadata",
                                              "credentials", "wait_for_ready", "compression"};
// Interned when the type is first instantiated; kept for the process.
OwnedObject* g_unary_arg_names = nullptr;

bool InternUnaryArgNames() {
  if (g_unary_arg_names) return true;
  auto names = std::make_unique<OwnedObject[]>(kNumArgs);
  for (int i = 0; i < kNumArgs; ++i) {
    names[i] = OwnedObject::consuming(PyUnicode_InternFromString(kUnaryArgNames[i]));
    if (!names[i]) return false;
  }
  g_unary_arg_names = names.release();
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
    while (i < kNumArgs && name != g_unary_arg_names[i].get()) ++i;  // interned: usually identical
    if (i == kNumArgs) {
      for (i = 0; i < kNumArgs; ++i) {
        int eq = PyObject_RichCompareBool(name, g_unary_arg_names[i].get(), Py_EQ);
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

// Raises what self._fail(code, details, initial, trailing) returns (the
// RpcError the application sees). `replace_pending`: the exception being
// handled becomes the new one's __cause__ (as_cause) or __context__.
PyObject* RaiseRpcError(PyUnaryObject* self, int code, const std::string& details,
                        const ClientCall* call, bool replace_pending, bool as_cause = false) {
  OwnedObject pending;
  if (replace_pending) {
    PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    pending = OwnedObject::consuming(value);
  }
  OwnedObject d = OwnedObject::consuming(
      PyUnicode_DecodeUTF8(details.data(), static_cast<Py_ssize_t>(details.size()), "replace"));
  OwnedObject initial =
      OwnedObject::consuming(MetadataToPython(call ? call->initial_headers() : nullptr));
  OwnedObject trailing =
      OwnedObject::consuming(MetadataToPython(call ? call->trailing_headers() : nullptr));
  if (!d || !initial || !trailing) return nullptr;
  OwnedObject exc =
      OwnedObject::consuming(PyObject_CallMethod(reinterpret_cast<PyObject*>(self), "_fail", "iOOO",
                                                 code, d.get(), initial.get(), trailing.get()));
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
PyObject* UnaryInvoke(PyUnaryObject* self, PyObject* request, PyObject* timeout, PyObject* metadata,
                      PyObject* wait_for_ready, bool with_metadata) {
  if (!self->core) return PyErr_Format(PyExc_ValueError, "channel not initialised");
  Channel* channel = UsableChannel(reinterpret_cast<PyChannelObject*>(self->core.get()));
  if (!channel) return nullptr;
  int wfr = wait_for_ready ? PyObject_IsTrue(wait_for_ready) : 0;
  if (wfr < 0) return nullptr;
  OwnedObject payload;
  if (self->serializer.get() == Py_None) {
    payload = OwnedObject::owning(request);
  } else {
    payload = OwnedObject::consuming(PyObject_CallOneArg(self->serializer.get(), request));
    if (!payload) {
      if (!PyErr_ExceptionMatches(PyExc_Exception)) return nullptr;
      return RaiseRpcError(self, kInternal, "Exception serializing request!", nullptr, true);
    }
  }
  CallPtr call;
  try {
    call = StartCall(channel, self->method.borrow(), timeout, metadata, wfr == 1, payload.borrow(),
                     true);
  } catch (const PyErrOccurred&) {
    if (!PyErr_ExceptionMatches(InvalidMetadataError)) return nullptr;
    // grpcio fails the call locally; the cause says what was wrong.
    return RaiseRpcError(self, kInternal, "Invalid metadata", nullptr, true, true);
  }
  while (!call->done()) {
    if (call->recv_wait.Wait() == Waiter::kError) return Interrupted(call.get());
  }
  // The finished call is freed by the hub between passes (CallPtr), after
  // the caller's next request has gone out rather than before.
  if (call->code() != kOk)
    return RaiseRpcError(self, call->code(), call->details(), call.get(), false);
  std::string msg = call->TakeMessage();
  OwnedObject response = OwnedObject::consuming(
      PyBytes_FromStringAndSize(msg.data(), static_cast<Py_ssize_t>(msg.size())));
  if (!response) return nullptr;
  if (self->deserializer.get() != Py_None) {
    response =
        OwnedObject::consuming(PyObject_CallOneArg(self->deserializer.get(), response.get()));
    if (!response) {
      if (!PyErr_ExceptionMatches(PyExc_Exception)) return nullptr;
      return RaiseRpcError(self, kInternal, "Exception deserializing response!", call.get(), true);
    }
    if (response.get() == Py_None)  // grpcio reads None as the deserializer's failure
      return RaiseRpcError(self, kInternal, "Exception deserializing response!", call.get(), false);
  }
  if (!with_metadata) return response.relinquish();
  OwnedObject initial = OwnedObject::consuming(MetadataToPython(call->initial_headers()));
  OwnedObject trailing = OwnedObject::consuming(MetadataToPython(call->trailing_headers()));
  if (!initial || !trailing) return nullptr;
  return PyTuple_Pack(3, response.get(), initial.get(), trailing.get());
}

// __call__(request, timeout=None, metadata=None, credentials=None,
//          wait_for_ready=None, compression=None) -> response
PyObject* Unary_vectorcall(PyObject* self, PyObject* const* args, size_t nargsf,
                           PyObject* kwnames) {
  PyObject* a[kNumArgs];
  if (!ParseUnaryArgs(args, nargsf, kwnames, a)) return nullptr;
  return UnaryInvoke(reinterpret_cast<PyUnaryObject*>(self), a[kRequest], a[kTimeout], a[kMetadata],
                     a[kWaitForReady], false);
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
  if (self->core) {
    PyErr_SetString(PyExc_RuntimeError, "_core.UnaryUnary is already initialised");
    return -1;
  }
  OwnedObject core = OwnedObject::consuming(PyObject_GetAttrString(channel, "_core"));
  if (!core) return -1;
  if (!PyObject_TypeCheck(core.get(), &PyChannel_Type)) {
    PyErr_SetString(PyExc_TypeError, "channel._core must be a grpc_green._core.Channel");
    return -1;
  }
  self->channel = OwnedObject::owning(channel);
  self->core = std::move(core);
  self->method = OwnedObject::owning(method);
  self->serializer = OwnedObject::owning(serializer);
  self->deserializer = OwnedObject::owning(deserializer);
  return 0;
}

PyObject* Unary_new(PyTypeObject* type, PyObject*, PyObject*) {
  if (!InternUnaryArgNames()) return nullptr;
  auto* self = reinterpret_cast<PyUnaryObject*>(type->tp_alloc(type, 0));
  if (!self) return nullptr;
  for (OwnedObject* m :
       {&self->channel, &self->core, &self->method, &self->serializer, &self->deserializer})
    Construct(m);
  self->vectorcall = GG_ENTRY(Unary_vectorcall);
  return reinterpret_cast<PyObject*>(self);
}

int Unary_traverse(PyUnaryObject* self, visitproc visit, void* arg) {
  Py_VISIT(self->channel.get());
  Py_VISIT(self->serializer.get());
  Py_VISIT(self->deserializer.get());
  return 0;
}

int Unary_clear(PyUnaryObject* self) {
  self->channel.reset();
  self->serializer.reset();
  self->deserializer.reset();
  return 0;
}

// A Python subclass's instances come here through subtype_dealloc, which
// also releases their class.
void Unary_dealloc(PyUnaryObject* self) {
  PyObject_GC_UnTrack(self);
  for (OwnedObject* m :
       {&self->channel, &self->core, &self->method, &self->serializer, &self->deserializer})
    Destroy(m);
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
#else
  (void)cls;
#endif
  Py_RETURN_NONE;
}

PyMethodDef Unary_methods[] = {
    {"__init_subclass__", GG_METHOD(Unary_init_subclass), METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     nullptr},
    {"_invoke", GG_METHOD(Unary_invoke), METH_FASTCALL,
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
  PyTypeObject t = EmptyTypeObject();
  t.tp_name = "grpc_green._core.Call";
  t.tp_basicsize = sizeof(PyCallObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
  t.tp_doc = "A client call whose messages are read and written one at a time.";
  t.tp_dealloc = reinterpret_cast<destructor>(Call_dealloc);
  t.tp_traverse = reinterpret_cast<traverseproc>(Call_traverse);
  t.tp_clear = reinterpret_cast<inquiry>(Call_clear);
  t.tp_methods = Call_methods;
  t.tp_getset = Call_getset;
  return t;
}();

PyTypeObject PyUnaryUnary_Type = [] {
  PyTypeObject t = EmptyTypeObject();
  t.tp_name = "grpc_green._core.UnaryUnary";
  t.tp_basicsize = sizeof(PyUnaryObject);
  t.tp_flags =
      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL;
  t.tp_doc =
      "UnaryUnary(channel, method, serializer=None, deserializer=None): calling it "
      "runs one unary call.";
  t.tp_vectorcall_offset = offsetof(PyUnaryObject, vectorcall);
  t.tp_call = PyVectorcall_Call;  // subclasses, which do not inherit vectorcall
  t.tp_new = GG_ENTRY(Unary_new);
  t.tp_init = reinterpret_cast<initproc>(GG_ENTRY(Unary_init));
  t.tp_dealloc = reinterpret_cast<destructor>(Unary_dealloc);
  t.tp_traverse = reinterpret_cast<traverseproc>(Unary_traverse);
  t.tp_clear = reinterpret_cast<inquiry>(Unary_clear);
  t.tp_methods = Unary_methods;
  t.tp_members = Unary_members;
  return t;
}();

PyTypeObject PyChannel_Type = [] {
  PyTypeObject t = EmptyTypeObject();
  t.tp_name = "grpc_green._core.Channel";
  t.tp_basicsize = sizeof(PyChannelObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT;
  t.tp_doc = "A connection manager for one target; calls run on the hub.";
  t.tp_new = GG_ENTRY(Channel_new);
  t.tp_init = reinterpret_cast<initproc>(GG_ENTRY(Channel_init));
  t.tp_dealloc = reinterpret_cast<destructor>(Channel_dealloc);
  t.tp_methods = Channel_methods;
  return t;
}();

}  // namespace grpc_green
