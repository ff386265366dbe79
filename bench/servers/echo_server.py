"""Benchmark server: unary echo on bench.Echo/Unary, on grpcio or grpc_green.

Usage: echo_server.py grpc_green|grpcio_sync. The same servicer code runs on
both; only the module behind the name `grpc` differs.


Prints the bound port on the first line of stdout, then serves until killed.
bench/run.py generates bench/_gen/echo_pb2.py before starting it; to run by
hand:  python -m grpc_tools.protoc -Ibench --python_out=bench/_gen bench/echo.proto

"""
import os
import sys
from concurrent import futures

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "_gen"))
sys.path.insert(0, os.path.join(_HERE, "..", ".."))  # repo root (in-place build)

if sys.argv[1:] == ["grpc_green"]:
    import grpc_green as grpc  # noqa: E402
elif sys.argv[1:] == ["grpcio_sync"]:
    import grpc  # noqa: E402
else:
    sys.exit("usage: echo_server.py grpc_green|grpcio_sync")
import echo_pb2  # noqa: E402


def unary(request, context):
    return echo_pb2.EchoMsg(payload=request.payload)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=echo_pb2.EchoMsg.FromString,
                response_serializer=echo_pb2.EchoMsg.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        sys.exit("could not bind 127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
