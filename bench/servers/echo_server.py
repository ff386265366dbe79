"""Benchmark server: unary echo on bench.Echo/Unary, one script for every
Python server of the server benchmark (bench/run.py).

Usage: echo_server.py MODE, MODE one of

  grpc_green          import grpc_green as grpc; grpc_green's native hub
                      (run.py also sets GRPC_GREEN_HUB=native; checked)
  grpc_green_gevent   gevent.monkey.patch_all(grpc=True), then `import grpc`,
                      which is grpc_green, on gevent's hub (checked)
  grpcio_sync         import grpc (grpcio); ThreadPoolExecutor(16)
  grpcio_gevent       gevent.monkey.patch_all(), import grpc (grpcio),
                      grpc.experimental.gevent.init_gevent(); ThreadPoolExecutor(16)
  grpcio_aio          import grpc (grpcio); grpc.aio.server(), async handler

The four sync modes run the same servicer and server code below; only what
stands behind the name `grpc` differs (and gevent's patching). grpcio_aio runs
the same handler as a coroutine.

Prints the bound port on the first line of stdout and a JSON line describing
what runs (module, version, hub) on the second, then serves until killed.
bench/run.py generates bench/_gen/echo_pb2.py before starting it; to run by
hand:  python -m grpc_tools.protoc -Ibench --python_out=bench/_gen bench/echo.proto
"""

import os
import sys

MODES = ("grpc_green", "grpc_green_gevent", "grpcio_sync", "grpcio_gevent", "grpcio_aio")
MODE = sys.argv[1] if len(sys.argv) == 2 else None
if MODE not in MODES:
    sys.exit("usage: echo_server.py " + "|".join(MODES))

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "_gen"))
if MODE.startswith("grpc_green"):
    # The repository root: grpc_green built in place, and its egg-info, whose
    # gevent plugin entry point patch_all(grpc=True) finds. Left out for
    # grpcio, so that gevent's patch_all() does not even import grpc_green.
    sys.path.insert(0, os.path.join(_HERE, "..", ".."))

# gevent's patching comes first, before anything imports threading or socket.
if MODE == "grpc_green_gevent":
    from gevent import monkey

    monkey.patch_all(grpc=True)  # the grpc_green plugin: `import grpc` is grpc_green
elif MODE == "grpcio_gevent":
    from gevent import monkey

    monkey.patch_all()

import json  # noqa: E402
from concurrent import futures  # noqa: E402

if MODE == "grpc_green":
    import grpc_green as grpc
else:
    import grpc
if MODE == "grpcio_gevent":
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
import echo_pb2  # noqa: E402


def unary(request, context):
    return echo_pb2.EchoMsg(payload=request.payload)


async def unary_async(request, context):
    return echo_pb2.EchoMsg(payload=request.payload)


def generic_handler(behaviour):
    return grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=echo_pb2.EchoMsg.FromString,
                response_serializer=echo_pb2.EchoMsg.SerializeToString,
            )
        },
    )


def describe():
    """What really runs: checked here, reported to run.py on stdout line 2."""
    info = {
        "mode": MODE,
        "grpc_module": grpc.__name__,
        "version": getattr(grpc, "__version__", None),
        "hub": None,
    }
    if MODE.startswith("grpc_green"):
        import grpc_green.hub

        info["hub"] = grpc_green.hub.kind()
        want = "gevent" if MODE == "grpc_green_gevent" else "native"
        if grpc.__name__ != "grpc_green":
            sys.exit("%s: `grpc` is %s (%s), not grpc_green" % (MODE, grpc.__name__, grpc.__file__))
        if info["hub"] != want:
            sys.exit("%s: grpc_green runs on the %s hub, not %s" % (MODE, info["hub"], want))
    else:
        if grpc.__name__ != "grpc" or "grpc_green" in sys.modules:
            sys.exit("%s: `grpc` is not grpcio (%s)" % (MODE, grpc.__file__))
        info["hub"] = {"grpcio_gevent": "gevent (init_gevent)", "grpcio_aio": "asyncio"}.get(MODE)
    if MODE.endswith("gevent"):
        import gevent

        info["gevent"] = gevent.__version__
        info["gevent_threadpool_maxsize"] = gevent.get_hub().threadpool.maxsize
    return info


def announce(port):
    if not port:
        sys.exit("could not bind 127.0.0.1:0")
    print(port, flush=True)
    print(json.dumps(describe()), flush=True)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((generic_handler(unary),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    announce(port)
    server.wait_for_termination()


async def main_aio():
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((generic_handler(unary_async),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    announce(port)
    await server.wait_for_termination()


if __name__ == "__main__":
    if MODE == "grpcio_aio":
        import asyncio

        asyncio.run(main_aio())
    else:
        main()
