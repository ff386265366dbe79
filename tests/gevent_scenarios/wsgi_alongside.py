"""gevent servers keep serving while heavy gRPC traffic runs in the same process.

    python wsgi_alongside.py [SECONDS]     (default 1.5)

One process, one thread, gevent's hub: a gevent.pywsgi WSGI server and a
gevent StreamServer (line echo) next to a grpc_green server (TestService.Echo
and the Streaming service). For SECONDS, gRPC load runs flat out -- unary
calls with 16 KiB payloads, server-streaming calls of 200 x 4 KiB and bidi
ping-pong -- while two probe greenlets talk to the gevent servers over
(monkey-patched) sockets every 5 ms: HTTP GETs on a keep-alive
http.client.HTTPConnection and lines on a raw socket.

Checks: every gRPC response is correct, every probe request is answered
correctly and within 200 ms, and both probes got at least 20 answers while
the gRPC load ran.
"""

from gevent import monkey

monkey.patch_all()

import functools  # noqa: E402
import http.client  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import _scenario as S  # noqa: E402

from grpc_green import monkey as green_monkey  # noqa: E402

green_monkey.patch_grpc()

import gevent  # noqa: E402
import gevent.pywsgi  # noqa: E402
import gevent.queue  # noqa: E402
import gevent.server  # noqa: E402
import grpc  # noqa: E402
import streaming_pb2  # noqa: E402
import streaming_pb2_grpc  # noqa: E402
import testing_pb2  # noqa: E402
import testing_pb2_grpc  # noqa: E402
from streaming_behaviour import StreamingServicer, payload_for  # noqa: E402

PROBE_INTERVAL = 0.005
MAX_PROBE_LATENCY = 0.200
MIN_PROBE_ANSWERS = 20


class Echo(testing_pb2_grpc.TestServiceServicer):
    def Echo(self, request, context):
        return testing_pb2.EchoResponse(payload=request.payload, message=request.message)


def wsgi_app(environ, start_response):
    body = ("pong %s" % environ["PATH_INFO"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class WSGIServer(gevent.pywsgi.WSGIServer):
    def handle(self, sock, address):
        # pywsgi writes headers and body separately: without TCP_NODELAY every
        # keep-alive response waits ~40 ms on Nagle + delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle(sock, address)


def line_echo(sock, address):
    reader = sock.makefile("rb")
    for line in reader:
        sock.sendall(b"echo " + line)


class Probe:
    def __init__(self):
        self.answers = 0
        self.max_latency = 0.0
        self.errors = []

    def record(self, started, ok, what):
        latency = time.monotonic() - started
        self.max_latency = max(self.max_latency, latency)
        if ok:
            self.answers += 1
        else:
            self.errors.append(what)

    def summary(self):
        return {"answers": self.answers, "max_latency": self.max_latency, "errors": self.errors[:5]}


def http_probe(port, stop, probe):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    i = 0
    while not stop.is_set():
        started = time.monotonic()
        conn.request("GET", "/%d" % i)
        response = conn.getresponse()
        body = response.read()
        probe.record(
            started, response.status == 200 and body == b"pong /%d" % i, (response.status, body)
        )
        i += 1
        gevent.sleep(PROBE_INTERVAL)
    conn.close()


def line_probe(port, stop, probe):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    reader = sock.makefile("rb")
    i = 0
    while not stop.is_set():
        started = time.monotonic()
        sock.sendall(b"line %d\n" % i)
        answer = reader.readline()
        probe.record(started, answer == b"echo line %d\n" % i, answer)
        i += 1
        gevent.sleep(PROBE_INTERVAL)
    sock.close()


def main(seconds):
    kind = S.hub_kind()
    S.check(kind == "gevent", "hub kind", kind)

    wsgi = WSGIServer(("127.0.0.1", 0), wsgi_app, log=None)
    wsgi.start()
    lines = gevent.server.StreamServer(("127.0.0.1", 0), line_echo)
    lines.start()
    streaming = StreamingServicer(grpc, gevent.sleep)
    server, target = S.serve(
        functools.partial(testing_pb2_grpc.add_TestServiceServicer_to_server, Echo()),
        functools.partial(streaming_pb2_grpc.add_StreamingServicer_to_server, streaming),
    )
    channel = grpc.insecure_channel(target)
    echo = testing_pb2_grpc.TestServiceStub(channel)
    stream = streaming_pb2_grpc.StreamingStub(channel)

    stop = gevent.event.Event()
    counts = {"unary": 0, "server_stream": 0, "bidi": 0}
    wrong = []

    def unary_load(i):
        payload = bytes([i % 256]) * 16384
        while not stop.is_set():
            reply = echo.Echo(testing_pb2.EchoRequest(payload=payload, message=str(i)), timeout=30)
            if reply.payload != payload or reply.message != str(i):
                wrong.append(("unary", i))
            counts["unary"] += 1

    def server_stream_load(i):
        while not stop.is_set():
            responses = list(
                stream.ServerStream(
                    streaming_pb2.StreamRequest(response_count=200, response_size=4096), timeout=30
                )
            )
            if [(r.index, r.payload) for r in responses] != [
                (n, payload_for(n, 4096)) for n in range(200)
            ]:
                wrong.append(("server_stream", i))
            counts["server_stream"] += 1

    def bidi_load(i):
        while not stop.is_set():
            outbox = gevent.queue.Queue()
            outbox.put(streaming_pb2.StreamRequest(message="0", payload=b"x" * 1024))
            responses = stream.Bidi(outbox, timeout=30)
            got = []
            for response in responses:
                got.append(response.message)
                if len(got) == 50:
                    outbox.put(StopIteration)
                else:
                    outbox.put(streaming_pb2.StreamRequest(message=str(len(got))))
            if got != [str(n) for n in range(50)]:
                wrong.append(("bidi", i, got[:3]))
            counts["bidi"] += 1

    http_stats, line_stats = Probe(), Probe()
    probes = [
        gevent.spawn(http_probe, wsgi.server_port, stop, http_stats),
        gevent.spawn(line_probe, lines.server_port, stop, line_stats),
    ]
    load = (
        [gevent.spawn(unary_load, i) for i in range(100)]
        + [gevent.spawn(server_stream_load, i) for i in range(10)]
        + [gevent.spawn(bidi_load, i) for i in range(10)]
    )
    ticker = S.Ticker(0.01).start()
    gevent.sleep(seconds)
    stop.set()
    S.joinall(load, timeout=30)
    S.joinall(probes, timeout=10)
    ticker.stop()

    channel.close()
    server.stop(None)
    wsgi.stop()
    lines.stop()

    S.check(not wrong, "wrong gRPC responses", wrong[:5])
    S.check(
        counts["unary"] >= 100 and counts["server_stream"] >= 10 and counts["bidi"] >= 10,
        "gRPC load did not run",
        counts,
    )
    for name, probe in (("http", http_stats), ("line", line_stats)):
        S.check(not probe.errors, name + " probe got wrong answers", probe.errors[:5])
        S.check(probe.answers >= MIN_PROBE_ANSWERS, name + " probe answers", probe.answers)
        S.check(
            probe.max_latency < MAX_PROBE_LATENCY,
            name + " probe max latency (s)",
            probe.max_latency,
        )
    return {
        "hub": kind,
        "grpc": counts,
        "http": http_stats.summary(),
        "line": line_stats.summary(),
        "max_lag": ticker.max_lag,
    }


if __name__ == "__main__":
    S.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 1.5)
