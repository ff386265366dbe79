#include "Reactor.hpp"

namespace grpc_green {

Reactor::~Reactor() {
  // The dead may unregister themselves (Untrack, Unmark) while they go,
  // and defer more.
  FreeAll(std::exchange(graveyard_older_, nullptr));
  while (graveyard_) FreeAll(std::exchange(graveyard_, nullptr));
}

void Reactor::FlushDirty() noexcept {
  // Not reentrant: the outer pass picks up what is marked meanwhile (a
  // Flush() that marks itself again runs again in this pass).
  if (flushing_) return;
  flushing_ = true;
  while (Flushable* f = dirty_.pop_front()) f->Flush();
  flushing_ = false;
}

void Reactor::ReapGraveyard(bool others_ready) noexcept {
  // The dead are freed once every greenlet woken before they died has run
  // (a woken waiter may still hold one): at once when nothing is queued,
  // otherwise after one more pass.
  FreeAll(std::exchange(graveyard_older_, nullptr));
  if (!others_ready) FreeAll(std::exchange(graveyard_, nullptr));
  else graveyard_older_ = std::exchange(graveyard_, nullptr);
}

void Reactor::FreeAll(Deferred* dead) noexcept {
  // A destructor may defer more: those go to graveyard_, for a later reap.
  while (dead) {
    Deferred* next = dead->next_dead_;
    delete dead;
    dead = next;
  }
}

bool Reactor::RunPass(bool nowait) {
  FlushDirty();
  ReapGraveyard(false);
  return io_->RunOnce(nowait);
}

void Reactor::Stop() noexcept {
  DropAll();
  stopped_ = true;
  // The dead hold references to this reactor (calls do): freeing them may
  // free it, so nothing of `this` is touched after the last one.
  Deferred* dead = std::exchange(graveyard_older_, nullptr);
  Deferred* more = std::exchange(graveyard_, nullptr);
  FreeAll(dead);
  FreeAll(more);
}

void Reactor::DropAll() noexcept {
  std::unordered_set<Droppable*> drop;
  drop.swap(droppable_);
  for (Droppable* d : drop) d->Drop();
}

}  // namespace grpc_green
