"""Many client greenlets against a grpc_green server, all on gevent's hub.

    python many_greenlets.py [GREENLETS [CALLS]]     (default 500 40)

A Greeter server and GREENLETS client greenlets sharing one channel, each
making CALLS unary calls and checking every reply, while a ticker greenlet
(gevent.sleep(0.01) in a loop) measures how late gevent's hub wakes it.
Checks: every call answered correctly, the hub is gevent's, handlers ran
interleaved (more than one in progress at once), and the ticker never lagged
more than 100 ms.
"""

from gevent import monkey

monkey.patch_all()

import functools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import _scenario as S  # noqa: E402

from grpc_green import monkey as green_monkey  # noqa: E402

green_monkey.patch_grpc()

import gevent  # noqa: E402
import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402

MAX_LAG = 0.100


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def __init__(self):
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def SayHello(self, request, context):
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            # Yield once so that handlers of concurrent calls overlap.
            gevent.sleep(0)
            return helloworld_pb2.HelloReply(message="hello " + request.name)
        finally:
            self.in_flight -= 1


def main(greenlets, calls):
    S.check(grpc.__name__ == "grpc_green", "import grpc is not grpc_green", grpc.__name__)
    kind = S.hub_kind()
    S.check(kind == "gevent", "hub kind", kind)

    servicer = Greeter()
    server, target = S.serve(
        functools.partial(helloworld_pb2_grpc.add_GreeterServicer_to_server, servicer)
    )
    channel = grpc.insecure_channel(target)
    stub = helloworld_pb2_grpc.GreeterStub(channel)
    answered = [0]
    wrong = []

    def caller(i):
        for j in range(calls):
            name = "%d/%d" % (i, j)
            reply = stub.SayHello(helloworld_pb2.HelloRequest(name=name), timeout=30)
            if reply.message != "hello " + name:
                wrong.append((name, reply.message))
            answered[0] += 1

    ticker = S.Ticker(0.01).start()
    started = time.monotonic()
    S.joinall([gevent.spawn(caller, i) for i in range(greenlets)], timeout=40)
    elapsed = time.monotonic() - started
    ticker.stop()
    channel.close()
    server.stop(None)

    S.check(not wrong, "wrong replies", wrong[:5])
    S.check(answered[0] == greenlets * calls, "answered", answered[0])
    S.check(servicer.calls == greenlets * calls, "server calls", servicer.calls)
    S.check(servicer.max_in_flight > 1, "handlers never overlapped", servicer.max_in_flight)
    S.check(ticker.ticks > 0, "ticker never ran")
    S.check(ticker.max_lag < MAX_LAG, "ticker lag (s)", ticker.max_lag)
    return {
        "hub": kind,
        "calls": answered[0],
        "server_calls": servicer.calls,
        "max_in_flight": servicer.max_in_flight,
        "elapsed": elapsed,
        "ticks": ticker.ticks,
        "max_lag": ticker.max_lag,
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    S.run(main, *(args + [500, 40][len(args) :]))
