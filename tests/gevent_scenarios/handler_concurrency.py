"""Servicer methods that use gevent inside their handlers run concurrently.

    python handler_concurrency.py [CALLS]     (default 200)

A grpc_green server on gevent's hub, and CALLS client greenlets calling it
at once:

* unary: each handler gevent.sleep(0.2)s, then gevent.spawn()s three child
  greenlets (each gevent.sleep(0.05) and returns a piece of the answer) and
  joins them (gevent.joinall);
* server streaming (CALLS / 4 calls): a handler whose producer greenlet
  fills a gevent.queue.Queue with gevent.sleep() between items while the
  handler yields from the queue;
* proxy (CALLS / 4 calls): a handler that itself makes a grpc_green call
  (to the unary method above, on the same server, over its own channel)
  and wraps the answer.

Checks: every answer is correct; at least half of the calls' handlers were
in progress at the same time (unary: >= CALLS / 2) and the children of
different handlers overlapped; and everything finished in less than 10 s
(serially the unary part alone would take CALLS * 0.25 s).
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
import time  # noqa: E402

import _scenario as S  # noqa: E402

from grpc_green import monkey as green_monkey  # noqa: E402

green_monkey.patch_grpc()

import gevent  # noqa: E402
import gevent.queue  # noqa: E402
import grpc  # noqa: E402

SERVICE = "gevent_scenarios.Concurrency"
TOTAL_LIMIT = 10.0


class Gauge:
    def __init__(self):
        self.now = 0
        self.max = 0
        self.total = 0

    def __enter__(self):
        self.now += 1
        self.total += 1
        self.max = max(self.max, self.now)

    def __exit__(self, *exc):
        self.now -= 1


unary_handlers = Gauge()
children = Gauge()
stream_handlers = Gauge()
proxy_handlers = Gauge()
proxy_state = {}


def child(name, part):
    with children:
        gevent.sleep(0.05)
        return "%s.%d" % (name, part)


def unary(request, context):
    name = request.decode()
    with unary_handlers:
        gevent.sleep(0.2)
        kids = [gevent.spawn(child, name, part) for part in range(3)]
        gevent.joinall(kids, raise_error=True)
        return "|".join(kid.value for kid in kids).encode()


def server_stream(request, context):
    count = int(request)
    queue = gevent.queue.Queue()

    def producer():
        for i in range(count):
            gevent.sleep(0.01)
            queue.put(b"item %d" % i)
        queue.put(StopIteration)

    with stream_handlers:
        feeder = gevent.spawn(producer)
        try:
            yield from queue
        finally:
            feeder.kill()


def proxy(request, context):
    with proxy_handlers:
        inner = proxy_state["stub"](request, timeout=10)
        return b"proxied " + inner


def handlers():
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "Proxy": grpc.unary_unary_rpc_method_handler(proxy),
        },
    )


def expected_unary(name):
    return "|".join("%s.%d" % (name, part) for part in range(3)).encode()


def main(calls):
    kind = S.hub_kind()
    S.check(kind == "gevent", "hub kind", kind)
    server, target = S.serve(handlers())
    proxy_channel = grpc.insecure_channel(target)
    proxy_state["stub"] = proxy_channel.unary_unary("/%s/Unary" % SERVICE)
    channel = grpc.insecure_channel(target)
    call_unary = channel.unary_unary("/%s/Unary" % SERVICE)
    call_stream = channel.unary_stream("/%s/ServerStream" % SERVICE)
    call_proxy = channel.unary_unary("/%s/Proxy" % SERVICE)
    streams = proxies = calls // 4

    def do_unary(i):
        name = "u%d" % i
        return call_unary(name.encode(), timeout=20) == expected_unary(name)

    def do_stream(i):
        count = 5 + i % 10
        return list(call_stream(str(count).encode(), timeout=20)) == [
            b"item %d" % n for n in range(count)
        ]

    def do_proxy(i):
        name = "p%d" % i
        return call_proxy(name.encode(), timeout=20) == b"proxied " + expected_unary(name)

    ticker = S.Ticker(0.01).start()
    started = time.monotonic()
    results = S.joinall(
        [gevent.spawn(do_unary, i) for i in range(calls)]
        + [gevent.spawn(do_stream, i) for i in range(streams)]
        + [gevent.spawn(do_proxy, i) for i in range(proxies)],
        timeout=30,
    )
    elapsed = time.monotonic() - started
    ticker.stop()
    proxy_channel.close()
    channel.close()
    server.stop(None)

    wrong = [i for i, ok in enumerate(results) if not ok]
    S.check(not wrong, "wrong answers (indexes)", wrong[:10])
    S.check(unary_handlers.total == calls + proxies, "unary handlers run", unary_handlers.total)
    S.check(unary_handlers.max >= calls // 2, "max concurrent unary handlers", unary_handlers.max)
    S.check(children.max >= 6, "children of different handlers never overlapped", children.max)
    S.check(
        stream_handlers.max >= streams // 2,
        "max concurrent streaming handlers",
        stream_handlers.max,
    )
    S.check(proxy_handlers.max >= proxies // 2, "max concurrent proxy handlers", proxy_handlers.max)
    S.check(elapsed < TOTAL_LIMIT, "took too long (s)", elapsed)
    return {
        "hub": kind,
        "calls": {"unary": calls, "stream": streams, "proxy": proxies},
        "max_concurrent": {
            "unary": unary_handlers.max,
            "children": children.max,
            "stream": stream_handlers.max,
            "proxy": proxy_handlers.max,
        },
        "elapsed": elapsed,
        "max_lag": ticker.max_lag,
    }


if __name__ == "__main__":
    S.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 200)
