// Metadata between Python and HTTP/2 headers.
//
// Python side (grpcio's convention): a sequence of (key, value) pairs, key a
// str, value a str for ordinary keys and bytes for keys ending in "-bin".
// Wire side: Headers, -bin values base64-encoded without padding.
#pragma once

#include <Python.h>

#include "H2Session.hpp"

namespace grpc_green {

// Raised for an illegal metadata key or value: _core.InvalidMetadataError,
// a ValueError. The client layer turns it into grpcio's INTERNAL
// "Invalid metadata" RpcError. Created by AddMetadataTypes() at module init.
extern PyObject* InvalidMetadataError;
bool AddMetadataTypes(PyObject* module);

// Validates and appends user metadata. Returns false with
// InvalidMetadataError (bad key or value) or TypeError (wrong type) set;
// nothing is sent then.
bool AppendMetadata(PyObject* metadata, Headers* out);

// The Python tuple of (key, value) pairs for received headers, leaving out
// the transport's and gRPC's own; an empty tuple for nullptr. New
// reference or NULL.
PyObject* MetadataToPython(const Headers* headers);

}  // namespace grpc_green
