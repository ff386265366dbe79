// gevent's loop as grpc_green's IO manager (see TGeventIo.cpp).
#pragma once

#include <memory>

#include "IoManager.hpp"
#include "gg_refs.hpp"

namespace grpc_green {

// gevent's loop (`hub.loop`). nullptr with a Python error set on failure.
std::unique_ptr<IoManager> NewGeventIoManager(BorrowedObject loop);

}  // namespace grpc_green
