"""A Fibonacci server (unary and server-streaming RPCs), on grpc_green.

Written against grpcio's API: after grpc_green.monkey.patch_grpc(),
``import grpc`` (here and inside the generated fibonacci_pb2_grpc) is
grpc_green, and every RPC runs on a greenlet.

    python fibonacci_server.py [PORT]    (default 50051; 0 picks a free port)

Needs fibonacci_pb2.py / fibonacci_pb2_grpc.py next to it (run_demo.py
generates them) and grpc_green importable (installed, or the repository root
on PYTHONPATH).
"""

import logging
import sys
from concurrent import futures

import grpc_green.monkey

grpc_green.monkey.patch_grpc()

import fibonacci_pb2  # noqa: E402
import fibonacci_pb2_grpc  # noqa: E402
import grpc  # noqa: E402  (grpc_green under grpcio's name)

# F(93) is the last Fibonacci number below 2**64, so 94 numbers fit in uint64.
MAX_COUNT = 94


def fibonacci(count):
    """Yields F(0), F(1), ..., F(count - 1)."""
    a, b = 0, 1
    for _ in range(count):
        yield a
        a, b = b, a + b


def check_count(request, context):
    """Aborts the RPC with INVALID_ARGUMENT unless 0 <= count <= MAX_COUNT."""
    if request.count < 0:
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, "count must not be negative, got %d" % request.count
        )
    if request.count > MAX_COUNT:
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "count must be at most %d (the numbers are uint64), got %d"
            % (MAX_COUNT, request.count),
        )


class FibonacciService(fibonacci_pb2_grpc.FibonacciServiceServicer):
    def GetSequence(self, request, context):
        check_count(request, context)
        return fibonacci_pb2.FibonacciSequence(values=fibonacci(request.count))

    def StreamSequence(self, request, context):
        check_count(request, context)
        for index, value in enumerate(fibonacci(request.count)):
            yield fibonacci_pb2.FibonacciNumber(index=index, value=value)


def serve(port="50051"):
    # grpcio runs handlers on this pool; grpc_green accepts it for
    # compatibility and runs every RPC on a greenlet instead (no threads).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    fibonacci_pb2_grpc.add_FibonacciServiceServicer_to_server(FibonacciService(), server)
    bound_port = server.add_insecure_port("[::]:" + port)
    server.start()
    print("Server started, listening on %d" % bound_port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    logging.basicConfig()
    serve(sys.argv[1] if len(sys.argv) > 1 else "50051")
