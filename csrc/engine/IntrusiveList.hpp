// A doubly linked list threaded through its elements: pushing and removing
// never allocate and never throw, so error paths and destructors may do it.
//
// An element type holds one ListLink per list it can be on; the list names
// that member: IntrusiveList<Flushable, &Flushable::flush_link_>. An
// element is on at most one list per link, and must leave it (remove())
// before it dies.
#pragma once

#include <cstddef>

namespace grpc_green {

template <class T>
struct ListLink {
  T* prev = nullptr;
  T* next = nullptr;
  bool linked = false;
};

template <class T, ListLink<T> T::*Link>
class IntrusiveList {
 public:
  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }
  T* front() const { return head_; }

  void push_back(T* t) noexcept {
    ListLink<T>& l = t->*Link;
    l.prev = tail_;
    l.next = nullptr;
    l.linked = true;
    if (tail_) (tail_->*Link).next = t;
    else head_ = t;
    tail_ = t;
    ++size_;
  }
  void push_front(T* t) noexcept {
    ListLink<T>& l = t->*Link;
    l.prev = nullptr;
    l.next = head_;
    l.linked = true;
    if (head_) (head_->*Link).prev = t;
    else tail_ = t;
    head_ = t;
    ++size_;
  }
  // A no-op for an element that is not on the list.
  void remove(T* t) noexcept {
    ListLink<T>& l = t->*Link;
    if (!l.linked) return;
    if (l.prev) (l.prev->*Link).next = l.next;
    else head_ = l.next;
    if (l.next) (l.next->*Link).prev = l.prev;
    else tail_ = l.prev;
    l.prev = l.next = nullptr;
    l.linked = false;
    --size_;
  }
  T* pop_front() noexcept {
    T* t = head_;
    if (t) remove(t);
    return t;
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  size_t size_ = 0;
};

}  // namespace grpc_green
