// The IO manager: io watchers on fds, timers, a clock and one loop pass.
//
// The engine (Reactor and everything above it) is written against this
// interface only, so the event loop under it can be grpc_green's own libev
// loop (NativeIo.cpp) or gevent's loop reached through gevent's public
// watcher API (../TGeventIo.cpp).
//
// Threading: an IoManager and its watchers belong to one OS thread.
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
