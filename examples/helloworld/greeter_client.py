"""The Python implementation of the gRPC helloworld.Greeter client, on grpc_green.

The same program as grpcio's examples/python/helloworld/greeter_client.py:
after grpc_green.monkey.patch_grpc(), ``import grpc`` (here and inside the
generated helloworld_pb2_grpc) is grpc_green.

    python greeter_client.py [TARGET]    (default localhost:50051)
"""

import logging
import sys

import grpc_green.monkey

grpc_green.monkey.patch_grpc()

import grpc  # noqa: E402  (grpc_green under grpcio's name)
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402

NAMES = ("you", "world", "grpc_green")


def run(target="localhost:50051"):
    print("Will try to greet world ...")
    with grpc.insecure_channel(target) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        for name in NAMES:
            response = stub.SayHello(helloworld_pb2.HelloRequest(name=name), timeout=10)
            print("Greeter client received: " + response.message)


if __name__ == "__main__":
    logging.basicConfig()
    run(sys.argv[1] if len(sys.argv) > 1 else "localhost:50051")
