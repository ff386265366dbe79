#include "PyMetadata.hpp"

#include "gg_refs.hpp"

namespace grpc_green {

// Made at module init; kept for the life of the process.
PyObject* InvalidMetadataError = nullptr;

bool AddMetadataTypes(PyObject* module) {
  if (!InvalidMetadataError) {
    InvalidMetadataError =
        PyErr_NewException("grpc_green._core.InvalidMetadataError", PyExc_ValueError, nullptr);
    if (!InvalidMetadataError) return false;
  }
  return PyModule_AddObjectRef(module, "InvalidMetadataError", InvalidMetadataError) == 0;
}

namespace {

bool ValueBytes(PyObject* value, std::string* out) {
  if (PyBytes_Check(value)) {
    out->assign(PyBytes_AS_STRING(value), static_cast<size_t>(PyBytes_GET_SIZE(value)));
    return true;
  }
  if (PyUnicode_Check(value)) {
    Py_ssize_t n;
    const char* s = PyUnicode_AsUTF8AndSize(value, &n);
    if (!s) return false;
    out->assign(s, static_cast<size_t>(n));
    return true;
  }
  PyErr_Format(PyExc_TypeError, "metadata value must be str or bytes, not %.100s",
               Py_TYPE(value)->tp_name);
  return false;
}

// One (key, value) pair, validated, onto `out`.
bool AppendPair(PyObject* pair_in, Headers* out) {
  OwnedObject pair = OwnedObject::owning(pair_in);
  if (!(PyTuple_Check(pair.get()) && PyTuple_GET_SIZE(pair.get()) == 2)) {
    // Any other sequence of two (this may run the object's own code).
    pair = OwnedObject::consuming(PySequence_Tuple(pair.get()));
    if (!pair || PyTuple_GET_SIZE(pair.get()) != 2) {
      PyErr_Clear();
      PyErr_SetString(InvalidMetadataError,
                      "metadata was invalid: each item must be a (key, value) pair");
      return false;
    }
  }
  PyObject* key = PyTuple_GET_ITEM(pair.get(), 0);  // borrowed from `pair`
  PyObject* value = PyTuple_GET_ITEM(pair.get(), 1);
  std::string k, v;
  if (!PyUnicode_Check(key) && !PyBytes_Check(key)) {
    PyErr_Format(PyExc_TypeError, "metadata key must be str, not %.100s", Py_TYPE(key)->tp_name);
    return false;
  }
  if (!ValueBytes(key, &k) || !ValueBytes(value, &v)) return false;
  if (!IsValidMetadataKey(k)) {
    PyErr_Format(InvalidMetadataError,
                 "metadata was invalid: key '%s' is not a legal metadata key "
                 "(lowercase letters, digits, '-', '_' and '.')",
                 k.c_str());
    return false;
  }
  if (IsReservedHeader(k)) {
    PyErr_Format(InvalidMetadataError, "metadata was invalid: key '%s' is reserved", k.c_str());
    return false;
  }
  if (IsBinaryHeader(k)) {
    if (!PyBytes_Check(value)) {
      PyErr_Format(PyExc_TypeError, "Binary metadata key=\"%s\" expected bytes, got %R", k.c_str(),
                   reinterpret_cast<PyObject*>(Py_TYPE(value)));
      return false;
    }
    v = Base64Encode(v);
  } else if (!IsValidMetadataValue(v)) {
    PyErr_Format(InvalidMetadataError,
                 "metadata was invalid: value of key '%s' must be printable ASCII "
                 "(use a key ending in '-bin' for binary values)",
                 k.c_str());
    return false;
  }
  out->emplace_back(std::move(k), std::move(v));
  return true;
}

}  // namespace

bool AppendMetadata(PyObject* metadata, Headers* out) {
  if (!metadata || metadata == Py_None) return true;
  // A snapshot, as grpcio takes one: a pair's own code may change a list
  // while it is read.
  OwnedObject seq = OwnedObject::owning(metadata);
  if (!PyTuple_Check(metadata)) {
    seq = OwnedObject::consuming(PySequence_Tuple(metadata));
    if (!seq) {
      if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "metadata must be a sequence of (key, value) pairs");
      }
      return false;
    }
  }
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seq.get()); ++i) {
    if (!AppendPair(PyTuple_GET_ITEM(seq.get(), i), out)) return false;
  }
  return true;
}

namespace {
// What the application sees: user metadata plus user-agent (as grpcio).
bool Surfaced(const std::string& key) { return !IsReservedHeader(key) || key == "user-agent"; }

OwnedObject ValueToPython(const Header& h) {
  if (IsBinaryHeader(h.first)) {
    std::string decoded;
    const std::string& bytes = Base64Decode(h.second, &decoded) ? decoded : h.second;
    return OwnedObject::consuming(
        PyBytes_FromStringAndSize(bytes.data(), static_cast<Py_ssize_t>(bytes.size())));
  }
  return OwnedObject::consuming(
      PyUnicode_DecodeUTF8(h.second.data(), static_cast<Py_ssize_t>(h.second.size()), "replace"));
}
}  // namespace

PyObject* MetadataToPython(const Headers* headers) {
  if (!headers) return PyTuple_New(0);
  size_t count = 0;
  for (auto& h : *headers)
    if (Surfaced(h.first)) ++count;
  OwnedObject result = OwnedObject::consuming(PyTuple_New(static_cast<Py_ssize_t>(count)));
  if (!result) return nullptr;
  Py_ssize_t i = 0;
  for (auto& h : *headers) {
    if (!Surfaced(h.first)) continue;
    OwnedObject key = OwnedObject::consuming(
        PyUnicode_DecodeLatin1(h.first.data(), static_cast<Py_ssize_t>(h.first.size()), nullptr));
    OwnedObject value = ValueToPython(h);
    if (!key || !value) return nullptr;
    PyObject* pair = PyTuple_Pack(2, key.get(), value.get());
    if (!pair) return nullptr;
    PyTuple_SET_ITEM(result.get(), i++, pair);
  }
  return result.relinquish();
}

}  // namespace grpc_green
