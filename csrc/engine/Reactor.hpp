// The reactor: what the engine needs from the loop that drives it.
//
// An IoManager (watchers, timers), a clock, corked writes ("flush each
// dirty connection once per loop pass"), deferred deletion ("never free an
// object inside one of its own handlers") and the set of sockets to close
// when the loop's owner goes away (a forked child, an ended thread).
//
// No Python here. The greenlet hub (../THub.hpp) is a Reactor that also
// runs greenlets between passes; the GoogleTests drive a bare Reactor with
// RunPass().
//
// Lifetime: reference counted. The thread that runs the loop holds one
// reference, and so does every engine object that keeps a Reactor* beyond
// a call (channels, servers, calls): a channel that outlives its thread
// keeps its reactor's memory alive, though the loop never runs again.
// Connections and listeners do not hold one: they belong to a channel or
// server, or wait in the graveyard, which the reactor frees itself.
//
// MarkDirty(), Unmark(), DeferDelete() and Untrack() never allocate and
// never throw: error paths and destructors call them.
//
// Threading: a Reactor and everything attached to it belong to one thread.
#pragma once

#include <cstddef>
#include <memory>
#include <unordered_set>
#include <utility>

#include "IntrusiveList.hpp"
#include "IoManager.hpp"

namespace grpc_green {

class Reactor;

// Something with output to write at the end of the loop pass.
class Flushable {
 public:
  virtual void Flush() noexcept = 0;
  bool flush_pending() const { return flush_link_.linked; }

 protected:
  ~Flushable() = default;

 private:
  friend class Reactor;
  ListLink<Flushable> flush_link_;  // on the reactor's dirty list
};

// Owns a socket that must be closed, without a byte written, when the
// reactor's owner goes away (a forked child; a thread that ended).
class Droppable {
 public:
  virtual void Drop() noexcept = 0;

 protected:
  ~Droppable() = default;
};

// Deleted by the reactor between passes, never inside a handler.
class Deferred {
 public:
  virtual ~Deferred() = default;

 private:
  friend class Reactor;
  Deferred* next_dead_ = nullptr;
};

class Reactor {
 public:
  explicit Reactor(std::unique_ptr<IoManager> io) : io_(std::move(io)) {}
  virtual ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  IoManager& io() { return *io_; }
  double Now() const { return MonotonicNow(); }

  void MarkDirty(Flushable* f) noexcept {
    if (f->flush_pending()) return;
    dirty_.push_back(f);
    Poke();
  }
  void Unmark(Flushable* f) noexcept { dirty_.remove(f); }
  // Frees `d` between passes: at the next reap, or one pass later when
  // others were woken before it died (they may still hold it).
  void DeferDelete(Deferred* d) noexcept {
    if (stopped_) {  // no pass will come: nothing can be inside a handler
      delete d;
      return;
    }
    d->next_dead_ = graveyard_;
    graveyard_ = d;
    Poke();
  }
  void Track(Droppable* d) { droppable_.insert(d); }
  void Untrack(Droppable* d) noexcept { droppable_.erase(d); }

  // Flushes every dirty Flushable (what their Flush() marks meanwhile too).
  void FlushDirty() noexcept;
  // Frees the dead. `others_ready`: woken work has not run yet, so what
  // died this pass waits one more.
  void ReapGraveyard(bool others_ready) noexcept;
  bool has_dirty() const { return !dirty_.empty(); }
  bool has_dead() const { return graveyard_ || graveyard_older_; }

  // One pass without greenlets: flush, reap, then poll (waiting unless
  // `nowait`). Returns false when nothing is watched. For the GoogleTests
  // and other drivers that are not the hub.
  bool RunPass(bool nowait);

  // Closes every tracked socket without writing (a forked child, an ended
  // thread): the owners see closed connections and listeners.
  void DropAll() noexcept;
  // The loop will never run again (its thread ended): sockets are dropped,
  // the dead freed, and what dies from now on is freed at once. The
  // reactor itself lives on while engine objects still refer to it.
  void Stop() noexcept;

  void Ref() noexcept { ++refs_; }
  void Unref() noexcept {
    if (--refs_ == 0) delete this;
  }

 protected:
  // Something was queued for the pass: the gevent hub asks its loop for one.
  virtual void Poke() noexcept {}
  std::unique_ptr<IoManager> io_;

 private:
  static void FreeAll(Deferred* dead) noexcept;

  size_t refs_ = 1;  // the creator's
  bool stopped_ = false;
  IntrusiveList<Flushable, &Flushable::flush_link_> dirty_;
  bool flushing_ = false;
  Deferred* graveyard_ = nullptr;        // deferred this pass
  Deferred* graveyard_older_ = nullptr;  // and the pass before
  std::unordered_set<Droppable*> droppable_;
};

// A counted reference to a Reactor.
class ReactorRef {
 public:
  ReactorRef() = default;
  explicit ReactorRef(Reactor* r) : r_(r) {
    if (r_) r_->Ref();
  }
  // Takes over the creator's reference of a new Reactor.
  static ReactorRef Adopt(Reactor* r) {
    ReactorRef ref;
    ref.r_ = r;
    return ref;
  }
  ReactorRef(const ReactorRef& o) : ReactorRef(o.r_) {}
  ReactorRef(ReactorRef&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  ReactorRef& operator=(ReactorRef o) noexcept {
    std::swap(r_, o.r_);
    return *this;
  }
  ~ReactorRef() {
    if (r_) r_->Unref();
  }
  Reactor* get() const { return r_; }
  Reactor* operator->() const { return r_; }
  explicit operator bool() const { return r_ != nullptr; }

 private:
  Reactor* r_ = nullptr;
};

}  // namespace grpc_green
