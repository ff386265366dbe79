// The native IO manager: a libev loop of grpc_green's own.
#include <ev.h>
#include <time.h>

#include "IoManager.hpp"

namespace grpc_green {

double MonotonicNow() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

namespace {

class NativeIo final : public IoWatcher {
 public:
  NativeIo(struct ev_loop* loop, int fd, IoHandler* handler) : loop_(loop), handler_(handler) {
    ev_io_init(&w_, OnEvent, fd, 0);
    w_.data = this;
  }
  ~NativeIo() override { ev_io_stop(loop_, &w_); }

  bool Set(int events) override {
    if (events == events_) return true;
    events_ = events;
    ev_io_stop(loop_, &w_);
    if (!events) return true;
    ev_io_set(&w_, w_.fd,
              ((events & kIoRead) ? EV_READ : 0) | ((events & kIoWrite) ? EV_WRITE : 0));
    ev_io_start(loop_, &w_);
    return true;
  }

 private:
  static void OnEvent(struct ev_loop*, ev_io* w, int revents) noexcept {
    auto* self = static_cast<NativeIo*>(w->data);
    self->handler_->OnIo(((revents & EV_READ) ? kIoRead : 0) |
                         ((revents & EV_WRITE) ? kIoWrite : 0));
  }
  struct ev_loop* loop_;
  IoHandler* handler_;
  ev_io w_;
};

class NativeTimer final : public Timer {
 public:
  NativeTimer(struct ev_loop* loop, TimerHandler* handler) : loop_(loop), handler_(handler) {
    ev_timer_init(&w_, OnEvent, 0., 0.);
    w_.data = this;
  }
  ~NativeTimer() override { ev_timer_stop(loop_, &w_); }

  bool Start(double after) override {
    ev_timer_stop(loop_, &w_);
    // The loop's cached time may lag behind when callbacks ran long; take
    // a fresh reading so the timer never fires late.
    ev_now_update(loop_);
    ev_timer_set(&w_, after > 0 ? after : 0., 0.);
    ev_timer_start(loop_, &w_);
    return true;
  }
  void Stop() override { ev_timer_stop(loop_, &w_); }
  bool active() const override { return ev_is_active(&w_); }

 private:
  static void OnEvent(struct ev_loop*, ev_timer* w, int) noexcept {
    static_cast<NativeTimer*>(w->data)->handler_->OnTimer();
  }
  struct ev_loop* loop_;
  TimerHandler* handler_;
  ev_timer w_;
};

class NativeIoManager final : public IoManager {
 public:
  // Each hub owns a loop of its own: EVFLAG_NOSIGMASK keeps libev away from
  // the process's signal mask, EVFLAG_NOENV from the environment.
  explicit NativeIoManager(PollHooks hooks)
      : hooks_(hooks), loop_(ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV | EVFLAG_NOSIGMASK)) {
    if (loop_ && hooks_.before && hooks_.after) {
      ev_set_userdata(loop_, this);
      ev_set_loop_release_cb(loop_, Release, Acquire);
    }
  }
  ~NativeIoManager() override {
    if (!loop_) return;
    DisableWake();
    ev_loop_destroy(loop_);
  }
  bool ok() const { return loop_ != nullptr; }

  std::unique_ptr<IoWatcher> NewIo(int fd, IoHandler* handler) override {
    return std::make_unique<NativeIo>(loop_, fd, handler);
  }
  std::unique_ptr<Timer> NewTimer(TimerHandler* handler) override {
    return std::make_unique<NativeTimer>(loop_, handler);
  }
  bool RunOnce(bool nowait) override {
    nowait_ = nowait;
    return ev_run(loop_, nowait ? EVRUN_NOWAIT : EVRUN_ONCE) != 0 || ev_pending_count(loop_) > 0;
  }

  bool EnableWake(WakeHandler* handler) override {
    if (ev_is_active(&async_)) return true;
    wake_handler_ = handler;
    ev_async_init(&async_, OnAsync);
    async_.data = this;
    ev_async_start(loop_, &async_);
    // Unreferenced: the loop is not kept alive by the wake-up alone (its
    // fd is polled all the same).
    ev_unref(loop_);
    return true;
  }
  // libev's one thread-safe call: a write to the loop's eventfd (or pipe),
  // skipped when a wake-up is already pending.
  void Signal() noexcept override { ev_async_send(loop_, &async_); }
  void DisableWake() noexcept override {
    if (!ev_is_active(&async_)) return;
    ev_ref(loop_);  // libev: re-reference an unreferenced watcher before stopping it
    ev_async_stop(loop_, &async_);
  }

 private:
  // A poll that cannot wait keeps what the hooks guard (Python's GIL): the
  // thread has work queued and goes on at once, and handing the GIL to a
  // waiting thread for a zero-timeout poll would cost this one the GIL's
  // switch interval to get it back.
  static void Release(struct ev_loop* loop) noexcept {
    auto* self = static_cast<NativeIoManager*>(ev_userdata(loop));
    self->released_ = !self->nowait_;
    if (self->released_) self->token_ = self->hooks_.before();
  }
  static void Acquire(struct ev_loop* loop) noexcept {
    auto* self = static_cast<NativeIoManager*>(ev_userdata(loop));
    if (self->released_) self->hooks_.after(self->token_);
  }
  static void OnAsync(struct ev_loop*, ev_async* w, int) noexcept {
    static_cast<NativeIoManager*>(w->data)->wake_handler_->OnWake();
  }
  PollHooks hooks_;
  void* token_ = nullptr;
  bool nowait_ = false;
  bool released_ = false;
  struct ev_loop* loop_;
  ev_async async_{};
  WakeHandler* wake_handler_ = nullptr;
};

}  // namespace

std::unique_ptr<IoManager> NewNativeIoManager(PollHooks hooks) {
  auto io = std::make_unique<NativeIoManager>(hooks);
  if (!io->ok()) return nullptr;
  return io;
}

}  // namespace grpc_green
