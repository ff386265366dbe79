// The gevent IO manager: gevent's own loop, reached only through gevent's
// public watcher API (loop.io(fd, events), loop.timer(after), loop.async_(),
// watcher.start(callback), watcher.stop(), watcher.close(), watcher.ref,
// async.send()).
//
// gevent's loop is never touched below that API: its wheels embed a libev
// (or libuv) build of their own, so handing loop.ptr to grpc_green's libev
// would mix two builds of one library over one structure.
//
// A watcher's callback is a LoopCallback object: a tiny callable holding a
// C++ target. When the watcher goes away the target is cleared first, so a
// callback gevent still holds can never reach freed memory.
#include "TGeventIo.hpp"

#include <Python.h>

#include <unordered_set>

namespace grpc_green {

namespace {

struct LoopCallback {
  PyObject_HEAD
  void (*fn)(void* target, int arg) noexcept;
  void* target;  // borrowed: cleared by the watcher before it goes
  int arg;
};

PyObject* LoopCallback_call(PyObject* self, PyObject*, PyObject*) {
  auto* cb = reinterpret_cast<LoopCallback*>(self);
  if (cb->target) cb->fn(cb->target, cb->arg);
  if (PyErr_Occurred()) return nullptr;
  Py_RETURN_NONE;
}

void LoopCallback_dealloc(PyObject* self) { PyObject_Free(self); }

PyTypeObject LoopCallbackType = [] {
  PyTypeObject t = EmptyTypeObject();
  t.tp_name = "grpc_green._core.LoopCallback";
  t.tp_basicsize = sizeof(LoopCallback);
  t.tp_flags = Py_TPFLAGS_DEFAULT;
  t.tp_doc = "A gevent watcher callback that calls into grpc_green's engine.";
  t.tp_call = GG_ENTRY(LoopCallback_call);
  t.tp_dealloc = LoopCallback_dealloc;
  return t;
}();

// The names of gevent's watcher API, interned once (kept for the life of
// the process).
struct Names {
  OwnedObject io, timer, async_, start, stop, close, update, send, ref;
};
Names* names = nullptr;

bool InitNames() {
  if (names) return true;
  if (PyType_Ready(&LoopCallbackType) < 0) return false;
  auto n = std::make_unique<Names>();
  for (auto [field, text] : {std::pair{&n->io, "io"},
                             {&n->timer, "timer"},
                             {&n->async_, "async_"},
                             {&n->send, "send"},
                             {&n->ref, "ref"},
                             {&n->start, "start"},
                             {&n->stop, "stop"},
                             {&n->close, "close"},
                             {&n->update, "update"}}) {
    *field = OwnedObject::consuming(PyUnicode_InternFromString(text));
    if (!*field) return false;
  }
  names = n.release();
  return true;
}

// Calls obj.name() keeping any Python error already set (used while
// tearing down, which may happen during error handling).
void CallQuietly(PyObject* obj, const OwnedObject& name) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyObject* r = PyObject_CallMethodNoArgs(obj, name.get());
  if (r) {
    Py_DECREF(r);
  } else {
    PyErr_WriteUnraisable(obj);
  }
  PyErr_Restore(type, value, tb);
}

// One gevent watcher plus the callback it was started with.
class Watch {
 public:
  ~Watch() { Close(); }
  bool active() const { return active_; }

  // Creates the watcher with loop.<kind>(*args) on first use.
  bool Start(PyObject* loop, const OwnedObject& kind, PyObject* args,
             void (*fn)(void*, int) noexcept, void* target, int arg, bool update) {
    if (!watcher_) {
      OwnedObject factory = OwnedObject::consuming(PyObject_GetAttr(loop, kind.get()));
      if (!factory) return false;
      watcher_ = OwnedObject::consuming(PyObject_CallObject(factory.get(), args));
      if (!watcher_) return false;
      auto* cb = PyObject_New(LoopCallback, &LoopCallbackType);
      if (!cb) return false;
      cb->fn = fn;
      cb->target = target;
      cb->arg = arg;
      cb_ = OwnedObject::consuming(reinterpret_cast<PyObject*>(cb));
    }
    OwnedObject start =
        OwnedObject::consuming(PyObject_GetAttr(watcher_.get(), names->start.get()));
    if (!start) return false;
    OwnedObject args1 = OwnedObject::consuming(PyTuple_Pack(1, cb_.get()));
    if (!args1) return false;
    OwnedObject kwargs;
    if (update) {
      // The loop's cached time lags when callbacks ran long; a timer started
      // from it would fire early.
      kwargs = OwnedObject::consuming(PyDict_New());
      if (!kwargs || PyDict_SetItem(kwargs.get(), names->update.get(), Py_True) < 0) return false;
    }
    OwnedObject r = OwnedObject::consuming(PyObject_Call(start.get(), args1.get(), kwargs.get()));
    if (!r) return false;
    active_ = true;
    return true;
  }

  void Stop() {
    if (!active_) return;
    active_ = false;
    CallQuietly(watcher_.get(), names->stop);
  }
  void Fired() { active_ = false; }
  PyObject* watcher() const { return watcher_.get(); }  // borrowed; null before Start()

  void Close() {
    if (cb_) reinterpret_cast<LoopCallback*>(cb_.get())->target = nullptr;
    cb_.reset();
    if (watcher_) {
      Stop();
      CallQuietly(watcher_.get(), names->close);
      watcher_.reset();
    }
    active_ = false;
  }

 private:
  OwnedObject watcher_;
  OwnedObject cb_;
  bool active_ = false;
};

class GeventIoManager;

// Reading and writing use a watcher each, so changing interest only starts
// or stops one of them (gevent refuses to change an active io watcher).
class GeventIo final : public IoWatcher {
 public:
  GeventIo(GeventIoManager* m, int fd, IoHandler* handler);
  ~GeventIo() override;

  bool Set(int events) override;
  void Abandon() {
    sides_[0].Close();
    sides_[1].Close();
    events_ = 0;
  }

 private:
  bool StartSide(int i, int bit);
  static void Fire(void* self, int bit) noexcept {
    static_cast<GeventIo*>(self)->handler_->OnIo(bit);
  }
  GeventIoManager* m_;
  int fd_;
  IoHandler* handler_;
  Watch sides_[2];
};

class GeventTimer final : public Timer {
 public:
  GeventTimer(GeventIoManager* m, TimerHandler* handler);
  ~GeventTimer() override;

  bool Start(double after) override;
  void Stop() override { w_.Stop(); }
  bool active() const override { return w_.active(); }
  void Abandon() { w_.Close(); }

 private:
  static void Fire(void* self, int) noexcept {
    auto* t = static_cast<GeventTimer*>(self);
    t->w_.Fired();
    t->handler_->OnTimer();
  }
  GeventIoManager* m_;
  TimerHandler* handler_;
  Watch w_;
};

class GeventIoManager final : public IoManager {
 public:
  explicit GeventIoManager(BorrowedObject loop) : loop_(OwnedObject::owning(loop)) {}

  std::unique_ptr<IoWatcher> NewIo(int fd, IoHandler* handler) override {
    return std::make_unique<GeventIo>(this, fd, handler);
  }
  std::unique_ptr<Timer> NewTimer(TimerHandler* handler) override {
    return std::make_unique<GeventTimer>(this, handler);
  }
  // gevent's hub runs gevent's loop; grpc_green never runs it itself.
  bool RunOnce(bool) override { return false; }

  // After fork: nothing of the parent's may stay armed on gevent's loop,
  // which gevent re-arms in the child.
  void Abandon() override {
    for (GeventIo* w : ios_) w->Abandon();
    for (GeventTimer* t : timers_) t->Abandon();
    wake_.Close();
  }

  // gevent's async watcher, unreferenced as gevent's own threadsafe one is
  // (loop.run_callback_threadsafe): async.send() is thread-safe in both of
  // gevent's loops (libev's ev_async_send, libuv's uv_async_send).
  bool EnableWake(WakeHandler* handler) override {
    if (wake_.active()) return true;
    OwnedObject no_args = OwnedObject::consuming(PyTuple_New(0));
    if (!no_args ||
        !wake_.Start(loop_.get(), names->async_, no_args.get(), FireWake, handler, 0, false))
      return false;
    if (PyObject_SetAttr(wake_.watcher(), names->ref.get(), Py_False) == 0) return true;
    wake_.Close();
    return false;
  }
  void Signal() noexcept override {
    if (wake_.watcher()) CallQuietly(wake_.watcher(), names->send);
  }
  void DisableWake() noexcept override { wake_.Close(); }
  void KeepAliveForWake(bool on) noexcept override {
    if (!wake_.watcher()) return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (PyObject_SetAttr(wake_.watcher(), names->ref.get(), on ? Py_True : Py_False) < 0)
      PyErr_WriteUnraisable(wake_.watcher());
    PyErr_Restore(type, value, tb);
  }

  PyObject* loop() const { return loop_.get(); }
  std::unordered_set<GeventIo*> ios_;
  std::unordered_set<GeventTimer*> timers_;

 private:
  static void FireWake(void* handler, int) noexcept {
    static_cast<WakeHandler*>(handler)->OnWake();
  }
  OwnedObject loop_;
  Watch wake_;
};

GeventIo::GeventIo(GeventIoManager* m, int fd, IoHandler* handler)
    : m_(m), fd_(fd), handler_(handler) {
  m_->ios_.insert(this);
}

GeventIo::~GeventIo() {
  m_->ios_.erase(this);
  Abandon();
}

bool GeventIo::Set(int events) {
  if (events == events_) return true;
  bool ok = true;
  for (int i = 0; i < 2; ++i) {
    int bit = i == 0 ? kIoRead : kIoWrite;
    bool want = events & bit;
    if (want == sides_[i].active()) continue;
    if (!want) {
      sides_[i].Stop();
    } else if (!StartSide(i, bit)) {
      // The owner learns it from the result; what gevent said is
      // reported here.
      PyErr_WriteUnraisable(m_->loop());
      ok = false;
    }
  }
  events_ = events;
  return ok;
}

bool GeventIo::StartSide(int i, int bit) {
  // gevent's io events use libev's values: 1 read, 2 write.
  OwnedObject args = OwnedObject::consuming(Py_BuildValue("(ii)", fd_, bit));
  return args && sides_[i].Start(m_->loop(), names->io, args.get(), Fire, this, bit, false);
}

GeventTimer::GeventTimer(GeventIoManager* m, TimerHandler* handler) : m_(m), handler_(handler) {
  m_->timers_.insert(this);
}

GeventTimer::~GeventTimer() {
  m_->timers_.erase(this);
  w_.Close();
}

bool GeventTimer::Start(double after) {
  // gevent fixes a timer's delay when it is made: a restart makes a new one.
  w_.Close();
  OwnedObject args = OwnedObject::consuming(Py_BuildValue("(d)", after > 0 ? after : 0.));
  if (args && w_.Start(m_->loop(), names->timer, args.get(), Fire, this, 0, true)) return true;
  // The caller learns it from the result (a call ends INTERNAL, a wait
  // raises); what gevent said is reported here.
  PyErr_WriteUnraisable(m_->loop());
  return false;
}

}  // namespace

std::unique_ptr<IoManager> NewGeventIoManager(BorrowedObject loop) {
  if (!InitNames()) return nullptr;
  return std::make_unique<GeventIoManager>(loop);
}

}  // namespace grpc_green
