// The hub: one per OS thread, a greenlet that runs the IO manager's loop
// and switches to the greenlets whose waits have completed.
//
// Everything that blocks parks the calling greenlet on a Waiter and
// switches to the hub. Event handlers (io, timers, nghttp2 hooks) never
// switch: they Wake() waiters, which queues them; the hub then switches to
// each queued greenlet once, in order ("wake many, switch once each"), and
// afterwards flushes every connection marked dirty with one write each
// ("writes are corked per hub iteration"). Greenlets woken during a pass
// run in the next, after a poll that does not wait.
//
// Two shortcuts keep a lone sequential caller's round trip short, without
// changing any of that: a greenlet that parks when nobody else is queued
// flushes before it switches (the hub would flush next anyway), and on the
// native hub the main greenlet that alone waits runs the loop passes itself
// until it is woken or someone else is (then it switches to the hub).
//
// Two kinds of hub: native (a greenlet of grpc_green's running its own libev
// loop) and gevent (gevent's hub greenlet and loop: grpc_green's watchers sit
// on gevent's loop, and the ready queue is drained from one gevent loop
// callback per pass). Which one a thread gets is decided on its first use
// by the selector the Python layer registers (grpc_green/_hubs.py).
//
// Threading: a Hub and everything attached to it belong to the thread that
// created it; Hub::Current() is per thread. Objects remember their hub and
// refuse use from another thread (CheckThread()).
//
// Fork: in a forked child every hub of the parent is orphaned: it never runs
// again, its sockets are closed without a byte written (ForkDroppable), and
// the child's first use makes a fresh hub.
//
// This is the only translation unit that calls greenlet's C API.
#pragma once

#include <Python.h>

#include <deque>
#include <memory>
#include <unordered_set>
#include <vector>

#include "IoManager.hpp"
#include "gg_refs.hpp"

namespace grpc_green {

class Hub;

// Imports greenlet's C API; called once from module init.
bool ImportGreenletApi();

// Something with output to write at the end of the hub iteration.
class Flushable {
 public:
  virtual void Flush() = 0;
  bool flush_pending = false;

 protected:
  ~Flushable() = default;
};

// Owns a socket that a forked child must close without using it.
class ForkDroppable {
 public:
  virtual void DropAfterFork() = 0;

 protected:
  ~ForkDroppable() = default;
};

// Deleted by the hub between iterations, never inside a handler.
class Deferred {
 public:
  virtual ~Deferred() = default;
};

// A Waiter must live on the heap (or inside a heap object), never on a
// greenlet's C stack: while a greenlet is suspended, greenlet copies its
// stack away and other greenlets reuse that memory, so the hub's pointer to
// a stack Waiter would point at someone else's data.
class Waiter final : private TimerHandler {
 public:
  enum Result { kError = -1, kTimedOut = 0, kWoken = 1 };

  Waiter();
  ~Waiter();
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // Parks the current greenlet until Wake() or until `timeout` seconds pass
  // (timeout < 0: no limit). kError means a Python error is set: an
  // exception was thrown into the greenlet (it was killed), or the call was
  // made on the hub itself.
  Result Wait(double timeout = -1);
  // Queues the waiting greenlet to resume; a no-op when nothing waits or a
  // wake is already queued.
  void Wake();
  bool waiting() const { return greenlet_ != nullptr; }

 private:
  friend class Hub;
  void OnTimer() override;
  Hub* hub_ = nullptr;             // set by the first Wait()
  PyObject* greenlet_ = nullptr;  // owned while waiting
  bool scheduled_ = false;
  bool woken_ = false;
  std::unique_ptr<Timer> timer_;
};

// Any number of greenlets parked until the next WakeAll(), so readers,
// writers and status waiters of one call can park at the same time. The
// first comes with the list (no allocation for the usual lone waiter);
// each further Wait() brings its own heap Waiter.
class WaitList {
 public:
  Waiter::Result Wait(double timeout = -1);
  void WakeAll() {
    first_.Wake();
    for (Waiter* w : others_) w->Wake();
  }
  bool empty() const { return !first_.waiting() && others_.empty(); }

 private:
  Waiter first_;
  std::vector<Waiter*> others_;
};

class Hub {
 public:
  enum Kind { kNative, kGevent };

  // The calling thread's hub, created on first use. nullptr with a Python
  // error set on failure.
  static Hub* Get();
  // The calling thread's hub if there is one.
  static Hub* Current();
  // selector() -> None (native) or the gevent hub to run on; called when a
  // thread first needs a hub. nullptr: always native.
  static void SetSelector(PyObject* selector);
  // Run in a forked child (os.register_at_fork): orphans every hub.
  static void AfterForkInChild();

  Kind kind() const { return kind_; }
  IoManager& io() { return *io_; }
  double Now() const { return MonotonicNow(); }
  bool orphaned() const { return orphaned_; }

  // True when the caller runs on this hub's thread (in this process);
  // otherwise sets a RuntimeError and returns false.
  bool CheckThread() const;

  void Track(ForkDroppable* d) { fork_droppable_.insert(d); }
  void Untrack(ForkDroppable* d) { fork_droppable_.erase(d); }

  // Runs callable(*args) in a greenlet of the hub's pool. Returns false with
  // a Python error set on failure.
  bool Spawn(PyObject* callable, PyObject* args);
  // Runs every callable of `callables` (a list) with no arguments, each in
  // a pool greenlet; a callable that cannot be started is reported as
  // unraisable. Never fails.
  void SpawnEach(OwnedObject callables);
  // Starts callable(*args) in a new greenlet of its own (parent: the hub),
  // which the caller may later Kill(). New reference or NULL.
  PyObject* SpawnGreenlet(PyObject* callable, PyObject* args);
  // Has the hub throw `exc` into greenlet `g` on its next pass (a no-op if
  // g has ended by then). The caller keeps running.
  bool Kill(PyObject* g, PyObject* exc);
  void MarkDirty(Flushable* f) {
    if (!f->flush_pending) {
      f->flush_pending = true;
      dirty_.push_back(f);
      Poke();
    }
  }
  void Unmark(Flushable* f);
  void DeferDelete(Deferred* d) {
    graveyard_.emplace_back(d);
    Poke();
  }

 private:
  friend class Waiter;
  struct Ready {
    Waiter* waiter;   // wake-up of a waiter, or
    PyObject* greenlet;  // owned: a pool greenlet to start or resume
    PyObject* job;       // owned: the switch arguments, or the exception
    bool throw_into;     // throw `job` into `greenlet` instead of switching
  };

  Hub();
  bool Init(PyObject* gevent_hub);
  void Orphan();
  void Push(const Ready& r) {
    ready_.push_back(r);
    Poke();
  }
  // gevent: makes sure one drain callback is queued on gevent's loop.
  void Poke() {
    if (kind_ == kGevent && !drain_pending_) RequestDrain();
  }
  void RequestDrain();
  static PyObject* RunDrain(PyObject* capsule, PyObject* unused);
  void Schedule(Waiter* w);
  void Unschedule(Waiter* w);
  // Switches from the current greenlet to the hub; new reference or NULL.
  PyObject* SwitchToHub();
  // Native hub, the main greenlet waits, nothing is queued or dirty: it may
  // run the loop itself.
  bool CanPollInline(PyObject* waiting) const;
  // Runs loop passes in the current greenlet until `w` alone is woken
  // (returns like SwitchToHub()), or switches to the hub once another
  // greenlet has something to do.
  PyObject* PollInline(Waiter* w);
  bool EnsureHubGreenlet();
  static PyObject* RunHub(PyObject* capsule, PyObject* unused);
  static PyObject* RunWorker(PyObject* capsule, PyObject* job);
  PyObject* Loop();
  void RunReady();
  void FlushDirty();
  void ReapGraveyard();
  // Queues the pending Python error to be thrown into the main greenlet.
  void ThrowIntoMain();
  static void FreeDeferred(std::vector<std::unique_ptr<Deferred>>& dead);

  unsigned long thread_id_;
  Kind kind_ = kNative;
  bool orphaned_ = false;
  bool drain_pending_ = false;
  bool polling_inline_ = false;  // a waiter runs the loop (PollInline)
  std::unique_ptr<IoManager> io_;
  OwnedObject hub_greenlet_;  // ours, or gevent's hub
  OwnedObject gevent_switch_;        // gevent: hub.switch
  OwnedObject gevent_run_callback_;  // gevent: hub.loop.run_callback
  OwnedObject drain_fn_;
  OwnedObject main_greenlet_;
  OwnedObject capsule_;
  OwnedObject run_hub_fn_;
  OwnedObject run_worker_fn_;
  OwnedObject wake_token_;   // what the hub switches into a waiter with
  OwnedObject wake_args_;    // (wake_token_,)
  std::deque<Ready> ready_;
  std::vector<Flushable*> dirty_;
  std::vector<Flushable*> flushing_;  // FlushDirty()'s batch
  std::vector<std::unique_ptr<Deferred>> graveyard_;         // deferred this pass
  std::vector<std::unique_ptr<Deferred>> graveyard_older_;   // and the pass before
  std::vector<PyObject*> idle_workers_;  // owned greenlets
  std::unordered_set<ForkDroppable*> fork_droppable_;  // sockets a forked child closes
};

}  // namespace grpc_green
