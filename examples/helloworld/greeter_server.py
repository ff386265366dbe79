"""The Python implementation of the gRPC helloworld.Greeter server, on grpc_green.

The same program as grpcio's examples/python/helloworld/greeter_server.py:
after grpc_green.monkey.patch_grpc(), ``import grpc`` (here and inside the
generated helloworld_pb2_grpc) is grpc_green.

    python greeter_server.py [PORT]      (default 50051; 0 picks a free port)

Needs helloworld_pb2.py / helloworld_pb2_grpc.py next to it (run_demo.py
generates them) and grpc_green importable (installed, or the repository root
on PYTHONPATH).
"""

import logging
import sys
from concurrent import futures

import grpc_green.monkey

grpc_green.monkey.patch_grpc()

import grpc  # noqa: E402  (grpc_green under grpcio's name)
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message="Hello, %s!" % request.name)


def serve(port="50051"):
    # grpcio runs handlers on this pool; grpc_green accepts it for
    # compatibility and runs every RPC on a greenlet instead (no threads).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    bound_port = server.add_insecure_port("[::]:" + port)
    server.start()
    print("Server started, listening on %d" % bound_port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    logging.basicConfig()
    serve(sys.argv[1] if len(sys.argv) > 1 else "50051")
