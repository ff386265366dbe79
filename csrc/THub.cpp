#include "THub.hpp"

#include <greenlet.h>
#include <pythread.h>

#include <algorithm>

namespace grpc_green {

namespace {

thread_local Hub* t_hub = nullptr;
constexpr size_t kMaxIdleWorkers = 4096;
PyObject* g_selector = nullptr;    // owned
std::vector<Hub*>* g_hubs = nullptr;  // every live hub of this process

PyObject* CurrentGreenlet() { return reinterpret_cast<PyObject*>(PyGreenlet_GetCurrent()); }

PyObject* MainGreenletOf(PyObject* g) {
  // Walks up the parents: the root is the thread's main greenlet.
  Py_INCREF(g);
  for (;;) {
    PyGreenlet* parent = PyGreenlet_GetParent(reinterpret_cast<PyGreenlet*>(g));
    if (!parent) {
      PyErr_Clear();
      return g;
    }
    Py_DECREF(g);
    g = reinterpret_cast<PyObject*>(parent);
  }
}

}  // namespace

bool ImportGreenletApi() {
  PyGreenlet_Import();
  return _PyGreenlet_API != nullptr;
}

// ---------------------------------------------------------------- Waiter

// The hub is the waiting thread's, looked up by the first Wait(): a call
// object makes three waiters whether or not anyone waits.
Waiter::Waiter() = default;

Waiter::~Waiter() {
  if (scheduled_ && hub_) hub_->Unschedule(this);
  Py_CLEAR(greenlet_);
}

Waiter::Result Waiter::Wait(double timeout) {
  if (!hub_ && !(hub_ = Hub::Get())) return kError;
  if (!hub_->CheckThread()) return kError;
  if (greenlet_) {
    PyErr_SetString(PyExc_RuntimeError, "grpc_green: this waiter already has a greenlet waiting");
    return kError;
  }
  PyObject* current = CurrentGreenlet();
  if (current == hub_->hub_greenlet_.get() || hub_->polling_inline_) {
    Py_DECREF(current);
    PyErr_SetString(PyExc_RuntimeError,
                    "grpc_green: a blocking call cannot run on the hub greenlet");
    return kError;
  }
  greenlet_ = current;
  woken_ = false;
  if (timeout >= 0) {
    if (!timer_) timer_ = hub_->io().NewTimer(this);
    timer_->Start(timeout);
  }
  // When no other greenlet is queued to run before the hub polls, the hub's
  // next step would be to flush: do it before switching, so what this
  // greenlet submitted goes out without waiting for the switch.
  if (hub_->ready_.empty()) hub_->FlushDirty();
  PyObject* r = hub_->CanPollInline(current) ? hub_->PollInline(this) : hub_->SwitchToHub();
  if (timer_) timer_->Stop();
  Py_CLEAR(greenlet_);
  if (scheduled_) hub_->Unschedule(this);
  if (!r) return kError;
  bool token = r == hub_->wake_token_.get();
  Py_DECREF(r);
  if (!token) {
    PyErr_SetString(PyExc_RuntimeError,
                    "grpc_green: unexpected switch into a greenlet waiting on grpc_green");
    return kError;
  }
  return woken_ ? kWoken : kTimedOut;
}

void Waiter::Wake() {
  if (!greenlet_) return;
  woken_ = true;
  if (!scheduled_) hub_->Schedule(this);
}

void Waiter::OnTimer() {
  if (greenlet_ && !scheduled_) hub_->Schedule(this);
}

Waiter::Result WaitList::Wait(double timeout) {
  if (!first_.waiting()) return first_.Wait(timeout);
  auto w = std::make_unique<Waiter>();
  others_.push_back(w.get());
  Waiter::Result r = w->Wait(timeout);
  others_.erase(std::find(others_.begin(), others_.end(), w.get()));
  return r;
}

// ------------------------------------------------------------------- Hub

Hub::Hub() : thread_id_(PyThread_get_thread_ident()) {}

Hub* Hub::Current() { return t_hub; }

Hub* Hub::Get() {
  if (t_hub) return t_hub;
  if (!_PyGreenlet_API) {
    PyErr_SetString(PyExc_RuntimeError, "grpc_green: greenlet's C API is not available");
    return nullptr;
  }
  OwnedObject gevent_hub;
  if (g_selector) {
    gevent_hub = OwnedObject::consuming(PyObject_CallNoArgs(g_selector));
    if (!gevent_hub) return nullptr;
    if (gevent_hub.get() == Py_None) gevent_hub.reset();
  }
  auto* hub = new Hub();
  if (!hub->Init(gevent_hub.get())) {
    delete hub;
    return nullptr;
  }
  if (!g_hubs) g_hubs = new std::vector<Hub*>();
  g_hubs->push_back(hub);
  t_hub = hub;
  return hub;
}

void Hub::SetSelector(PyObject* selector) {
  Py_XINCREF(selector);
  Py_XSETREF(g_selector, selector);
}

bool Hub::Init(PyObject* gevent_hub) {
  static PyMethodDef run_hub_def = {"grpc_green_hub", (PyCFunction)RunHub, METH_VARARGS, nullptr};
  static PyMethodDef run_worker_def = {"grpc_green_worker", (PyCFunction)RunWorker, METH_VARARGS,
                                       nullptr};
  static PyMethodDef drain_def = {"grpc_green_drain", (PyCFunction)RunDrain, METH_NOARGS, nullptr};
  capsule_ = OwnedObject::consuming(PyCapsule_New(this, "grpc_green.hub", nullptr));
  if (!capsule_) return false;
  run_hub_fn_ = OwnedObject::consuming(PyCFunction_New(&run_hub_def, capsule_.get()));
  run_worker_fn_ = OwnedObject::consuming(PyCFunction_New(&run_worker_def, capsule_.get()));
  wake_token_ = OwnedObject::consuming(PyObject_CallNoArgs((PyObject*)&PyBaseObject_Type));
  if (!run_hub_fn_ || !run_worker_fn_ || !wake_token_) return false;
  wake_args_ = OwnedObject::consuming(PyTuple_Pack(1, wake_token_.get()));
  if (!wake_args_) return false;
  if (gevent_hub) {
    // gevent's hub greenlet is ours too: waiters switch to it through its
    // switch() (which starts it on first use), pool greenlets are its
    // children, and the ready queue drains from a callback on its loop.
    if (!PyGreenlet_Check(gevent_hub)) {
      PyErr_SetString(PyExc_TypeError, "grpc_green: the hub selector returned a non-greenlet");
      return false;
    }
    kind_ = kGevent;
    hub_greenlet_ = OwnedObject::owning(gevent_hub);
    gevent_switch_ = OwnedObject::consuming(PyObject_GetAttrString(gevent_hub, "switch"));
    OwnedObject loop = OwnedObject::consuming(PyObject_GetAttrString(gevent_hub, "loop"));
    if (!gevent_switch_ || !loop) return false;
    gevent_run_callback_ = OwnedObject::consuming(PyObject_GetAttrString(loop.get(), "run_callback"));
    drain_fn_ = OwnedObject::consuming(PyCFunction_New(&drain_def, capsule_.get()));
    if (!gevent_run_callback_ || !drain_fn_) return false;
    io_ = NewGeventIoManager(loop.get());
    return bool(io_);
  }
  io_ = NewNativeIoManager();
  if (!io_) {
    PyErr_SetString(PyExc_OSError, "grpc_green: cannot create the event loop");
    return false;
  }
  OwnedObject current = OwnedObject::consuming(CurrentGreenlet());
  if (!current) return false;
  main_greenlet_ = OwnedObject::consuming(MainGreenletOf(current.get()));
  return EnsureHubGreenlet();
}

void Hub::AfterForkInChild() {
  t_hub = nullptr;
  if (!g_hubs) return;
  for (Hub* hub : *g_hubs) hub->Orphan();
  g_hubs->clear();
}

void Hub::Orphan() {
  // The hub object and its loop are left allocated: objects of the parent
  // still point at them, and freeing the native loop would close (and
  // unregister from) an epoll instance the parent shares.
  orphaned_ = true;
  std::unordered_set<ForkDroppable*> drop;
  drop.swap(fork_droppable_);
  for (ForkDroppable* d : drop) d->DropAfterFork();
  io_->Abandon();
}

void Hub::RequestDrain() {
  if (orphaned_) return;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyObject* r = PyObject_CallOneArg(gevent_run_callback_.get(), drain_fn_.get());
  if (r) {
    drain_pending_ = true;
    Py_DECREF(r);
  } else {
    PyErr_WriteUnraisable(gevent_run_callback_.get());
  }
  PyErr_Restore(type, value, tb);
}

PyObject* Hub::RunDrain(PyObject* capsule, PyObject*) {
  auto* hub = static_cast<Hub*>(PyCapsule_GetPointer(capsule, "grpc_green.hub"));
  if (!hub) return nullptr;
  if (!hub->orphaned_) {
    hub->RunReady();
    hub->FlushDirty();
    hub->ReapGraveyard();
  }
  hub->drain_pending_ = false;
  // What was queued while this pass ran goes to the next one, after gevent
  // has polled for IO.
  if (!hub->ready_.empty() || !hub->graveyard_.empty() || !hub->graveyard_older_.empty())
    hub->Poke();
  Py_RETURN_NONE;
}

bool Hub::EnsureHubGreenlet() {
  if (kind_ == kGevent) {
    auto* g = reinterpret_cast<PyGreenlet*>(hub_greenlet_.get());
    if (!PyGreenlet_STARTED(g) || PyGreenlet_ACTIVE(g)) return true;
    PyErr_SetString(PyExc_RuntimeError,
                    "grpc_green: gevent's hub for this thread has ended; grpc_green objects "
                    "made on it cannot be used any more");
    return false;
  }
  if (hub_greenlet_ && !PyGreenlet_STARTED((PyGreenlet*)hub_greenlet_.get())) return true;
  if (hub_greenlet_ && PyGreenlet_ACTIVE((PyGreenlet*)hub_greenlet_.get())) return true;
  // Not created yet, or ended (it ends only when the loop found nothing to
  // wait for): make a new one over the same loop.
  hub_greenlet_ = OwnedObject::consuming(reinterpret_cast<PyObject*>(
      PyGreenlet_New(run_hub_fn_.get(), reinterpret_cast<PyGreenlet*>(main_greenlet_.get()))));
  return bool(hub_greenlet_);
}

bool Hub::CheckThread() const {
  if (orphaned_) {
    PyErr_SetString(PyExc_RuntimeError,
                    "grpc_green: this object was made before os.fork() and belongs to the "
                    "parent process; make a new one in the child");
    return false;
  }
  if (PyThread_get_thread_ident() == thread_id_) return true;
  PyErr_SetString(PyExc_RuntimeError,
                  "grpc_green: this object belongs to another thread's hub; "
                  "create channels and servers in the thread that uses them");
  return false;
}

PyObject* Hub::SwitchToHub() {
  if (!EnsureHubGreenlet()) return nullptr;
  if (kind_ == kGevent) return PyObject_CallNoArgs(gevent_switch_.get());
  return PyGreenlet_Switch(reinterpret_cast<PyGreenlet*>(hub_greenlet_.get()), nullptr, nullptr);
}

void Hub::Schedule(Waiter* w) {
  w->scheduled_ = true;
  Push({w, nullptr, nullptr, false});
}

void Hub::Unschedule(Waiter* w) {
  for (auto& r : ready_) {
    if (r.waiter == w) r.waiter = nullptr;
  }
  w->scheduled_ = false;
}

void Hub::Unmark(Flushable* f) {
  if (!f->flush_pending) return;
  dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), f), dirty_.end());
  f->flush_pending = false;
}

bool Hub::Spawn(PyObject* callable, PyObject* args) {
  PyObject* job = Py_BuildValue("((OO))", callable, args);
  if (!job) return false;
  PyObject* g;
  if (!idle_workers_.empty()) {
    g = idle_workers_.back();
    idle_workers_.pop_back();
  } else {
    g = reinterpret_cast<PyObject*>(
        PyGreenlet_New(run_worker_fn_.get(), reinterpret_cast<PyGreenlet*>(hub_greenlet_.get())));
    if (!g) {
      Py_DECREF(job);
      return false;
    }
  }
  Push({nullptr, g, job, false});
  return true;
}

void Hub::SpawnEach(OwnedObject callables) {
  OwnedObject no_args = OwnedObject::consuming(PyTuple_New(0));
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(callables.get()); ++i) {
    PyObject* fn = PyList_GET_ITEM(callables.get(), i);
    if (!no_args || !Spawn(fn, no_args.get())) PyErr_WriteUnraisable(fn);
  }
}

PyObject* Hub::SpawnGreenlet(PyObject* callable, PyObject* args) {
  if (!EnsureHubGreenlet()) return nullptr;
  PyObject* g = reinterpret_cast<PyObject*>(
      PyGreenlet_New(callable, reinterpret_cast<PyGreenlet*>(hub_greenlet_.get())));
  if (!g) return nullptr;
  Py_INCREF(g);
  Py_INCREF(args);
  Push({nullptr, g, args, false});
  return g;
}

bool Hub::Kill(PyObject* g, PyObject* exc) {
  if (!PyGreenlet_Check(g)) {
    PyErr_SetString(PyExc_TypeError, "kill() needs a greenlet");
    return false;
  }
  Py_INCREF(g);
  Py_INCREF(exc);
  Push({nullptr, g, exc, true});
  return true;
}

PyObject* Hub::RunHub(PyObject* capsule, PyObject*) {
  auto* hub = static_cast<Hub*>(PyCapsule_GetPointer(capsule, "grpc_green.hub"));
  return hub ? hub->Loop() : nullptr;
}

PyObject* Hub::Loop() {
  for (;;) {
    RunReady();
    if (orphaned_) Py_RETURN_NONE;  // resumed in a forked child: never poll
    FlushDirty();
    ReapGraveyard();
    // Greenlets woken during this pass run in the next one, after a poll
    // that does not wait for anything: greenlets that keep waking one
    // another never starve sockets and timers.
    bool alive = io_->RunOnce(!ready_.empty());
    // A signal interrupts the poll; Python's handlers run here (in the main
    // thread), and what they raise (KeyboardInterrupt) is thrown into the
    // main greenlet first thing in the next pass. The hub lives on: ending
    // it would hand every greenlet it runs to its parent.
    if (PyErr_CheckSignals() < 0) ThrowIntoMain();
    if (!alive && ready_.empty() && dirty_.empty()) {
      PyErr_SetString(PyExc_RuntimeError,
                      "grpc_green: every greenlet is blocked and nothing can wake them "
                      "(no socket or timer is being watched)");
      return nullptr;  // raised in the main greenlet, the hub's parent
    }
  }
}

void Hub::RunReady() {
  // Only what is queued now: greenlets that yield again go to the next pass,
  // after the loop has polled for IO.
  for (size_t n = ready_.size(); n > 0 && !ready_.empty() && !orphaned_; --n) {
    Ready r = ready_.front();
    ready_.pop_front();
    PyObject* result;
    if (r.throw_into) {
      auto* g = reinterpret_cast<PyGreenlet*>(r.greenlet);
      result = PyGreenlet_ACTIVE(g) ? PyGreenlet_Throw(g, r.job, nullptr, nullptr) : Py_NewRef(Py_None);
      Py_DECREF(r.greenlet);
      Py_DECREF(r.job);
    } else if (r.greenlet) {
      result = PyGreenlet_Switch(reinterpret_cast<PyGreenlet*>(r.greenlet), r.job, nullptr);
      Py_DECREF(r.greenlet);
      Py_DECREF(r.job);
    } else {
      if (!r.waiter) continue;  // unscheduled
      r.waiter->scheduled_ = false;
      if (!r.waiter->greenlet_) continue;
      result = PyGreenlet_Switch(reinterpret_cast<PyGreenlet*>(r.waiter->greenlet_),
                                 wake_args_.get(), nullptr);
    }
    if (result) {
      Py_DECREF(result);
    } else {
      PyErr_WriteUnraisable(hub_greenlet_.get());
    }
  }
}

void Hub::ThrowIntoMain() {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (value && tb) PyException_SetTraceback(value, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
  if (!value) return;
  ready_.push_front({nullptr, Py_NewRef(main_greenlet_.get()), value, true});
}

bool Hub::CanPollInline(PyObject* waiting) const {
  // The main greenlet only: that is where the hub raises what a signal
  // handler raises (KeyboardInterrupt), so polling there changes nothing.
  return kind_ == kNative && waiting == main_greenlet_.get() && ready_.empty() && dirty_.empty() &&
         !polling_inline_ && !orphaned_;
}

PyObject* Hub::PollInline(Waiter* w) {
  // The hub's loop, run by the main greenlet while it waits and nothing
  // else is ready: two greenlet switches fewer per wait for a sequential
  // caller.
  // It gives way to the hub as soon as anyone else has something to do.
  // Handlers run here as on the hub: they never switch and never block (a
  // blocking call from one is refused, see Waiter::Wait).
  polling_inline_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{polling_inline_};
  for (;;) {
    ReapGraveyard();
    bool alive = io_->RunOnce(false);
    if (PyErr_CheckSignals() < 0) return nullptr;  // raised in the main greenlet, as by the hub
    if (ready_.size() == 1 && ready_.front().waiter == w) {
      ready_.pop_front();
      w->scheduled_ = false;
      return Py_NewRef(wake_token_.get());
    }
    if (!ready_.empty() || orphaned_) break;
    if (!alive && dirty_.empty()) {
      PyErr_SetString(PyExc_RuntimeError,
                      "grpc_green: every greenlet is blocked and nothing can wake them "
                      "(no socket or timer is being watched)");
      return nullptr;
    }
    FlushDirty();
  }
  polling_inline_ = false;
  return SwitchToHub();  // others are ready: the hub runs them, and this waiter in turn
}

void Hub::ReapGraveyard() {
  // The dead are freed once every greenlet woken before they died has run
  // (a woken waiter may still hold one): at once when nothing is queued,
  // otherwise after one more pass of the ready queue.
  FreeDeferred(graveyard_older_);
  if (ready_.empty()) FreeDeferred(graveyard_);
  else graveyard_older_.swap(graveyard_);
}

void Hub::FreeDeferred(std::vector<std::unique_ptr<Deferred>>& dead) {
  // A destructor may defer more (to graveyard_, possibly `dead` itself):
  // those stay for a later reap.
  const size_t n = dead.size();
  for (size_t i = 0; i < n; ++i) std::unique_ptr<Deferred> d = std::move(dead[i]);
  dead.erase(dead.begin(), dead.begin() + static_cast<std::ptrdiff_t>(n));
}

void Hub::FlushDirty() {
  // Both vectors keep their capacity from pass to pass. Not reentrant: an
  // outer pass is iterating flushing_ and picks up what is marked meanwhile.
  if (!flushing_.empty()) return;
  while (!dirty_.empty()) {
    flushing_.swap(dirty_);
    for (Flushable* f : flushing_) {
      f->flush_pending = false;
      f->Flush();
    }
    flushing_.clear();
  }
}

PyObject* Hub::RunWorker(PyObject* capsule, PyObject* args) {
  auto* hub = static_cast<Hub*>(PyCapsule_GetPointer(capsule, "grpc_green.hub"));
  if (!hub || PyTuple_GET_SIZE(args) != 1) return nullptr;
  PyObject* job = PyTuple_GET_ITEM(args, 0);
  Py_INCREF(job);
  for (;;) {
    PyObject* result = PyObject_Call(PyTuple_GET_ITEM(job, 0), PyTuple_GET_ITEM(job, 1), nullptr);
    if (result) {
      Py_DECREF(result);
    } else if (PyErr_ExceptionMatches(PyExc_GreenletExit)) {
      Py_DECREF(job);
      return nullptr;
    } else {
      PyErr_WriteUnraisable(PyTuple_GET_ITEM(job, 0));
    }
    Py_DECREF(job);
    if (hub->idle_workers_.size() >= kMaxIdleWorkers) Py_RETURN_NONE;
    hub->idle_workers_.push_back(CurrentGreenlet());
    if (hub->ready_.empty()) hub->FlushDirty();  // as a parking waiter does
    job = hub->SwitchToHub();  // the hub switches back with the next job
    if (!job) return nullptr;
    if (!PyTuple_Check(job) || PyTuple_GET_SIZE(job) != 2) {
      Py_DECREF(job);
      PyErr_SetString(PyExc_RuntimeError, "grpc_green: unexpected switch into an idle worker");
      return nullptr;
    }
  }
}

}  // namespace grpc_green
