"""A real grpcio server for interop tests (always runs in its own process).

    python grpcio_server.py [ADDRESS]        (default 127.0.0.1:0)

Serves grpc_green.testing.TestService (Echo; NotImplementedByServicer is left
to the generated base class) and the bytes service grpc_green.testing.Raw.
Prints ``PORT <n>`` on stdout once it is serving. It exits when its stdin is
closed (the test process died or closed the pipe), on SIGTERM/SIGKILL, or —
on purpose — when an EchoRequest asks it to ``die`` (os._exit in the middle
of the call, so the client sees the connection drop).

Keep the servicer in step with EchoServicer in tests/conftest.py.
"""

import os
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_gen"))

import grpc  # noqa: E402  (real grpcio: this process is never patched)
import testing_pb2  # noqa: E402
import testing_pb2_grpc  # noqa: E402

STATUS_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def metadata_to_headers(metadata):
    return [
        testing_pb2.Header(key=k, binary_value=v) if k.endswith("-bin")
        else testing_pb2.Header(key=k, value=v)
        for k, v in metadata
    ]


def headers_to_metadata(headers):
    return tuple((h.key, h.binary_value if h.key.endswith("-bin") else h.value) for h in headers)


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

        initial = list(headers_to_metadata(request.initial_metadata))
        trailing = list(headers_to_metadata(request.trailing_metadata))
        if request.echo_metadata:
            for key, value in metadata:
                if key.startswith("x-echo-"):
                    initial.append(("initial-" + key, value))
                    trailing.append(("trailing-" + key, value))
        if initial:
            context.send_initial_metadata(tuple(initial))
        if trailing:
            context.set_trailing_metadata(tuple(trailing))

        if request.raise_exception:
            raise RuntimeError(request.exception_message)
        if request.status_code:
            code = STATUS_BY_VALUE[request.status_code]
            if request.use_abort:
                context.abort(code, request.status_details)
            context.set_code(code)
            context.set_details(request.status_details)

        return testing_pb2.EchoResponse(
            payload=request.payload,
            message=request.message,
            has_time_remaining=remaining is not None,
            time_remaining=remaining if remaining is not None else 0.0,
            peer=peer,
            received_metadata=metadata_to_headers(metadata),
        )


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
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(
            "grpc_green.testing.Raw",
            {
                "Identity": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
                "Upper": grpc.unary_unary_rpc_method_handler(
                    lambda request, context: request.upper()),
            },
        ),
    ))
    port = server.add_insecure_port(address)
    server.start()
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    print("PORT %d" % port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
