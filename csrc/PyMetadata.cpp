#include "PyMetadata.hpp"

#include "gg_refs.hpp"

namespace grpc_green {

PyObject* InvalidMetadataError = nullptr;

bool AddMetadataTypes(PyObject* module) {
  if (!InvalidMetadataError) {
    InvalidMetadataError = PyErr_NewException("grpc_green._core.InvalidMetadataError",
                                              PyExc_ValueError, nullptr);
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

}  // namespace

bool AppendMetadata(PyObject* metadata, Headers* out) {
  if (!metadata || metadata == Py_None) return true;
  OwnedObject seq = OwnedObject::consuming(PySequence_Fast(metadata, "metadata must be a sequence of (key, value) pairs"));
  if (!seq) return false;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.get());
  PyObject** items = PySequence_Fast_ITEMS(seq.get());
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* pair = items[i];
    PyObject *key, *value;
    OwnedObject converted;  // keeps a non-tuple pair's items alive
    if (!(PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2)) {
      converted = OwnedObject::consuming(PySequence_Tuple(pair));
      if (!converted || PyTuple_GET_SIZE(converted.get()) != 2) {
        PyErr_Clear();
        PyErr_SetString(InvalidMetadataError,
                        "metadata was invalid: each item must be a (key, value) pair");
        return false;
      }
      pair = converted.get();
    }
    key = PyTuple_GET_ITEM(pair, 0);
    value = PyTuple_GET_ITEM(pair, 1);
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
                     (PyObject*)Py_TYPE(value));
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
  }
  return true;
}

namespace {
// What the application sees: user metadata plus user-agent (as grpcio).
bool Surfaced(const std::string& key) { return !IsReservedHeader(key) || key == "user-agent"; }
}  // namespace

PyObject* MetadataToPython(const Headers& headers) {
  size_t count = 0;
  for (auto& h : headers)
    if (Surfaced(h.first)) ++count;
  OwnedObject result = OwnedObject::consuming(PyTuple_New(static_cast<Py_ssize_t>(count)));
  if (!result) return nullptr;
  Py_ssize_t i = 0;
  for (auto& h : headers) {
    if (!Surfaced(h.first)) continue;
    PyObject* key = PyUnicode_DecodeLatin1(h.first.data(), static_cast<Py_ssize_t>(h.first.size()), nullptr);
    PyObject* value;
    std::string decoded;
    if (IsBinaryHeader(h.first) && Base64Decode(h.second, &decoded)) {
      value = PyBytes_FromStringAndSize(decoded.data(), static_cast<Py_ssize_t>(decoded.size()));
    } else if (IsBinaryHeader(h.first)) {
      value = PyBytes_FromStringAndSize(h.second.data(), static_cast<Py_ssize_t>(h.second.size()));
    } else {
      value = PyUnicode_DecodeUTF8(h.second.data(), static_cast<Py_ssize_t>(h.second.size()), "replace");
    }
    if (!key || !value) {
      Py_XDECREF(key);
      Py_XDECREF(value);
      return nullptr;
    }
    PyObject* pair = PyTuple_Pack(2, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    if (!pair) return nullptr;
    PyTuple_SET_ITEM(result.get(), i++, pair);
  }
  return result.relinquish();
}

const std::string* FindHeader(const Headers& headers, std::string_view key) {
  for (auto& h : headers)
    if (h.first == key) return &h.second;
  return nullptr;
}

PyObject* DecodeDetails(const std::string& raw) {
  std::string d = PercentDecode(raw);
  return PyUnicode_DecodeUTF8(d.data(), static_cast<Py_ssize_t>(d.size()), "replace");
}

}  // namespace grpc_green
