"""Request iterators built on gevent primitives, for stream_unary and stream_stream.

    python request_iterators.py

Against the Streaming service (tests/streaming_behaviour.py) on a grpc_green
server in the same process, all on gevent's hub:

* ClientStream fed by a generator that waits on a gevent.event.Event (set by
  another greenlet 50 ms later) and then takes requests from a
  gevent.queue.Queue filled by a producer greenlet that gevent.sleep()s
  between puts; once through __call__ and once through .future();
* 50 ClientStream calls at once, each from a generator that gevent.sleep()s
  10 ms before each of its 10 requests (all must complete; the generators
  must have run interleaved);
* Bidi ping-pong: the request iterator is a gevent.queue.Queue (ended by
  putting StopIteration) into which the next request is put only after the
  previous response arrived, so the call only progresses if the request
  iterator parks on gevent's queue without blocking the hub;
* Bidi fed by a generator that gevent.sleep()s and waits on Events set by
  the response reader.

Checks: every summary / response stream is exactly what the requests imply.
"""

from gevent import monkey

monkey.patch_all()

import functools  # noqa: E402
import time  # noqa: E402

import _scenario as S  # noqa: E402

from grpc_green import monkey as green_monkey  # noqa: E402

green_monkey.patch_grpc()

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.queue  # noqa: E402
import grpc  # noqa: E402
import streaming_pb2  # noqa: E402
import streaming_pb2_grpc  # noqa: E402
from streaming_behaviour import StreamingServicer  # noqa: E402

Req = streaming_pb2.StreamRequest


def queue_fed_client_stream(stub, use_future):
    go = gevent.event.Event()
    queue = gevent.queue.Queue()
    messages = ["m%d" % i for i in range(20)]
    pulled = []

    def requests():
        go.wait()
        for request in queue:  # ends at StopIteration
            pulled.append(request.message)
            yield request

    def producer():
        for i, message in enumerate(messages):
            queue.put(Req(message=message, payload=b"p" * i))
            gevent.sleep(0.002)
        queue.put(StopIteration)

    gevent.spawn_later(0.05, go.set)
    feeder = gevent.spawn(producer)
    if use_future:
        future = stub.ClientStream.future(requests(), timeout=20)
        summary = future.result(timeout=20)
    else:
        summary = stub.ClientStream(requests(), timeout=20)
    S.joinall([feeder], timeout=5)
    S.check(pulled == messages, "requests pulled from the queue", pulled)
    S.check(list(summary.messages) == messages, "summary messages", list(summary.messages))
    S.check(
        summary.count == 20 and summary.total_bytes == sum(range(20)),
        "summary counts",
        summary.count,
        summary.total_bytes,
    )
    return {"count": summary.count, "total_bytes": summary.total_bytes}


def many_sleeping_generators(stub, calls=50, per_call=10):
    active = [0, 0]  # now, max

    def requests(i):
        active[0] += 1
        active[1] = max(active[1], active[0])
        try:
            for j in range(per_call):
                gevent.sleep(0.01)
                yield Req(message="%d-%d" % (i, j), payload=b"x" * j)
        finally:
            active[0] -= 1

    def one(i):
        return stub.ClientStream(requests(i), timeout=20)

    started = time.monotonic()
    summaries = S.joinall([gevent.spawn(one, i) for i in range(calls)], timeout=20)
    elapsed = time.monotonic() - started
    for i, summary in enumerate(summaries):
        expected = ["%d-%d" % (i, j) for j in range(per_call)]
        S.check(list(summary.messages) == expected, "call %d messages" % i, list(summary.messages))
        S.check(summary.total_bytes == sum(range(per_call)), "call %d bytes" % i)
    S.check(active[1] > calls // 2, "request generators did not run concurrently", active[1])
    return {"calls": calls, "max_active_generators": active[1], "elapsed": elapsed}


def queue_ping_pong(stub, rounds=100):
    queue = gevent.queue.Queue()
    queue.put(Req(message="0", payload=b"\x00"))
    got = []
    for response in stub.Bidi(queue, timeout=20):
        got.append((response.index, response.message, response.payload))
        n = len(got)
        if n == rounds:
            queue.put(StopIteration)
        else:
            queue.put(Req(message=str(n), payload=bytes([n % 256])))
    expected = [(n, str(n), bytes([n % 256])) for n in range(rounds)]
    S.check(got == expected, "ping-pong responses", got[:3], len(got))
    return {"rounds": len(got)}


def event_paced_bidi(stub, rounds=30):
    answered = [gevent.event.Event() for _ in range(rounds)]

    def requests():
        for n in range(rounds):
            if n:
                # Only send the next request once the previous answer is in.
                S.check(answered[n - 1].wait(10), "answer %d never came" % (n - 1))
                gevent.sleep(0.001)
            yield Req(message="e%d" % n)

    got = []
    for response in stub.Bidi(requests(), timeout=20):
        got.append(response.message)
        answered[response.index].set()
    S.check(got == ["e%d" % n for n in range(rounds)], "event-paced responses", got)
    return {"rounds": len(got)}


def main():
    kind = S.hub_kind()
    S.check(kind == "gevent", "hub kind", kind)
    servicer = StreamingServicer(grpc, gevent.sleep)
    server, target = S.serve(
        functools.partial(streaming_pb2_grpc.add_StreamingServicer_to_server, servicer)
    )
    channel = grpc.insecure_channel(target)
    stub = streaming_pb2_grpc.StreamingStub(channel)
    ticker = S.Ticker(0.01).start()
    result = {
        "hub": kind,
        "client_stream_queue": queue_fed_client_stream(stub, use_future=False),
        "client_stream_queue_future": queue_fed_client_stream(stub, use_future=True),
        "client_stream_many": many_sleeping_generators(stub),
        "bidi_queue_ping_pong": queue_ping_pong(stub),
        "bidi_event_paced": event_paced_bidi(stub),
    }
    ticker.stop()
    result["max_lag"] = ticker.max_lag
    channel.close()
    server.stop(None)
    return result


if __name__ == "__main__":
    S.run(main)
