"""A Fibonacci client (unary and server-streaming RPCs), on grpc_green.

Written against grpcio's API: after grpc_green.monkey.patch_grpc(),
``import grpc`` (here and inside the generated fibonacci_pb2_grpc) is
grpc_green. It asks for the sequence in one reply and as a stream, then
shows the server rejecting counts it cannot answer.

    python fibonacci_client.py [TARGET]    (default localhost:50051)
"""

import logging
import sys

import grpc_green.monkey

grpc_green.monkey.patch_grpc()

import fibonacci_pb2  # noqa: E402
import fibonacci_pb2_grpc  # noqa: E402
import grpc  # noqa: E402  (grpc_green under grpcio's name)


def get_sequence(stub, count):
    reply = stub.GetSequence(fibonacci_pb2.FibonacciRequest(count=count), timeout=10)
    return list(reply.values)


def run(target="localhost:50051"):
    with grpc.insecure_channel(target) as channel:
        stub = fibonacci_pb2_grpc.FibonacciServiceStub(channel)

        # Unary: the whole sequence in one message.
        print("GetSequence(10): %s" % get_sequence(stub, 10))
        values = get_sequence(stub, 94)
        print("GetSequence(94): %d values, the last F(93) = %d" % (len(values), values[-1]))

        # Server streaming: one message per number, printed as they arrive.
        for number in stub.StreamSequence(fibonacci_pb2.FibonacciRequest(count=10), timeout=10):
            print("StreamSequence(10): F(%d) = %d" % (number.index, number.value))

        # The server validates the count and aborts with INVALID_ARGUMENT.
        try:
            get_sequence(stub, -1)
            print("GetSequence(-1): unexpectedly succeeded")
        except grpc.RpcError as error:
            print("GetSequence(-1) failed: %s: %s" % (error.code().name, error.details()))
        try:
            for number in stub.StreamSequence(
                fibonacci_pb2.FibonacciRequest(count=1000), timeout=10
            ):
                print("StreamSequence(1000): unexpected F(%d)" % number.index)
            print("StreamSequence(1000): unexpectedly succeeded")
        except grpc.RpcError as error:
            print("StreamSequence(1000) failed: %s: %s" % (error.code().name, error.details()))


if __name__ == "__main__":
    logging.basicConfig()
    run(sys.argv[1] if len(sys.argv) > 1 else "localhost:50051")
