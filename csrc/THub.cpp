#include "THub.hpp"

#include <greenlet.h>
#include <pythread.h>

#include <algorithm>

#include "TGeventIo.hpp"

namespace grpc_green {

PyObject* ForeignThreadError = nullptr;

namespace {

thread_local Hub* t_hub = nullptr;
constexpr size_t kMaxIdleWorkers = 4096;
// The selector the Python layer registered; lives as long as the module.
OwnedObject* g_selector = nullptr;
std::vector<Hub*>* g_hubs = nullptr;  // every live hub of this process
bool g_monitored = false;             // a monitor thread runs (Hub::SetMonitored)
const char kCapsuleName[] = "grpc_green.hub";
const char kThreadKey[] = "grpc_green.hub";

OwnedObject CurrentGreenlet() {
  return OwnedObject::consuming(reinterpret_cast<PyObject*>(PyGreenlet_GetCurrent()));
}

PyGreenlet* AsGreenlet(const OwnedObject& g) { return reinterpret_cast<PyGreenlet*>(g.get()); }

OwnedObject MainGreenletOf(OwnedObject g) {
  // Walks up the parents: the root is the thread's main greenlet.
  for (;;) {
    PyGreenlet* parent = PyGreenlet_GetParent(AsGreenlet(g));
    if (!parent) {
      PyErr_Clear();
      return g;
    }
    g = OwnedObject::consuming(reinterpret_cast<PyObject*>(parent));
  }
}

bool Finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// True when this interpreter has a Python thread besides the caller's (one
// that might wake this thread's waiters). With the GIL held.
bool OtherThreadsExist() {
  PyThreadState* me = PyThreadState_Get();
  for (PyThreadState* t = PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(me)); t;
       t = PyThreadState_Next(t)) {
    if (t != me) return true;
  }
  return false;
}

struct NoOpTimer final : TimerHandler {
  void OnTimer() noexcept override {}
};
NoOpTimer no_op_timer;

// Python's signal handlers, run after a poll a signal interrupted.
void* ReleaseGil() { return PyEval_SaveThread(); }
void AcquireGil(void* state) { PyEval_RestoreThread(static_cast<PyThreadState*>(state)); }

}  // namespace

bool ImportGreenletApi() {
  PyGreenlet_Import();
  return _PyGreenlet_API != nullptr;
}

// ---------------------------------------------------------------- Waiter

// The hub is the waiting thread's, looked up by the first Wait(): a call
// object makes three waiters whether or not anyone waits.
Waiter::~Waiter() {
  if (queued() && hub_) hub_->Unschedule(this);
}

Waiter::Result Waiter::Wait(double timeout) {
  if (!hub_ && !(hub_ = Hub::Get())) return kError;
  if (!hub_->CheckThread()) return kError;
  if (greenlet_) {
    PyErr_SetString(PyExc_RuntimeError, "grpc_green: this waiter already has a greenlet waiting");
    return kError;
  }
  OwnedObject current = CurrentGreenlet();
  if (!current) return kError;
  if (current.get() == hub_->hub_greenlet_.get() || hub_->polling_inline_) {
    PyErr_SetString(PyExc_RuntimeError,
                    "grpc_green: a blocking call cannot run on the hub greenlet");
    return kError;
  }
  if (timeout == 0 && hub_->kind_ == Hub::kNative) {
    // A yield: queued at once, the waiter resumes after the loop's next
    // poll (which does not wait, someone being ready), no timer needed.
    // (gevent's loop may run a queued drain before it polls: a timer there.)
    greenlet_ = std::move(current);
    woken_ = true;
    hub_->Schedule(this);
    PyObject* r = hub_->SwitchToHub();
    return Resumed(r);
  }
  if (timeout >= 0) {
    if (!timer_) timer_ = hub_->io().NewTimer(this);
    if (!timer_->Start(timeout)) {
      PyErr_SetString(PyExc_RuntimeError, "grpc_green: the event loop refused a timer");
      return kError;
    }
  }
  greenlet_ = std::move(current);
  woken_ = false;
  // When no other greenlet is queued to run before the hub polls, the hub's
  // next step would be to flush: do it before switching, so what this
  // greenlet submitted goes out without waiting for the switch.
  if (hub_->ready_.empty()) hub_->FlushDirty();
  PyObject* r = hub_->CanPollInline(greenlet_.get()) ? hub_->PollInline(this) : hub_->SwitchToHub();
  return Resumed(r);
}

Waiter::Result Waiter::Resumed(PyObject* r) {
  if (timer_) timer_->Stop();
  greenlet_.reset();
  if (queued()) hub_->Unschedule(this);
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

void Waiter::Wake() noexcept {
  if (!greenlet_) return;
  // t_hub is the calling thread's live hub: another thread, a thread that
  // has none, or a forked child takes the inbox's path.
  if (hub_ != t_hub) {
    hub_->WakeFromOtherThread(this);
    return;
  }
  woken_ = true;
  if (!queued()) hub_->Schedule(this);
}

void Waiter::OnTimer() noexcept {
  if (greenlet_ && !queued()) hub_->Schedule(this);
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

Hub::Hub(std::unique_ptr<IoManager> io, Kind kind)
    : Reactor(std::move(io)), thread_id_(PyThread_get_thread_ident()), kind_(kind) {}

Hub::~Hub() {
  // Jobs still queued own their references; waiters are someone else's.
  while (ReadyNode* n = PopReady()) Discard(n);
  while (ReadyNode* n = inbox_.pop_front()) Discard(n);
  if (g_hubs) g_hubs->erase(std::remove(g_hubs->begin(), g_hubs->end(), this), g_hubs->end());
}

Hub* Hub::Current() { return t_hub; }

Hub* Hub::Get() {
  if (t_hub) return t_hub;
  if (!_PyGreenlet_API) {
    PyErr_SetString(PyExc_RuntimeError, "grpc_green: greenlet's C API is not available");
    return nullptr;
  }
  OwnedObject gevent_hub;
  if (g_selector && *g_selector) {
    gevent_hub = OwnedObject::consuming(PyObject_CallNoArgs(g_selector->get()));
    if (!gevent_hub) return nullptr;
    if (gevent_hub.get() == Py_None) gevent_hub.reset();
  }
  std::unique_ptr<IoManager> io;
  if (gevent_hub) {
    OwnedObject loop = OwnedObject::consuming(PyObject_GetAttrString(gevent_hub.get(), "loop"));
    if (!loop) return nullptr;
    io = NewGeventIoManager(loop.borrow());
    if (!io) return nullptr;
  } else {
    io = NewNativeIoManager(PollHooks{ReleaseGil, AcquireGil});
    if (!io) {
      PyErr_SetString(PyExc_OSError, "grpc_green: cannot create the event loop");
      return nullptr;
    }
  }
  // The creator's reference is the thread's; Unref() frees a failed hub.
  Hub* hub = new Hub(std::move(io), gevent_hub ? kGevent : kNative);
  if (!hub->Init(gevent_hub.borrow()) || !hub->RegisterThreadEnd()) {
    hub->Unref();
    return nullptr;
  }
  if (!g_hubs) g_hubs = new std::vector<Hub*>();
  g_hubs->push_back(hub);
  t_hub = hub;
  return hub;
}

void Hub::SetSelector(BorrowedObject selector) {
  if (!g_selector) g_selector = new OwnedObject();
  *g_selector = OwnedObject::owning(selector);
}

bool Hub::Init(BorrowedObject gevent_hub) {
  static PyMethodDef run_hub_def = {"grpc_green_hub", GG_METHOD(RunHub), METH_VARARGS, nullptr};
  static PyMethodDef run_worker_def = {"grpc_green_worker", GG_METHOD(RunWorker), METH_VARARGS,
                                       nullptr};
  static PyMethodDef drain_def = {"grpc_green_drain", GG_METHOD(RunDrain), METH_NOARGS, nullptr};
  capsule_ = OwnedObject::consuming(PyCapsule_New(this, kCapsuleName, nullptr));
  if (!capsule_) return false;
  OwnedObject current = CurrentGreenlet();
  if (!current) return false;
  main_greenlet_ = MainGreenletOf(std::move(current));
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
    if (!PyGreenlet_Check(gevent_hub.get())) {
      PyErr_SetString(PyExc_TypeError, "grpc_green: the hub selector returned a non-greenlet");
      return false;
    }
    hub_greenlet_ = OwnedObject::owning(gevent_hub);
    gevent_switch_ = OwnedObject::consuming(PyObject_GetAttrString(gevent_hub.get(), "switch"));
    OwnedObject loop = OwnedObject::consuming(PyObject_GetAttrString(gevent_hub.get(), "loop"));
    if (!gevent_switch_ || !loop) return false;
    gevent_run_callback_ =
        OwnedObject::consuming(PyObject_GetAttrString(loop.get(), "run_callback"));
    drain_fn_ = OwnedObject::consuming(PyCFunction_New(&drain_def, capsule_.get()));
    if (!gevent_run_callback_ || !drain_fn_) return false;
    return io_->EnableWake(this);
  }
  if (!io_->EnableWake(this)) {
    PyErr_SetString(PyExc_OSError, "grpc_green: the event loop refused its wake-up watcher");
    return false;
  }
  return EnsureHubGreenlet();
}

bool Hub::RegisterThreadEnd() {
  // The thread state's dict is cleared, in this thread and with the GIL,
  // when the thread ends: the capsule's destructor ends the hub then.
  PyObject* dict = PyThreadState_GetDict();  // borrowed
  if (!dict) {
    PyErr_SetString(PyExc_RuntimeError, "grpc_green: no thread state dict");
    return false;
  }
  OwnedObject token =
      OwnedObject::consuming(PyCapsule_New(this, "grpc_green.hub_thread", ThreadEnded));
  return token && PyDict_SetItemString(dict, kThreadKey, token.get()) == 0;
}

void Hub::ThreadEnded(PyObject* capsule) noexcept {
  auto* hub = static_cast<Hub*>(PyCapsule_GetPointer(capsule, "grpc_green.hub_thread"));
  if (!hub) {
    PyErr_Clear();
    return;
  }
  // Interpreter shutdown, or another thread clearing this one's state (a
  // forked child drops the parent's other threads): leave the hub as is.
  if (Finalizing() || hub->orphaned_ || PyThread_get_thread_ident() != hub->thread_id_) {
    if (t_hub == hub) t_hub = nullptr;
    return;
  }
  hub->EndThread();
}

void Hub::EndThread() noexcept {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  if (t_hub == this) t_hub = nullptr;
  ended_ = true;
  Ref();  // this hub lives to the end of this function
  // Nothing runs here again: queued work goes (what other threads posted
  // too: ended_ keeps them from posting more, and from signalling), pool
  // greenlets and the hub greenlet are released (greenlet kills those still
  // suspended).
  while (ReadyNode* n = PopReady()) Discard(n);
  while (ReadyNode* n = inbox_.pop_front()) Discard(n);
  io_->DisableWake();
  recheck_.reset();
  idle_workers_.clear();
  hub_greenlet_.reset();
  main_greenlet_.reset();
  // Sockets close without a byte written (channels and servers still held
  // elsewhere see them closed); the dead are freed.
  Stop();
  while (EndListener* l = end_listeners_.pop_front()) l->OnHubEnded();
  if (PyErr_Occurred()) PyErr_WriteUnraisable(nullptr);
  PyErr_Restore(type, value, tb);
  Unref();  // the thread's reference
  Unref();  // and ours: the hub goes unless something made on it is left
}

void Hub::AfterForkInChild() {
  t_hub = nullptr;
  if (!g_hubs) return;
  for (Hub* hub : *g_hubs) hub->Orphan();
  g_hubs->clear();
}

void Hub::SetMonitored(bool on) {
  g_monitored = on;
  if (on || !g_hubs) return;
  for (Hub* hub : *g_hubs) hub->running_.reset();
}

PyObject* Hub::States() {
  OwnedObject list = OwnedObject::consuming(PyList_New(0));
  if (!list) return nullptr;
  if (!g_hubs) return list.relinquish();
  for (Hub* hub : *g_hubs) {
    if (hub->kind_ != kNative || hub->ended()) continue;
    PyObject* running = hub->running_ ? hub->running_.get() : Py_None;
    OwnedObject state = OwnedObject::consuming(
        Py_BuildValue("(kKOO)", hub->thread_id_, static_cast<unsigned long long>(hub->steps_),
                      hub->polling_ ? Py_True : Py_False, running));
    if (!state || PyList_Append(list.get(), state.get()) < 0) return nullptr;
  }
  return list.relinquish();
}

bool Hub::is_current() const { return t_hub == this; }

void Hub::Orphan() {
  // The hub object and its loop are left allocated: objects of the parent
  // still point at them, and freeing the native loop would close (and
  // unregister from) an epoll instance the parent shares.
  orphaned_ = true;
  Ref();  // never freed
  DropAll();
  io_->Abandon();
}

void Hub::RequestDrain() noexcept {
  if (orphaned_ || ended_ || !gevent_run_callback_) return;
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
  auto* hub = static_cast<Hub*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  if (!hub) return nullptr;
  if (!hub->orphaned_ && !hub->ended_) {
    hub->polled_at_ = MonotonicNow();  // gevent's loop has just polled
    hub->RunReady();
    hub->FlushDirty();
    hub->ReapGraveyard(!hub->ready_.empty());
  }
  hub->drain_pending_ = false;
  // What was queued while this pass ran goes to the next one, after gevent
  // has polled for IO.
  if (!hub->ready_.empty() || hub->has_dead()) hub->Poke();
  Py_RETURN_NONE;
}

bool Hub::YieldIfSliceUsed() {
  if (MonotonicNow() - polled_at_ < kFairSlice) return true;
  // sleep(0); the waiter is allocated (see Waiter) once per slice at most.
  auto w = std::make_unique<Waiter>();
  return w->Wait(0) != Waiter::kError;
}

bool Hub::EnsureHubGreenlet() {
  if (ended_) {
    PyErr_SetString(PyExc_RuntimeError, "grpc_green: this hub's thread has ended");
    return false;
  }
  if (kind_ == kGevent) {
    PyGreenlet* g = AsGreenlet(hub_greenlet_);
    if (!PyGreenlet_STARTED(g) || PyGreenlet_ACTIVE(g)) return true;
    PyErr_SetString(PyExc_RuntimeError,
                    "grpc_green: gevent's hub for this thread has ended; grpc_green objects "
                    "made on it cannot be used any more");
    return false;
  }
  if (hub_greenlet_ && !PyGreenlet_STARTED(AsGreenlet(hub_greenlet_))) return true;
  if (hub_greenlet_ && PyGreenlet_ACTIVE(AsGreenlet(hub_greenlet_))) return true;
  // Not created yet, or ended (it ends only when the loop found nothing to
  // wait for): make a new one over the same loop.
  hub_greenlet_ = OwnedObject::consuming(
      reinterpret_cast<PyObject*>(PyGreenlet_New(run_hub_fn_.get(), AsGreenlet(main_greenlet_))));
  return bool(hub_greenlet_);
}

bool Hub::CheckThread() const {
  if (orphaned_) {
    PyErr_SetString(PyExc_RuntimeError,
                    "grpc_green: this object was made before os.fork() and belongs to the "
                    "parent process; make a new one in the child");
    return false;
  }
  if (!ended_ && PyThread_get_thread_ident() == thread_id_) return true;
  PyErr_SetString(ended_ ? PyExc_RuntimeError : ForeignThreadError,
                  "grpc_green: this object belongs to another thread's hub; "
                  "create channels and servers in the thread that uses them");
  return false;
}

PyObject* Hub::SwitchToHub() {
  if (!EnsureHubGreenlet()) return nullptr;
  if (kind_ == kGevent) return PyObject_CallNoArgs(gevent_switch_.get());
  return PyGreenlet_Switch(AsGreenlet(hub_greenlet_), nullptr, nullptr);
}

// ------------------------------------------------------------ ready queue

bool Hub::Spawn(BorrowedObject callable, BorrowedObject args) {
  auto job = std::make_unique<Job>();
  job->is_job_ = true;
  // A worker resumed in Work() gets (callable, args); a new one is started
  // with a list holding them, which Work() empties: the arguments a greenlet
  // starts with stay referenced as long as it runs, and a pooled worker
  // must not keep its first job (and the call in it) alive.
  bool resumed = !idle_workers_.empty();
  job->payload = OwnedObject::consuming(
      Py_BuildValue(resumed ? "((OO))" : "([(OO)])", callable.get(), args.get()));
  if (!job->payload) return false;
  if (resumed) {
    job->greenlet = std::move(idle_workers_.back());
    idle_workers_.pop_back();
  } else {
    if (!EnsureHubGreenlet()) return false;
    job->greenlet = OwnedObject::consuming(reinterpret_cast<PyObject*>(
        PyGreenlet_New(run_worker_fn_.get(), AsGreenlet(hub_greenlet_))));
    if (!job->greenlet) return false;
  }
  Push(job.release());
  return true;
}

void Hub::SpawnEach(OwnedObject callables) noexcept {
  // May run while an error is being raised (a caller interrupted).
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  OwnedObject no_args = OwnedObject::consuming(PyTuple_New(0));
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(callables.get()); ++i) {
    PyObject* fn = PyList_GET_ITEM(callables.get(), i);
    bool ok = false;
    try {
      ok = no_args && Spawn(fn, no_args.borrow());
    } catch (...) {
      SetPythonErrorFromException();
    }
    if (!ok) PyErr_WriteUnraisable(fn);
  }
  PyErr_Restore(type, value, tb);
}

PyObject* Hub::SpawnGreenlet(BorrowedObject callable, BorrowedObject args) {
  if (!EnsureHubGreenlet()) return nullptr;
  auto job = std::make_unique<Job>();
  job->is_job_ = true;
  job->greenlet = OwnedObject::consuming(
      reinterpret_cast<PyObject*>(PyGreenlet_New(callable.get(), AsGreenlet(hub_greenlet_))));
  if (!job->greenlet) return nullptr;
  job->payload = OwnedObject::owning(args);
  PyObject* g = Py_NewRef(job->greenlet.get());
  Push(job.release());
  return g;
}

// The hub of the thread greenlet `g` belongs to: the one whose main
// greenlet is at the root of g's parents. nullptr if none is (g's thread
// has ended, or it runs no hub).
Hub* Hub::OwnerOf(BorrowedObject g) {
  OwnedObject root = MainGreenletOf(OwnedObject::owning(g));
  if (!g_hubs) return nullptr;
  for (Hub* hub : *g_hubs) {
    if (hub->main_greenlet_ && hub->main_greenlet_.get() == root.get()) return hub;
  }
  return nullptr;
}

bool Hub::Kill(BorrowedObject g, BorrowedObject exc) {
  if (!PyGreenlet_Check(g.get())) {
    PyErr_SetString(PyExc_TypeError, "kill() needs a greenlet");
    return false;
  }
  auto job = std::make_unique<Job>();
  job->is_job_ = true;
  job->greenlet = OwnedObject::owning(g);
  job->payload = OwnedObject::owning(exc);
  job->throw_into = true;
  // Another thread's greenlet is killed by its own hub.
  Hub* owner = OwnerOf(g);
  if (owner && owner != this) {
    if (!owner->ended_ && !owner->orphaned_) owner->Post(job.release());
    return true;  // else it never runs again anyway
  }
  Push(job.release());
  return true;
}

// ----------------------------------------------------------------- inbox

void Hub::WakeFromOtherThread(Waiter* w) noexcept {
  if (ended_ || orphaned_) return;  // nothing runs there again
  w->woken_ = true;
  if (!w->queued()) Post(w);
}

bool Hub::SpawnThreadsafe(BorrowedObject callable, BorrowedObject args) {
  if (t_hub == this) return Spawn(callable, args);
  if (ended_ || orphaned_) {
    PyErr_SetString(PyExc_RuntimeError,
                    ended_ ? "grpc_green: this hub's thread has ended"
                           : "grpc_green: this hub belongs to the parent process (os.fork())");
    return false;
  }
  auto call = std::make_unique<RemoteCall>();
  call->is_remote_ = true;
  call->callable = OwnedObject::owning(callable);
  call->args = OwnedObject::owning(args);
  Post(call.release());
  return true;
}

void Hub::PostThreadsafe(std::unique_ptr<Task> task) noexcept {
  if (ended_ || orphaned_) return;  // freed here: nothing runs there again
  task->is_task_ = true;
  Post(task.release());
}

bool Hub::OnThread() const noexcept { return t_hub == this && !ended_ && !orphaned_; }

void Hub::Post(ReadyNode* n) noexcept {
  n->in_inbox_ = true;
  inbox_.push_back(n);
  if (signalled_) return;  // the hub has yet to drain: it will find this too
  signalled_ = true;
  io_->Signal();
}

void Hub::OnWake() noexcept {
  signalled_ = false;
  if (ended_ || orphaned_) return;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  while (ReadyNode* n = inbox_.pop_front()) {
    n->in_inbox_ = false;
    if (n->is_task_) {
      std::unique_ptr<Task>(static_cast<Task*>(n))->Run();
      continue;
    }
    if (!n->is_remote_) {
      Push(n);  // a waiter, marked woken by its waker
      continue;
    }
    std::unique_ptr<RemoteCall> call(static_cast<RemoteCall*>(n));
    bool ok = false;
    try {
      ok = Spawn(call->callable.borrow(), call->args.borrow());
    } catch (...) {
      SetPythonErrorFromException();
    }
    if (!ok) PyErr_WriteUnraisable(call->callable.get());
  }
  PyErr_Restore(type, value, tb);
}

// Two counts and, on gevent's hub only, a Python attribute on the first and
// the last: the native hub looks at remote_waits_ only when its loop is empty.
Hub::RemoteWait::RemoteWait(Hub* hub) noexcept : hub_(hub) {
  hub_->Ref();
  if (++hub_->remote_waits_ == 1 && hub_->kind_ == kGevent) hub_->io_->KeepAliveForWake(true);
}

Hub::RemoteWait::~RemoteWait() {
  if (--hub_->remote_waits_ == 0 && hub_->kind_ == kGevent && !hub_->ended_)
    hub_->io_->KeepAliveForWake(false);
  hub_->Unref();
}

bool Hub::AwaitOtherThreads() {
  if (remote_waits_ == 0 || !OtherThreadsExist()) return false;
  // The wake-up's fd is polled though it keeps nothing alive; the timer
  // bounds the poll, so a hub whose other threads have all gone without a
  // word reports the deadlock after all.
  if (!recheck_) recheck_ = io_->NewTimer(&no_op_timer);
  if (!recheck_->Start(1.0)) return false;
  Poll(false);
  recheck_->Stop();
  return true;
}

// ------------------------------------------------------------------ loop

PyObject* Hub::RunHub(PyObject* capsule, PyObject*) {
  auto* hub = static_cast<Hub*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  return hub ? hub->Loop() : nullptr;
}

PyObject* Hub::Loop() {
  for (;;) {
    RunReady();
    if (ended_) return nullptr;     // killed at thread end: GreenletExit is set
    if (orphaned_) Py_RETURN_NONE;  // resumed in a forked child: never poll
    FlushDirty();
    ReapGraveyard(!ready_.empty());
    // Greenlets woken during this pass run in the next one, after a poll
    // that does not wait for anything: greenlets that keep waking one
    // another never starve sockets and timers.
    bool alive = Poll(!ready_.empty());
    // A signal interrupts the poll; Python's handlers run here (in the main
    // thread), and what they raise (KeyboardInterrupt) is thrown into the
    // main greenlet first thing in the next pass. The hub lives on: ending
    // it would hand every greenlet it runs to its parent.
    if (PyErr_CheckSignals() < 0) ThrowIntoMain();
    if (!alive && ready_.empty() && !has_dirty()) {
      if (AwaitOtherThreads()) continue;
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
  for (size_t n = ready_.size(); n > 0 && !orphaned_ && !ended_; --n) {
    ReadyNode* node = PopReady();
    if (!node) break;
    if (node->is_job_) {
      RunJob(static_cast<Job*>(node));
      continue;
    }
    auto* w = static_cast<Waiter*>(node);
    if (!w->greenlet_) continue;
    // The waiter may be gone once the switch returns: hold nothing of it.
    Switched(SwitchInto(w->greenlet_.get(), wake_args_.get(), false));
  }
}

PyObject* Hub::SwitchInto(PyObject* g, PyObject* args, bool throw_into) {
  ++steps_;
  if (g_monitored) running_ = OwnedObject::owning(g);
  PyGreenlet* glet = reinterpret_cast<PyGreenlet*>(g);
  PyObject* r = throw_into ? PyGreenlet_Throw(glet, args, nullptr, nullptr)
                           : PyGreenlet_Switch(glet, args, nullptr);
  ++steps_;
  running_.reset();
  return r;
}

void Hub::Discard(ReadyNode* n) noexcept {
  n->in_inbox_ = false;
  if (n->is_job_) delete static_cast<Job*>(n);
  else if (n->is_remote_) delete static_cast<RemoteCall*>(n);
  else if (n->is_task_) delete static_cast<Task*>(n);
}

void Hub::RunJob(Job* job) {
  std::unique_ptr<Job> owned(job);
  PyGreenlet* g = AsGreenlet(job->greenlet);
  if (job->throw_into) {
    if (!PyGreenlet_ACTIVE(g)) return;
    // An exception instance or class, as greenlet.throw() takes it.
    Switched(SwitchInto(job->greenlet.get(), job->payload.get(), true));
  } else {
    Switched(SwitchInto(job->greenlet.get(), job->payload.get(), false));
  }
}

void Hub::Switched(PyObject* result) {
  if (result) {
    Py_DECREF(result);
    return;
  }
  // Killed at thread end: the error (GreenletExit) is the hub's own exit.
  if (ended_) return;
  PyErr_WriteUnraisable(hub_greenlet_.get());
}

void Hub::ThrowIntoMain() noexcept {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (value && tb) PyException_SetTraceback(value, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
  if (!value) return;
  Job* job;
  try {
    job = new Job();
  } catch (...) {
    Py_DECREF(value);
    return;
  }
  job->is_job_ = true;
  job->greenlet = main_greenlet_;
  job->payload = OwnedObject::consuming(value);
  job->throw_into = true;
  Push(job, true);
}

bool Hub::CanPollInline(PyObject* waiting) const {
  // The main greenlet only: that is where the hub raises what a signal
  // handler raises (KeyboardInterrupt), so polling there changes nothing.
  return kind_ == kNative && waiting == main_greenlet_.get() && ready_.empty() && !has_dirty() &&
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
    ReapGraveyard(false);
    // Flushing (at the end of the last pass) may have woken someone: the
    // stream our RST_STREAM closed, say. Then the poll must not wait.
    bool alive = Poll(!ready_.empty());
    if (PyErr_CheckSignals() < 0) return nullptr;  // raised in the main greenlet, as by the hub
    if (ready_.size() == 1 && ready_.front() == w) {
      Unqueue(w);
      if (g_monitored) running_ = main_greenlet_;
      return Py_NewRef(wake_token_.get());
    }
    if (!ready_.empty() || orphaned_) break;
    if (!alive && !has_dirty()) {
      if (AwaitOtherThreads()) continue;
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

PyObject* Hub::RunWorker(PyObject* capsule, PyObject* args) {
  auto* hub = static_cast<Hub*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  if (!hub) return nullptr;
  if (PyTuple_GET_SIZE(args) != 1) {
    PyErr_SetString(PyExc_TypeError, "grpc_green: a pool greenlet takes one job");
    return nullptr;
  }
  return hub->Work(PyTuple_GET_ITEM(args, 0));
}

PyObject* Hub::Work(PyObject* first) {
  // The first job comes in a list (see Spawn()), taken out of it here.
  if (!PyList_Check(first) || PyList_GET_SIZE(first) != 1) {
    PyErr_SetString(PyExc_RuntimeError, "grpc_green: a pool greenlet started without its job");
    return nullptr;
  }
  OwnedObject job = OwnedObject::owning(PyList_GET_ITEM(first, 0));
  if (PyList_SetSlice(first, 0, 1, nullptr) < 0) return nullptr;
  for (;;) {
    if (!PyTuple_Check(job.get()) || PyTuple_GET_SIZE(job.get()) != 2) {
      PyErr_SetString(PyExc_RuntimeError, "grpc_green: unexpected switch into an idle worker");
      return nullptr;
    }
    PyObject* fn = PyTuple_GET_ITEM(job.get(), 0);
    OwnedObject result =
        OwnedObject::consuming(PyObject_Call(fn, PyTuple_GET_ITEM(job.get(), 1), nullptr));
    if (!result) {
      if (PyErr_ExceptionMatches(PyExc_GreenletExit)) return nullptr;
      PyErr_WriteUnraisable(fn);
    }
    job.reset();
    if (ended_ || idle_workers_.size() >= kMaxIdleWorkers) Py_RETURN_NONE;
    OwnedObject self = CurrentGreenlet();
    if (!self) return nullptr;
    idle_workers_.push_back(std::move(self));
    if (ready_.empty()) FlushDirty();             // as a parking waiter does
    job = OwnedObject::consuming(SwitchToHub());  // the hub switches back with the next job
    if (!job) return nullptr;
  }
}

}  // namespace grpc_green
