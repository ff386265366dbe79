"""Benchmark server: unary echo on bench.Echo/Unary on pygrpc-native
(`pygrpc_native.server()`, a grpcio-compatible server whose HTTP/2 and gRPC
work runs in Rust on a tokio runtime; handlers stay in Python). The server
benchmark's row `pygrpc_native` (bench/run.py).

Usage: echo_server_pygrpc_native.py

The same handler as bench/servers/echo_server.py (a new EchoMsg carrying the
request's payload) with the same protobuf serializers, and the same handler
executor as its grpcio_sync mode, ThreadPoolExecutor(max_workers=16).
The server is pygrpc_native.Server, the class pygrpc_native.server() returns,
built directly to set its one extra argument: io_threads=1, one tokio I/O
thread (HTTP/2 and gRPC framing) for the one core the server gets;
pygrpc_native.server() takes no such argument and always starts 2. Besides
it: pygrpc-native's dispatch thread (takes batches of calls from the Rust
side and submits them to the executor), the main thread, the 16 workers.
run.py confines the process, all its threads, to one core with taskset, as
it does every other server.

The method is registered as grpcio-tools (1.64 or later) generated code
registers it: the generic handler and add_registered_method_handlers(). That
matters here: pygrpc-native serves natively only methods added with
add_registered_method_handlers(); a method known only from a generic handler
goes to a grpcio server that pygrpc-native starts behind it on a Unix socket.
The script checks after start() that no such fallback server runs, i.e. that
bench.Echo/Unary is served by the Rust front itself, and exits otherwise.

Prints the bound port on the first line of stdout and a JSON line describing
what runs on the second (as echo_server.py does), then serves until killed.
bench/run.py generates bench/_gen/echo_pb2.py before starting it; to run by
hand:  python -m grpc_tools.protoc -Ibench --python_out=bench/_gen bench/echo.proto
"""

import json
import os
import sys
from concurrent import futures

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "_gen"))
# The repository root is not put on sys.path: nothing of grpc_green is imported.

import echo_pb2  # noqa: E402
import grpc  # noqa: E402  (grpcio: pygrpc-native uses its types and helpers)
import pygrpc_native  # noqa: E402

MODE = "pygrpc_native"
MAX_WORKERS = 16  # as the grpcio sync row (echo_server.py grpcio_sync)
IO_THREADS = 1  # tokio I/O threads: one per server core (pygrpc-native's default: 2)


def unary(request, context):
    return echo_pb2.EchoMsg(payload=request.payload)


def method_handlers():
    return {
        "Unary": grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=echo_pb2.EchoMsg.FromString,
            response_serializer=echo_pb2.EchoMsg.SerializeToString,
        )
    }


def describe(server):
    """What really runs: checked here, reported to run.py on stdout line 2."""
    if "grpc_green" in sys.modules or grpc.__name__ != "grpc":
        sys.exit("%s: `grpc` is not grpcio (%s)" % (MODE, grpc.__file__))
    from pygrpc_native import _server

    if type(server) is not _server.Server:
        sys.exit("%s: the server is %r, not pygrpc_native's Server" % (MODE, type(server)))
    # Private attributes of pygrpc-native 0.5.0's Server, read only to check
    # that the call is served by the Rust front, not by a grpcio fallback.
    fallback = getattr(server, "_fallback", "unknown")
    table = [path for path, _ in getattr(server, "_table", [])]
    if fallback is not None or "/bench.Echo/Unary" not in table:
        sys.exit(
            "%s: /bench.Echo/Unary is not served natively (native methods %s, "
            "grpcio fallback server %r)" % (MODE, table, fallback)
        )
    return {
        "mode": MODE,
        "grpc_module": pygrpc_native.__name__,
        "version": pygrpc_native.__version__,
        "grpcio": grpc.__version__,
        "hub": None,
        "io_threads": IO_THREADS,
        "executor_max_workers": MAX_WORKERS,
        "native_methods": table,
        "grpcio_fallback_server": False,
    }


def main():
    server = pygrpc_native.Server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS), io_threads=IO_THREADS
    )
    handlers = method_handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    server.add_registered_method_handlers("bench.Echo", handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    if not port:
        sys.exit("could not bind 127.0.0.1:0")
    info = describe(server)
    print(port, flush=True)
    print(json.dumps(info), flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
