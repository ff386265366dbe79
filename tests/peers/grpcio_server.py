"""A real grpcio server for interop tests (always runs in its own process).

    python grpcio_server.py [ADDRESS]        (default 127.0.0.1:0)

Serves grpc_green.testing.TestService (Echo; NotImplementedByServicer is left
to the generated base class) and the bytes services grpc_green.testing.Raw
and grpc_green.testing.Threads (tests/threads_service.py).
Prints ``PORT <n>`` on stdout once it is serving. It exits when its stdin is
closed (the test process died or closed the pipe), on SIGTERM/SIGKILL, or —
on purpose — when an EchoRequest asks it to ``die`` (os._exit in the middle
of the call, so the client sees the connection drop).

Its answers come from tests/echo_behaviour.py, shared with the in-process servicer.
"""

import os
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_gen"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # echo_behaviour

import grpc  # real grpcio: this process is never patched
import testing_pb2
import testing_pb2_grpc
import threads_service
from echo_behaviour import respond


class EchoServicer(testing_pb2_grpc.TestServiceServicer):
    def Echo(self, request, context):
        metadata = tuple(context.invocation_metadata())
        peer = context.peer()
        remaining = context.time_remaining()
        if request.die:
            # Let the request's own frames settle, then vanish mid-call: no
            # response, no trailers, no GOAWAY — the socket just closes.
            time.sleep(0.05)
            os._exit(1)
        if request.sleep_seconds > 0:
            end = time.monotonic() + request.sleep_seconds
            while context.is_active() and time.monotonic() < end:
                time.sleep(min(0.01, max(0.0, end - time.monotonic())))
            if not context.is_active():
                return testing_pb2.EchoResponse()

        return respond(grpc, request, context, metadata, peer, remaining)


def _exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    testing_pb2_grpc.add_TestServiceServicer_to_server(EchoServicer(), server)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "grpc_green.testing.Raw",
                {
                    "Identity": grpc.unary_unary_rpc_method_handler(
                        lambda request, context: request
                    ),
                    "Upper": grpc.unary_unary_rpc_method_handler(
                        lambda request, context: request.upper()
                    ),
                },
            ),
            threads_service.handler(grpc, time.sleep),
        )
    )
    port = server.add_insecure_port(address)
    server.start()
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    print("PORT %d" % port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
