// The IO manager: io watchers on fds, timers, a clock and one loop pass.
//
// The hub (THub.hpp) is written against this interface only, so the
// event loop under it can be grpc_green's own libev loop (native, here) or
// gevent's loop reached through gevent's public watcher API (TGeventIo.cpp).
//
// Threading: an IoManager and its watchers belong to one OS thread. Handlers
// are called from inside RunOnce(), on the hub greenlet; they must not
// switch greenlets (they schedule wake-ups instead).
#pragma once

#include <memory>

struct _object;  // PyObject, for the gevent IO manager

namespace grpc_green {

enum IoEvents : int { kIoRead = 1, kIoWrite = 2 };

class IoHandler {
 public:
  virtual void OnIo(int events) = 0;

 protected:
  ~IoHandler() = default;
};

class TimerHandler {
 public:
  virtual void OnTimer() = 0;

 protected:
  ~TimerHandler() = default;
};

class IoWatcher {
 public:
  virtual ~IoWatcher() = default;
  // Watches for `events` (kIoRead | kIoWrite); 0 stops watching.
  virtual void Set(int events) = 0;
  int events() const { return events_; }

 protected:
  int events_ = 0;
};

class Timer {
 public:
  virtual ~Timer() = default;
  // (Re)starts the timer to fire once, `after` seconds from now.
  virtual void Start(double after) = 0;
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

// grpc_green's own libev loop (one per thread).
std::unique_ptr<IoManager> NewNativeIoManager();

// gevent's loop (`hub.loop`, a borrowed Python object). nullptr with a
// Python error set on failure.
std::unique_ptr<IoManager> NewGeventIoManager(struct _object* loop);

// Monotonic clock, seconds.
double MonotonicNow();

}  // namespace grpc_green
