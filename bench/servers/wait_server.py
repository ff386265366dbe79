"""Benchmark server whose handlers wait: a slow dependency and idle streams.

Usage: wait_server.py grpc_green|grpcio_sync [--delay SECONDS]

The same servicer code runs on both; only the module behind the name `grpc`
and the way a handler waits differ (a cooperative `grpc_green.hub.sleep` on
grpc_green, `time.sleep` on a thread of the pool for grpcio). The server is
`grpc.server(futures.ThreadPoolExecutor())` with the executor's default
max_workers (min(32, CPUs + 4)), as a grpcio user writes it; grpc_green
accepts and ignores the pool.

Methods (the types of bench/echo.proto):
  /bench.Echo/Unary       echoes the payload at once (warm-up, connecting)
  /bench.Slow/Wait        waits --delay seconds (default 1), then echoes
  /bench.Echo/BidiStream  echoes each request message; between messages the
                          handler blocks on the request iterator (an idle
                          open stream)

Prints the bound port on the first line of stdout, then a line
`STATS {"active": ..., "max_active": ..., "started": ..., "finished": ...}`
whenever the counts of handlers running change (checked every 0.1 s), and
serves until killed. RLIMIT_NOFILE is raised to its hard limit.
bench/concurrency.py and bench/memory.py generate bench/_gen/echo_pb2.py
before starting it.
"""

import json
import os
import resource
import sys
import threading
from concurrent import futures

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "_gen"))
sys.path.insert(0, os.path.join(_HERE, "..", ".."))  # repo root (in-place build)

IMPL = sys.argv[1] if len(sys.argv) > 1 else None
if IMPL == "grpc_green":
    import grpc_green as grpc
    import grpc_green.hub

    wait = grpc_green.hub.sleep

    def background(fn):
        grpc_green.hub.spawn(fn)
elif IMPL == "grpcio_sync":
    import time

    import grpc

    wait = time.sleep

    def background(fn):
        threading.Thread(target=fn, daemon=True).start()
else:
    sys.exit("usage: wait_server.py grpc_green|grpcio_sync [--delay SECONDS]")
import echo_pb2  # noqa: E402

DELAY = float(sys.argv[sys.argv.index("--delay") + 1]) if "--delay" in sys.argv else 1.0
EchoMsg = echo_pb2.EchoMsg

_lock = threading.Lock()  # grpcio's handlers run on pool threads
_stats = {"active": 0, "max_active": 0, "started": 0, "finished": 0}


def _enter():
    with _lock:
        _stats["active"] += 1
        _stats["started"] += 1
        if _stats["active"] > _stats["max_active"]:
            _stats["max_active"] = _stats["active"]


def _leave():
    with _lock:
        _stats["active"] -= 1
        _stats["finished"] += 1


def unary(request, context):
    return EchoMsg(payload=request.payload)


def slow(request, context):
    _enter()
    try:
        wait(DELAY)
        return EchoMsg(payload=request.payload)
    finally:
        _leave()


def bidi(request_iterator, context):
    _enter()
    try:
        for request in request_iterator:
            yield EchoMsg(payload=request.payload)
    finally:
        _leave()


def report():
    last = None
    while True:
        with _lock:
            now = dict(_stats)
        if now != last:
            print("STATS " + json.dumps(now, sort_keys=True), flush=True)
            last = now
        wait(0.1)


def main():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = grpc.server(futures.ThreadPoolExecutor())
    codec = dict(
        request_deserializer=EchoMsg.FromString, response_serializer=EchoMsg.SerializeToString
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(unary, **codec),
                    "BidiStream": grpc.stream_stream_rpc_method_handler(bidi, **codec),
                },
            ),
            grpc.method_handlers_generic_handler(
                "bench.Slow",
                {
                    "Wait": grpc.unary_unary_rpc_method_handler(slow, **codec),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        sys.exit("could not bind 127.0.0.1:0")
    server.start()
    print(port, flush=True)
    background(report)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
