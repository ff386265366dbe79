// The IO manager: io watchers on fds, timers, a clock and one loop pass.
//
// The engine (Reactor and everything above it) is written against this
// interface only, so the event loop under it can be grpc_green's own libev
// loop (NativeIo.cpp) or gevent's loop reached through gevent's public
// watcher API (../TGeventIo.cpp).
//
// Threading: an IoManager and its watchers belong to one OS thread, with
// one exception: Signal() may be called from any thread (see there).
// Handlers are called from inside RunOnce() (or from gevent's loop); they
// must not switch greenlets (they schedule wake-ups instead) and must not
// throw: OnIo() and OnTimer() are noexcept, so every handler catches what
// its own work may throw (std::bad_alloc included) and turns it into a
// closed connection or an ended call.
#pragma once

#include <memory>

namespace grpc_green {

enum IoEvents : int { kIoRead = 1, kIoWrite = 2 };

class IoHandler {
 public:
  virtual void OnIo(int events) noexcept = 0;

 protected:
  ~IoHandler() = default;
};

class TimerHandler {
 public:
  virtual void OnTimer() noexcept = 0;

 protected:
  ~TimerHandler() = default;
};

// Called in the loop's thread, from inside its loop, after Signal().
class WakeHandler {
 public:
  virtual void OnWake() noexcept = 0;

 protected:
  ~WakeHandler() = default;
};

class IoWatcher {
 public:
  virtual ~IoWatcher() = default;
  // Watches for `events` (kIoRead | kIoWrite); 0 stops watching. False
  // when the loop refused (the handler will not hear of those events).
  virtual bool Set(int events) = 0;
  int events() const { return events_; }

 protected:
  int events_ = 0;
};

class Timer {
 public:
  virtual ~Timer() = default;
  // (Re)starts the timer to fire once, `after` seconds from now. False when
  // the loop refused it (the handler will not be called).
  virtual bool Start(double after) = 0;
  virtual void Stop() = 0;
  virtual bool active() const = 0;
};

class IoManager {
 public:
  virtual ~IoManager() = default;
  virtual std::unique_ptr<IoWatcher> NewIo(int fd, IoHandler* handler) = 0;
  virtual std::unique_ptr<Timer> NewTimer(TimerHandler* handler) = 0;
  // Runs one pass of the loop, waiting for an event unless `nowait`.
  // Returns false when no watcher is active (nothing could ever wake it).
  virtual bool RunOnce(bool nowait) = 0;
  // In a forked child: disarms every watcher and timer without touching the
  // parent's share of the loop (the owners close their fds themselves).
  virtual void Abandon() {}

  // The cross-thread wake-up (libev's ev_async; gevent's async watcher).
  // EnableWake() arms it, in the loop's thread: from then on Signal() makes
  // the loop's poll return and handler->OnWake() run in the loop's thread.
  // Signals coalesce (many before one OnWake() call it once). The wake-up
  // never keeps the loop alive by itself: RunOnce() still returns false
  // when nothing else is watched.
  virtual bool EnableWake(WakeHandler* handler) = 0;
  // Thread-safe, from any thread, but never after DisableWake() or while the
  // manager is being destroyed (the owner guarantees it). The native loop's
  // needs no lock; gevent's is a Python call, made with the GIL held.
  virtual void Signal() noexcept = 0;
  // In the loop's thread, when the loop's thread ends: no more wake-ups.
  virtual void DisableWake() noexcept = 0;
  // gevent only: while on, the wake-up keeps gevent's loop from finishing
  // (gevent's hub would raise LoopExit in a greenlet another thread is about
  // to wake). The native hub decides that itself (THub.cpp).
  virtual void KeepAliveForWake(bool) noexcept {}
};

// What the native loop calls around its blocking poll: the hub releases
// Python's GIL there so other threads run. `before` returns a token that
// `after` gets back.
struct PollHooks {
  void* (*before)() = nullptr;
  void (*after)(void*) = nullptr;
};

// grpc_green's own libev loop (one per thread). nullptr if libev cannot
// make a loop (no fds left).
std::unique_ptr<IoManager> NewNativeIoManager(PollHooks hooks = {});

// Monotonic clock, seconds.
double MonotonicNow();

}  // namespace grpc_green
