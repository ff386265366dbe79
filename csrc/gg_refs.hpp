// Reference ownership and error plumbing for the Python-facing side.
//
// Ownership rules:
//  - OwnedObject holds exactly one strong reference and releases it when it
//    dies. Build one with OwnedObject::consuming(p) (takes over a new
//    reference, e.g. a C API result) or OwnedObject::owning(p) (adds a
//    reference to a borrowed pointer). There is no implicit conversion to
//    PyObject*: use get() to lend it, relinquish() to hand the reference on.
//  - A plain PyObject* in this code base is always borrowed.
//
// Errors: PyErrOccurred is thrown (only inside C++ code that never switches
// greenlets while it unwinds) to mean "a Python error is set"; the Python
// entry point catches it and returns NULL / -1.
#pragma once

#include <Python.h>

#include <utility>

namespace grpc_green {

class PyErrOccurred {};

class OwnedObject {
 public:
  OwnedObject() = default;
  static OwnedObject consuming(PyObject* p) { return OwnedObject(p); }
  static OwnedObject owning(PyObject* p) {
    Py_XINCREF(p);
    return OwnedObject(p);
  }
  OwnedObject(const OwnedObject& o) : p_(o.p_) { Py_XINCREF(p_); }
  OwnedObject(OwnedObject&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  OwnedObject& operator=(OwnedObject o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~OwnedObject() { Py_XDECREF(p_); }

  PyObject* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }
  PyObject* relinquish() {
    PyObject* p = p_;
    p_ = nullptr;
    return p;
  }
  void reset() { Py_CLEAR(p_); }

 private:
  explicit OwnedObject(PyObject* p) : p_(p) {}
  PyObject* p_ = nullptr;
};

// Throws PyErrOccurred when a C API call signalled an error.
inline PyObject* Require(PyObject* p) {
  if (!p) throw PyErrOccurred();
  return p;
}
inline int Require(int rv) {
  if (rv < 0) throw PyErrOccurred();
  return rv;
}
inline OwnedObject NewRef(PyObject* p) { return OwnedObject::consuming(Require(p)); }

}  // namespace grpc_green
