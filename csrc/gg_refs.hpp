// Reference ownership and the exception barrier of the Python-facing side
// (THub, TGeventIo and the Py* bindings; the engine in engine/ has no
// Python at all).
//
// Ownership rules:
//  - OwnedObject holds exactly one strong reference and releases it when it
//    dies. Build one with OwnedObject::consuming(p) (takes over a new
//    reference, e.g. a C API result) or OwnedObject::owning(p) (adds a
//    reference to a borrowed pointer). There is no implicit conversion to
//    PyObject*: get() lends it, relinquish() hands the reference on.
//  - BorrowedObject is a PyObject* that owns nothing, for parameters and
//    back pointers whose referent is kept alive by someone else (the type
//    says who in a comment).
//  - A raw PyObject* in this code base is always borrowed, and never a
//    member: members are OwnedObject or BorrowedObject. C structs of Python
//    objects construct their C++ members in tp_new (placement new) and
//    destroy them in tp_dealloc.
//
// Errors: a Python error set by the C API travels through C++ code as the
// exception PyErrOccurred (Require() throws it for a NULL or -1 result).
// No C++ exception crosses a C frame: every function Python calls is
// wrapped by GG_ENTRY (or catches itself), which turns PyErrOccurred into
// the NULL/-1 return, std::bad_alloc into MemoryError, and any other
// exception into RuntimeError. Code that throws never switches greenlets
// while it unwinds.
#pragma once

#include <Python.h>

#include <exception>
#include <new>
#include <type_traits>
#include <utility>

namespace grpc_green {

// "A Python error is set."
class PyErrOccurred {};

class BorrowedObject {
 public:
  BorrowedObject() = default;
  BorrowedObject(PyObject* p) : p_(p) {}  // NOLINT: any PyObject* is borrowed
  PyObject* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  PyObject* p_ = nullptr;
};

class OwnedObject {
 public:
  OwnedObject() = default;
  static OwnedObject consuming(PyObject* p) { return OwnedObject(p); }
  static OwnedObject owning(BorrowedObject p) {
    Py_XINCREF(p.get());
    return OwnedObject(p.get());
  }
  OwnedObject(const OwnedObject& o) : p_(o.p_) { Py_XINCREF(p_); }
  OwnedObject(OwnedObject&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  OwnedObject& operator=(OwnedObject o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~OwnedObject() { Py_XDECREF(p_); }

  PyObject* get() const { return p_; }
  BorrowedObject borrow() const { return p_; }
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

// The Python error for the exception being handled. Call only from a
// catch block.
inline void SetPythonErrorFromException() noexcept {
  try {
    throw;
  } catch (const PyErrOccurred&) {
    if (!PyErr_Occurred())
      PyErr_SetString(PyExc_SystemError, "grpc_green: an error was reported but none is set");
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_SystemError, "grpc_green: unknown C++ exception");
  }
}

// The error return of a Python-facing function: NULL, or -1.
template <class R>
R ErrorResult() noexcept {
  if constexpr (std::is_pointer_v<R>) return nullptr;
  else return static_cast<R>(-1);
}

// Entry<F>::Call has F's signature, calls F, and turns whatever F throws
// into a Python error and F's error return.
template <auto F>
struct Entry;
template <class R, class... A, R (*F)(A...)>
struct Entry<F> {
  static R Call(A... a) noexcept {
    try {
      return F(a...);
    } catch (...) {
      SetPythonErrorFromException();
      return ErrorResult<R>();
    }
  }
};

// A static type object, every slot empty: fill in what the type has.
inline PyTypeObject EmptyTypeObject() {
  PyTypeObject t{};
  PyVarObject head = {PyObject_HEAD_INIT(nullptr) 0};
  t.ob_base = head;
  return t;
}

}  // namespace grpc_green

// A function Python calls, behind the exception barrier.
#define GG_ENTRY(fn) (&::grpc_green::Entry<fn>::Call)
// The same, cast for a PyMethodDef.
#define GG_METHOD(fn) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(GG_ENTRY(fn)))
