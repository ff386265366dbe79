// The hub: one per OS thread, a greenlet that runs the IO manager's loop
// and switches to the greenlets whose waits have completed. It is the
// engine's Reactor (engine/Reactor.hpp) for everything made on its thread.
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
// refuse use from another thread (CheckThread()). Two things cross threads:
// waking a Waiter (Event.set() in another thread) and SpawnThreadsafe().
// Both go through the hub's inbox: the foreign thread appends to it and
// signals the loop's wake-up (libev's ev_async, gevent's async watcher);
// the hub moves what it finds there onto its ready queue, in its own thread,
// from the wake-up's handler (OnWake). A wake from the hub's own thread
// goes straight onto the ready queue: no lock, no syscall.
//
// The inbox is guarded by the GIL, not by a mutex of its own: everything
// that appends to it is a Python entry point (Event.set, Queue.put,
// Hub.spawn_threadsafe) and holds the GIL, the hub drains it holding the
// GIL, and the native hub releases the GIL only inside its poll, where it
// touches none of this. The GIL also orders what a foreign thread reads of
// the hub (ended_, orphaned_) against the hub's own thread ending it. Only
// the signal itself is lock-free (ev_async_send); a producer without the
// GIL (or a free-threaded build) would need a mutex here.
//
// A hub whose thread has ended, or the parent's hub in a forked child, never
// runs again: a wake-up of one of its waiters from another thread is
// dropped, SpawnThreadsafe() to it raises RuntimeError, and what its inbox
// held when the thread ended is dropped with it. The hub is not signalled
// once it has ended, so its loop may go whenever its memory does.
//
// Lifetime: the hub is a counted Reactor. Its thread holds one reference,
// dropped when the thread ends (its Python thread state is cleared): the
// hub's sockets close, its pool greenlets go, and the hub itself is freed
// once no channel, server or call made on it is left.
//
// Fork: in a forked child every hub of the parent is orphaned: it never runs
// again, its sockets are closed without a byte written, and the child's
// first use makes a fresh hub. Orphans are never freed (their loops share
// kernel state with the parent's).
//
// Waking never allocates: the ready queue and the inbox are intrusive
// (Waiter is a node).
//
// Monitoring (grpc_green/_monitor.py): a native hub counts its steps (loop
// passes and greenlet switches) and says whether it is in its poll; a
// monitor thread that finds the count unchanged outside the poll for too
// long reports the greenlet holding the hub. Both are plain fields, written
// by the hub's thread and read by the monitor's, each holding the GIL. The
// greenlet switched to is kept only while a monitor runs.
// This is the only translation unit that calls greenlet's C API.
#pragma once

#include <Python.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "Reactor.hpp"
#include "gg_refs.hpp"

namespace grpc_green {

class Hub;

// Imports greenlet's C API; called once from module init.
bool ImportGreenletApi();

// _core.ForeignThreadError (a RuntimeError): what CheckThread() raises for
// an object of another live thread's hub. Set at module init.
extern PyObject* ForeignThreadError;

// An entry of the hub's ready queue, or of its inbox.
class ReadyNode {
 public:
  // On the ready queue or in the inbox.
  bool queued() const { return ready_link_.linked; }

 protected:
  ~ReadyNode() = default;

 private:
  friend class Hub;
  ListLink<ReadyNode> ready_link_;  // the ready queue's, or the inbox's
  bool is_job_ = false;             // a Hub::Job (owned by the queue), else a Waiter
  bool is_remote_ = false;          // a Hub::RemoteCall (owned by the inbox)
  bool is_task_ = false;            // a Hub::Task (owned by the inbox)
  bool in_inbox_ = false;
};

// A Waiter must live on the heap (or inside a heap object), never on a
// greenlet's C stack: while a greenlet is suspended, greenlet copies its
// stack away and other greenlets reuse that memory, so the hub's pointer to
// a stack Waiter would point at someone else's data.
class Waiter final : private ReadyNode, private TimerHandler {
 public:
  enum Result { kError = -1, kTimedOut = 0, kWoken = 1 };

  Waiter() = default;
  ~Waiter();
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // Parks the current greenlet until Wake() or until `timeout` seconds pass
  // (timeout < 0: no limit; 0: a yield, resumed after the loop's next
  // poll, as kWoken). kError means a Python error is set: an
  // exception was thrown into the greenlet (it was killed), the call was
  // made on the hub itself, or the loop refused the timer.
  Result Wait(double timeout = -1);
  // Queues the waiting greenlet to resume; a no-op when nothing waits or a
  // wake is already queued. Never allocates, never throws. From another
  // thread (with the GIL), through the hub's inbox; dropped if the waiter's
  // hub has ended.
  void Wake() noexcept;
  bool waiting() const { return bool(greenlet_); }

 private:
  friend class Hub;
  // The end of Wait(), once the hub has switched back with `r`.
  Result Resumed(PyObject* r);
  void OnTimer() noexcept override;
  Hub* hub_ = nullptr;    // set by the first Wait()
  OwnedObject greenlet_;  // while waiting
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
  void WakeAll() noexcept {
    first_.Wake();
    for (Waiter* w : others_) w->Wake();
  }
  bool empty() const { return !first_.waiting() && others_.empty(); }

 private:
  Waiter first_;
  std::vector<Waiter*> others_;
};

class Hub final : public Reactor, private WakeHandler {
 public:
  enum Kind { kNative, kGevent };

  // The calling thread's hub, created on first use. nullptr with a Python
  // error set on failure.
  static Hub* Get();
  // The calling thread's hub if there is one.
  static Hub* Current();
  // The hub of an engine object (every Reactor here is a Hub).
  static Hub* Of(Reactor* r) { return static_cast<Hub*>(r); }
  // selector() -> None (native) or the gevent hub to run on; called when a
  // thread first needs a hub. nullptr: always native.
  static void SetSelector(BorrowedObject selector);
  // Run in a forked child (os.register_at_fork): orphans every hub.
  static void AfterForkInChild();
  // While on, hubs keep the greenlet they last switched to (running_).
  static void SetMonitored(bool on);
  // For the monitor: [(thread id, steps, polling, greenlet or None)] of
  // every live native hub. New reference or NULL.
  static PyObject* States();

  ~Hub() override;

  Kind kind() const { return kind_; }
  bool orphaned() const { return orphaned_; }
  // Its thread has ended, or it is a forked parent's: it never runs again.
  bool ended() const { return ended_ || orphaned_; }
  // The calling thread's hub (no error set either way).
  bool is_current() const;

  // True when the caller runs on this hub's thread (in this process, while
  // the thread lives); otherwise sets a RuntimeError and returns false.
  bool CheckThread() const;

  // Runs callable(*args) in a greenlet of the hub's pool. Returns false with
  // a Python error set on failure.
  bool Spawn(BorrowedObject callable, BorrowedObject args);
  // Runs every callable of `callables` (a list) with no arguments, each in
  // a pool greenlet; a callable that cannot be started is reported as
  // unraisable. Never fails.
  void SpawnEach(OwnedObject callables) noexcept;
  // Starts callable(*args) in a new greenlet of its own (parent: the hub),
  // which the caller may later Kill(). New reference or NULL.
  PyObject* SpawnGreenlet(BorrowedObject callable, BorrowedObject args);
  // Has the hub throw `exc` into greenlet `g` on its next pass (a no-op if
  // g has ended by then). The caller keeps running.
  bool Kill(BorrowedObject g, BorrowedObject exc);
  static Hub* OwnerOf(BorrowedObject g);
  // Work another thread hands to this hub's engine objects (close a
  // channel's engine, free a call): Run() in the hub's thread, from its
  // loop, not in a greenlet.
  class Task : public ReadyNode {
   public:
    virtual ~Task() = default;
    virtual void Run() noexcept = 0;
  };
  // From another thread, with the GIL: queues `task` for the hub's next
  // pass. A hub that never runs again (its thread ended, a forked parent's)
  // frees it here without running it.
  void PostThreadsafe(std::unique_ptr<Task> task) noexcept;
  // Is the caller on this hub's thread, and does the hub still run? (No
  // error set either way.)
  bool OnThread() const noexcept;
  // Told once, in the ending thread, when the hub's thread has ended (after
  // its sockets were dropped): what a channel keeps per thread goes then.
  class EndListener {
   public:
    virtual void OnHubEnded() noexcept = 0;
    ListLink<EndListener> end_link;

   protected:
    ~EndListener() = default;
  };
  // With the GIL, from any thread. A listener must leave (Unlisten) before
  // it dies unless it has been told.
  void Listen(EndListener* l) noexcept { end_listeners_.push_back(l); }
  void Unlisten(EndListener* l) noexcept { end_listeners_.remove(l); }

  // From any thread (with the GIL): runs callable(*args) in a pool greenlet
  // of this hub, waking its loop. False with RuntimeError set when the hub's
  // thread has ended or the hub is a forked parent's. One that cannot be
  // started when the hub gets to it is reported as unraisable.
  bool SpawnThreadsafe(BorrowedObject callable, BorrowedObject args);

  // Fairness, for a greenlet that reads or writes message after message
  // without parking (messages already buffered, the send window open): it
  // calls this between messages, and once kFairSlice has passed since the
  // loop last polled it yields for one pass (IO and timers run, so do the
  // greenlets they wake), then goes on. Cheap when nothing is due: a count,
  // and a clock read every kFairEvery calls. False with a Python error set:
  // the greenlet was killed while it yielded.
  static bool GiveWay() {
    Hub* hub = Current();
    if (!hub || ++hub->give_way_calls_ < kFairEvery) return true;
    hub->give_way_calls_ = 0;
    return hub->YieldIfSliceUsed();
  }

  // A wait that another thread may end (Event.wait, Queue.get), for its
  // duration: it keeps the hub's memory alive (a waiter left parked when its
  // thread ends may still be woken, and dropped, from another thread), and
  // it tells the hub that an empty loop is not a deadlock while other
  // threads exist (the native hub then keeps polling for their wake-up;
  // gevent's loop is kept from raising LoopExit).
  class RemoteWait {
   public:
    explicit RemoteWait(Hub* hub) noexcept;
    ~RemoteWait();
    RemoteWait(const RemoteWait&) = delete;
    RemoteWait& operator=(const RemoteWait&) = delete;

   private:
    Hub* hub_;
  };

 protected:
  void Poke() noexcept override {
    if (kind_ == kGevent && !drain_pending_) RequestDrain();
  }

 private:
  friend class Waiter;
  static constexpr unsigned kFairEvery = 16;
  static constexpr double kFairSlice = 0.002;  // seconds
  bool YieldIfSliceUsed();
  // A greenlet to start or resume (switch `payload` in as its arguments),
  // or to throw `payload` into.
  struct Job final : ReadyNode {
    OwnedObject greenlet;
    OwnedObject payload;
    bool throw_into = false;
  };
  // callable(*args) from another thread, spawned when the inbox is drained.
  struct RemoteCall final : ReadyNode {
    OwnedObject callable;
    OwnedObject args;
  };

  Hub(std::unique_ptr<IoManager> io, Kind kind);
  bool Init(BorrowedObject gevent_hub);
  void Orphan();
  // The thread ended: free what can be, drop the thread's reference.
  static void ThreadEnded(PyObject* capsule) noexcept;
  void EndThread() noexcept;
  bool RegisterThreadEnd();

  void Push(ReadyNode* n, bool front = false) noexcept {
    if (front) ready_.push_front(n);
    else ready_.push_back(n);
    Poke();
  }
  ReadyNode* PopReady() noexcept { return ready_.pop_front(); }
  void Unqueue(ReadyNode* n) noexcept {
    if (n->in_inbox_) {
      inbox_.remove(n);
      n->in_inbox_ = false;
    } else {
      ready_.remove(n);
    }
  }
  void Schedule(Waiter* w) noexcept { Push(w); }
  void Unschedule(Waiter* w) noexcept { Unqueue(w); }
  void RunJob(Job* job);
  // Deletes what the queue or the inbox owns (jobs, remote calls).
  static void Discard(ReadyNode* n) noexcept;

  // The inbox (see the top of this file). Foreign thread, GIL held:
  void WakeFromOtherThread(Waiter* w) noexcept;
  void Post(ReadyNode* n) noexcept;
  // The hub's thread: the wake-up's handler drains the inbox.
  void OnWake() noexcept override;
  // Nothing here can wake anyone: if another thread may (a RemoteWait is in
  // progress and other threads exist), polls once for its wake-up (or a
  // second) and returns true; false: a real deadlock.
  bool AwaitOtherThreads();
  // After a switch from the hub came back: `result` is the new reference or
  // NULL (error set).
  void Switched(PyObject* result);

  // One poll of the loop, counted for the monitor.
  bool Poll(bool nowait) {
    polling_ = true;
    ++steps_;
    bool alive = io_->RunOnce(nowait);
    polling_ = false;
    ++steps_;
    polled_at_ = MonotonicNow();
    return alive;
  }
  // Switches into a greenlet the ready queue holds (a step for the monitor).
  PyObject* SwitchInto(PyObject* g, PyObject* args, bool throw_into);

  void RequestDrain() noexcept;
  static PyObject* RunDrain(PyObject* capsule, PyObject* unused);
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
  PyObject* Work(PyObject* job);
  void RunReady();
  // Queues the pending Python error to be thrown into the main greenlet.
  void ThrowIntoMain() noexcept;

  unsigned long thread_id_;
  Kind kind_;
  bool orphaned_ = false;
  bool ended_ = false;  // its thread has ended
  bool drain_pending_ = false;
  bool polling_inline_ = false;      // a waiter runs the loop (PollInline)
  OwnedObject hub_greenlet_;         // ours, or gevent's hub
  OwnedObject gevent_switch_;        // gevent: hub.switch
  OwnedObject gevent_run_callback_;  // gevent: hub.loop.run_callback
  OwnedObject drain_fn_;
  OwnedObject main_greenlet_;
  OwnedObject capsule_;
  OwnedObject run_hub_fn_;
  OwnedObject run_worker_fn_;
  OwnedObject wake_token_;  // what the hub switches into a waiter with
  OwnedObject wake_args_;   // (wake_token_,)
  IntrusiveList<ReadyNode, &ReadyNode::ready_link_> ready_;
  IntrusiveList<ReadyNode, &ReadyNode::ready_link_> inbox_;           // guarded by the GIL
  IntrusiveList<EndListener, &EndListener::end_link> end_listeners_;  // guarded by the GIL
  bool signalled_ = false;  // a wake-up is on its way (the inbox is drained soon)
  size_t remote_waits_ = 0;
  double polled_at_ = 0;  // when the loop last polled (GiveWay)
  unsigned give_way_calls_ = 0;
  std::unique_ptr<Timer> recheck_;  // AwaitOtherThreads() polls a second at most
  std::vector<OwnedObject> idle_workers_;
  uint64_t steps_ = 0;    // loop passes and switches (the monitor's)
  bool polling_ = false;  // in the loop's poll
  OwnedObject running_;   // monitored: the greenlet last switched to
};

}  // namespace grpc_green
