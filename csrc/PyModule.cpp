// grpc_green._core: module init, the Event and Hub types and the hub
// functions (spawn, sleep) the Python layer builds on.
#include <Python.h>
#include <limits.h>

#include <algorithm>
#include <memory>

#include <nghttp2/nghttp2ver.h>

#include "PyMetadata.hpp"
#include "PyTypes.hpp"
#include "gg_refs.hpp"

namespace grpc_green {

bool ParseTimeout(PyObject* arg, double* out, bool clamp) {
  if (!arg || arg == Py_None) {
    *out = -1;
    return true;
  }
  double t = PyFloat_AsDouble(arg);
  if (t == -1.0 && PyErr_Occurred()) return false;
  *out = (clamp && t < 0) ? 0 : t;
  return true;
}

bool ParseStatusCode(PyObject* arg, int* out) {
  if (!PyLong_Check(arg)) {
    PyErr_Format(PyExc_TypeError, "a status code must be an int, not %.100s",
                 Py_TYPE(arg)->tp_name);
    return false;
  }
  int overflow;
  long long v = PyLong_AsLongLongAndOverflow(arg, &overflow);
  if (v == -1 && PyErr_Occurred()) return false;
  if (overflow || v < 0 || v > INT_MAX) {
    PyErr_Format(PyExc_ValueError, "status code %R is out of range", arg);
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

// ------------------------------------------------------------------ Event

namespace {

PyObject* Event_new(PyTypeObject* type, PyObject*, PyObject*) {
  auto* self = reinterpret_cast<PyEventObject*>(type->tp_alloc(type, 0));
  if (!self) return nullptr;
  self->set = false;
  Construct(&self->waiters);
  return reinterpret_cast<PyObject*>(self);
}

void Event_dealloc(PyEventObject* self) {
  Destroy(&self->waiters);
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

PyObject* Event_set(PyEventObject* self, PyObject*) {
  SetEvent(reinterpret_cast<PyObject*>(self));
  Py_RETURN_NONE;
}

PyObject* Event_clear(PyEventObject* self, PyObject*) {
  self->set = false;
  Py_RETURN_NONE;
}

PyObject* Event_is_set(PyEventObject* self, PyObject*) { return PyBool_FromLong(self->set); }

PyObject* Event_wait(PyEventObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (self->set) Py_RETURN_TRUE;
  double timeout;
  if (!ParseTimeout(nargs > 0 ? args[0] : nullptr, &timeout)) return nullptr;
  Hub* hub = Hub::Get();
  if (!hub) return nullptr;
  Hub::RemoteWait remote(hub);  // set() may come from another thread
  double deadline = timeout < 0 ? -1 : MonotonicNow() + timeout;
  OwnedObject keep =
      OwnedObject::owning(reinterpret_cast<PyObject*>(self));  // the list outlives the wait
  auto w = std::make_unique<Waiter>();
  self->waiters.push_back(w.get());
  Waiter::Result r = Waiter::kWoken;
  while (!self->set) {
    double left = deadline < 0 ? -1 : deadline - MonotonicNow();
    if (deadline >= 0 && left <= 0) break;
    r = w->Wait(left);
    if (r == Waiter::kError) break;
  }
  auto& ws = self->waiters;
  ws.erase(std::remove(ws.begin(), ws.end(), w.get()), ws.end());
  if (r == Waiter::kError) return nullptr;
  return PyBool_FromLong(self->set);
}

PyMethodDef Event_methods[] = {
    {"set", GG_METHOD(Event_set), METH_NOARGS,
     "Sets the flag and wakes every waiter (from any thread: waiters on another thread's hub are "
     "woken through its inbox)."},
    {"clear", GG_METHOD(Event_clear), METH_NOARGS, nullptr},
    {"is_set", GG_METHOD(Event_is_set), METH_NOARGS, nullptr},
    {"wait", GG_METHOD(Event_wait), METH_FASTCALL,
     "wait(timeout=None) -> bool: parks the calling greenlet until set."},
    {nullptr, nullptr, 0, nullptr}};

// -------------------------------------------------------------------- Hub

// A thread's hub as an object other threads can hold: it keeps the hub's
// memory (not its loop) alive.
struct PyHubObject {
  PyObject_HEAD
  ReactorRef hub;
};

Hub* HubOf(PyObject* self) { return Hub::Of(reinterpret_cast<PyHubObject*>(self)->hub.get()); }

void Hub_dealloc(PyObject* self) {
  Destroy(&reinterpret_cast<PyHubObject*>(self)->hub);
  Py_TYPE(self)->tp_free(self);
}

PyObject* Hub_spawn_threadsafe(PyObject* self, PyObject* args) {
  Py_ssize_t n = PyTuple_GET_SIZE(args);
  if (n < 1 || !PyCallable_Check(PyTuple_GET_ITEM(args, 0))) {
    PyErr_SetString(PyExc_TypeError, "spawn_threadsafe(callable, *args)");
    return nullptr;
  }
  OwnedObject rest = OwnedObject::consuming(PyTuple_GetSlice(args, 1, n));
  if (!rest || !HubOf(self)->SpawnThreadsafe(PyTuple_GET_ITEM(args, 0), rest.borrow()))
    return nullptr;
  Py_RETURN_NONE;
}

PyObject* Hub_kind(PyObject* self, void*) {
  return PyUnicode_FromString(HubOf(self)->kind() == Hub::kGevent ? "gevent" : "native");
}

PyObject* Hub_is_current(PyObject* self, void*) {
  return PyBool_FromLong(HubOf(self)->is_current());
}

PyObject* Hub_ended(PyObject* self, void*) { return PyBool_FromLong(HubOf(self)->ended()); }

PyMethodDef Hub_methods[] = {
    {"spawn_threadsafe", GG_METHOD(Hub_spawn_threadsafe), METH_VARARGS,
     "spawn_threadsafe(callable, *args): from any thread, runs callable(*args) in a greenlet "
     "on this hub, waking it at once. RuntimeError if the hub's thread has ended."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef Hub_getset[] = {
    {"kind", GG_ENTRY(Hub_kind), nullptr, "'native' or 'gevent'.", nullptr},
    {"is_current", GG_ENTRY(Hub_is_current), nullptr, "True in the thread this hub belongs to.",
     nullptr},
    {"ended", GG_ENTRY(Hub_ended), nullptr,
     "True once its thread has ended (or in a forked child): it never runs again.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// --------------------------------------------------------- hub functions

}  // namespace

PyObject* NewHubHandle(Hub* hub) {
  auto* self = PyObject_New(PyHubObject, &PyHub_Type);
  if (!self) return nullptr;
  Construct(&self->hub, hub);
  return reinterpret_cast<PyObject*>(self);
}

namespace {

PyObject* mod_get_hub(PyObject*, PyObject*) {
  Hub* hub = Hub::Get();
  return hub ? NewHubHandle(hub) : nullptr;
}

PyObject* mod_spawn(PyObject*, PyObject* args) {
  Py_ssize_t n = PyTuple_GET_SIZE(args);
  if (n < 1) {
    PyErr_SetString(PyExc_TypeError, "spawn(callable, *args)");
    return nullptr;
  }
  Hub* hub = Hub::Get();
  if (!hub) return nullptr;
  OwnedObject rest = OwnedObject::consuming(PyTuple_GetSlice(args, 1, n));
  if (!rest || !hub->Spawn(PyTuple_GET_ITEM(args, 0), rest.borrow())) return nullptr;
  Py_RETURN_NONE;
}

PyObject* mod_spawn_greenlet(PyObject*, PyObject* args) {
  Py_ssize_t n = PyTuple_GET_SIZE(args);
  if (n < 1) {
    PyErr_SetString(PyExc_TypeError, "spawn_greenlet(callable, *args)");
    return nullptr;
  }
  Hub* hub = Hub::Get();
  if (!hub) return nullptr;
  OwnedObject rest = OwnedObject::consuming(PyTuple_GetSlice(args, 1, n));
  if (!rest) return nullptr;
  return hub->SpawnGreenlet(PyTuple_GET_ITEM(args, 0), rest.borrow());
}

PyObject* mod_kill(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "kill(greenlet, exception)");
    return nullptr;
  }
  Hub* hub = Hub::Get();
  if (!hub || !hub->Kill(args[0], args[1])) return nullptr;
  Py_RETURN_NONE;
}

PyObject* mod_monotonic(PyObject*, PyObject*) { return PyFloat_FromDouble(MonotonicNow()); }

PyObject* mod_sleep(PyObject*, PyObject* arg) {
  double t;
  if (!ParseTimeout(arg, &t)) return nullptr;
  if (t < 0) t = 0;
  if (!Hub::Get()) return nullptr;
  auto w = std::make_unique<Waiter>();
  double deadline = MonotonicNow() + t;
  for (;;) {
    if (w->Wait(t) == Waiter::kError) return nullptr;
    t = deadline - MonotonicNow();
    if (t <= 0) break;
  }
  Py_RETURN_NONE;
}

PyObject* mod_set_hub_selector(PyObject*, PyObject* selector) {
  if (selector != Py_None && !PyCallable_Check(selector)) {
    PyErr_SetString(PyExc_TypeError, "the hub selector must be callable or None");
    return nullptr;
  }
  Hub::SetSelector(selector == Py_None ? nullptr : selector);
  Py_RETURN_NONE;
}

PyObject* mod_hub_kind(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  int create = nargs > 0 ? PyObject_IsTrue(args[0]) : 0;
  if (create < 0) return nullptr;
  Hub* hub = create ? Hub::Get() : Hub::Current();
  if (!hub) return create ? nullptr : Py_NewRef(Py_None);
  return PyUnicode_FromString(hub->kind() == Hub::kGevent ? "gevent" : "native");
}

PyObject* mod_set_monitored(PyObject*, PyObject* on) {
  int flag = PyObject_IsTrue(on);
  if (flag < 0) return nullptr;
  Hub::SetMonitored(flag);
  Py_RETURN_NONE;
}

PyObject* mod_hub_states(PyObject*, PyObject*) { return Hub::States(); }

PyObject* mod_after_fork_in_child(PyObject*, PyObject*) {
  Hub::AfterForkInChild();
  Py_RETURN_NONE;
}

PyMethodDef module_methods[] = {
    {"_set_hub_selector", GG_METHOD(mod_set_hub_selector), METH_O,
     "_set_hub_selector(fn): fn() -> None (native hub) or the gevent hub, asked once per thread."},
    {"hub_kind", GG_METHOD(mod_hub_kind), METH_FASTCALL,
     "hub_kind(create=False) -> 'native', 'gevent' or None (this thread has no hub yet)."},
    {"_set_monitored", GG_METHOD(mod_set_monitored), METH_O,
     "_set_monitored(on): while on, hubs keep the greenlet they last switched to."},
    {"_hub_states", GG_METHOD(mod_hub_states), METH_NOARGS,
     "_hub_states() -> [(thread id, steps, polling, greenlet or None)] of the live native hubs."},
    {"_after_fork_in_child", GG_METHOD(mod_after_fork_in_child), METH_NOARGS,
     "Orphans the parent's hubs in a forked child (registered with os.register_at_fork)."},
    {"spawn", GG_METHOD(mod_spawn), METH_VARARGS,
     "spawn(callable, *args): runs callable(*args) in a pooled greenlet on this thread's hub."},
    {"spawn_greenlet", GG_METHOD(mod_spawn_greenlet), METH_VARARGS,
     "spawn_greenlet(callable, *args) -> greenlet started on the hub's next pass."},
    {"kill", GG_METHOD(mod_kill), METH_FASTCALL,
     "kill(greenlet, exception): the hub throws exception into greenlet on its next pass."},
    {"get_hub", GG_METHOD(mod_get_hub), METH_NOARGS,
     "get_hub() -> this thread's Hub (made now if needed), for other threads to wake."},
    {"monotonic", GG_METHOD(mod_monotonic), METH_NOARGS, "The clock deadlines are measured on."},
    {"sleep", GG_METHOD(mod_sleep), METH_O,
     "sleep(seconds): parks the calling greenlet; 0 yields."},
    {nullptr, nullptr, 0, nullptr}};

int module_exec(PyObject* m) {
  if (!ImportGreenletApi()) return -1;
  struct {
    const char* name;
    PyTypeObject* type;
  } types[] = {{"Channel", &PyChannel_Type},
               {"Call", &PyCall_Type},
               {"UnaryUnary", &PyUnaryUnary_Type},
               {"Server", &PyServer_Type},
               {"ServerCall", &PyServerCall_Type},
               {"Event", &PyEvent_Type},
               {"Hub", &PyHub_Type}};
  for (auto& t : types) {
    if (PyType_Ready(t.type) < 0) return -1;
    if (PyModule_AddObjectRef(m, t.name, reinterpret_cast<PyObject*>(t.type)) < 0) return -1;
  }
  if (PyModule_AddStringConstant(m, "NGHTTP2_VERSION", NGHTTP2_VERSION) < 0) return -1;
  if (!ForeignThreadError) {
    ForeignThreadError = PyErr_NewExceptionWithDoc(
        "grpc_green._core.ForeignThreadError",
        "An object was used from another thread than the one whose hub it belongs to.",
        PyExc_RuntimeError, nullptr);
    if (!ForeignThreadError) return -1;
  }
  if (PyModule_AddObjectRef(m, "ForeignThreadError", ForeignThreadError) < 0) return -1;
  if (!AddMetadataTypes(m)) return -1;
  return 0;
}

PyModuleDef_Slot module_slots[] = {{Py_mod_exec, reinterpret_cast<void*>(GG_ENTRY(module_exec))},
                                   {0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                          "grpc_green._core",
                          "grpc_green's engine: hub, HTTP/2 and calls.",
                          0,
                          module_methods,
                          module_slots,
                          nullptr,
                          nullptr,
                          nullptr};

}  // namespace

PyTypeObject PyEvent_Type = [] {
  PyTypeObject t = EmptyTypeObject();
  t.tp_name = "grpc_green._core.Event";
  t.tp_basicsize = sizeof(PyEventObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT;
  t.tp_doc = "A flag that greenlets wait on cooperatively.";
  t.tp_new = GG_ENTRY(Event_new);
  t.tp_dealloc = reinterpret_cast<destructor>(Event_dealloc);
  t.tp_methods = Event_methods;
  return t;
}();

PyTypeObject PyHub_Type = [] {
  PyTypeObject t = EmptyTypeObject();
  t.tp_name = "grpc_green._core.Hub";
  t.tp_basicsize = sizeof(PyHubObject);
  t.tp_flags = Py_TPFLAGS_DEFAULT;
  t.tp_doc = "A thread's hub, for other threads to hand work to (made by get_hub()).";
  t.tp_dealloc = Hub_dealloc;
  t.tp_methods = Hub_methods;
  t.tp_getset = Hub_getset;
  return t;
}();

PyObject* NewEvent() { return Event_new(&PyEvent_Type, nullptr, nullptr); }

void SetEvent(BorrowedObject event) {
  auto* e = reinterpret_cast<PyEventObject*>(event.get());
  e->set = true;
  for (Waiter* w : e->waiters) w->Wake();
}

}  // namespace grpc_green

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&grpc_green::module_def); }
