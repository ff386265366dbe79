// The extension's Python types and the few helpers they share.
#pragma once

#include <Python.h>

#include <vector>

#include "THub.hpp"

namespace grpc_green {

extern PyTypeObject PyChannel_Type;
extern PyTypeObject PyCall_Type;
extern PyTypeObject PyUnaryUnary_Type;
extern PyTypeObject PyServer_Type;
extern PyTypeObject PyServerCall_Type;
extern PyTypeObject PyEvent_Type;

// _core.Event: a flag greenlets wait on cooperatively.
struct PyEventObject {
  PyObject_HEAD
  bool set;
  std::vector<Waiter*>* waiters;
};
PyObject* NewEvent();          // new reference or NULL
void SetEvent(PyObject* event);  // wakes every waiter

}  // namespace grpc_green
