// Metadata between Python and HTTP/2 headers.
//
// Python side (grpcio's convention): a sequence of (key, value) pairs, key a
// str, value a str for ordinary keys and bytes for keys ending in "-bin".
// Wire side: Headers, -bin values base64-encoded without padding.
#pragma once

#include <Python.h>

#include "H2Session.hpp"

namespace grpc_green {

// Validates and appends user metadata. Returns false with ValueError /
// TypeError set on an invalid key or value (nothing is sent then).
bool AppendMetadata(PyObject* metadata, Headers* out);

// Builds the Python tuple of (key, value) pairs for received headers,
// leaving out the transport's and gRPC's own. New reference or NULL.
PyObject* MetadataToPython(const Headers& headers);

// Value of a header, or nullptr.
const std::string* FindHeader(const Headers& headers, std::string_view key);

// Decoded grpc-message (percent-decoding, UTF-8 with replacement).
PyObject* DecodeDetails(const std::string& raw);

}  // namespace grpc_green
