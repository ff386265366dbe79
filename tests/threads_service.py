"""grpc_green.testing.Threads: a bytes service for the thread tests, served
the same by grpcio (tests/peers/grpcio_server.py) and by grpc_green (in a
thread of its own, tests/test_threads.py). ``grpc`` and ``sleep`` are passed
in, so this module imports neither implementation.

- Echo: the request back.
- Count: request b"<n>,<seconds>": n responses b"0", b"1", ..., `seconds`
  apart; stops early when the call is no longer active.
- Chat: every request back, as it comes.
- Sleep: request b"<seconds>": sleeps that long (while the call is active),
  then answers b"slept".
"""

SERVICE = "grpc_green.testing.Threads"


def handler(grpc, sleep):
    def echo(request, context):
        return request

    def count(request, context):
        n, seconds = request.split(b",")
        for i in range(int(n)):
            if i and float(seconds):
                sleep(float(seconds))
            if not context.is_active():
                return
            yield b"%d" % i

    def sleep_for(request, context):
        end = float(request)
        waited = 0.0
        while waited < end and context.is_active():
            sleep(0.01)
            waited += 0.01
        return b"slept"

    def chat(request_iterator, context):
        yield from request_iterator

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Count": grpc.unary_stream_rpc_method_handler(count),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep_for),
        },
    )
