// The extension's Python types and the few helpers the bindings share.
#pragma once

#include <Python.h>

#include <new>
#include <vector>

#include "THub.hpp"

namespace grpc_green {

extern PyTypeObject PyChannel_Type;
extern PyTypeObject PyCall_Type;
extern PyTypeObject PyUnaryUnary_Type;
extern PyTypeObject PyServer_Type;
extern PyTypeObject PyServerCall_Type;
extern PyTypeObject PyEvent_Type;
extern PyTypeObject PyHub_Type;

// _core.Event: a flag greenlets wait on cooperatively.
struct PyEventObject {
  PyObject_HEAD
  bool set;
  std::vector<Waiter*> waiters;  // the waits in progress (their Waiters live on the heap)
};
PyObject* NewEvent();                 // new reference or NULL
PyObject* NewHubHandle(Hub* hub);     // a _core.Hub: new reference or NULL
void SetEvent(BorrowedObject event);  // wakes every waiter

// A timeout argument: None (or absent) -> -1, otherwise seconds (negative
// ones as 0 when `clamp`). False with a Python error set.
bool ParseTimeout(PyObject* arg, double* out, bool clamp = true);

// A status code argument: an int in 0..INT_MAX. False with ValueError or
// TypeError set.
bool ParseStatusCode(PyObject* arg, int* out);

// The C++ members of a Python object's struct live in memory that tp_alloc
// zeroed: construct them in tp_new, destroy them in tp_dealloc.
template <class T, class... Args>
void Construct(T* member, Args&&... args) {
  new (member) T(std::forward<Args>(args)...);
}
template <class T>
void Destroy(T* member) {
  member->~T();
}

}  // namespace grpc_green
