"""Benchmark client: one measurement against a bench.Echo server, on grpcio or grpc_green.

Usage:
    echo_client.py grpc_green|grpcio_sync --port PORT --test TEST --count N
                   [--warmup W] [--payload-bytes B] [--min-seconds S]
                   [--server-pid PID] [--timeout S]

TEST is one of
  unary          N sequential Unary calls, one at a time, same request each
                 time; every reply must echo the request payload
  server_stream  one ServerStream call asking for N messages of B bytes;
                 count, bytes and positions of what arrives are checked
  client_stream  one ClientStream call whose request iterator yields N
                 messages of B bytes; the server's summary must match
  bidi_stream    one BidiStream call yielding N messages; all N must come back

The same code runs on both implementations; only the module behind the name
`grpc` differs: for grpc_green, grpc_green.monkey.patch_grpc() is called
before anything imports grpc. Each test builds only the multicallable it
measures, with the arguments a grpc_tools-generated EchoStub passes, so an RPC
kind one implementation lacks fails its own test and no other.

A warm-up (W calls, or one stream of W messages with every message checked)
precedes the measured run. A measured run shorter than --min-seconds is
discarded (recorded under short_runs) and done again with more calls or
messages, up to a cap. Prints one JSON object on stdout: the figure
(`per_s`), wall and CPU seconds of this process over the measured run (CPU
also per call or message), and, with --server-pid, the server's CPU seconds
over the same interval. Exits 1 with {"error": ...} when
anything does not check out. bench/client.py generates bench/_gen/echo_pb2.py
before starting it.
"""
import argparse
import json
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "_gen"))
sys.path.insert(0, os.path.join(_HERE, "..", ".."))  # repo root (in-place build)

TESTS = ("unary", "server_stream", "client_stream", "bidi_stream")


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("impl", choices=("grpc_green", "grpcio_sync"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--test", choices=TESTS, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--payload-bytes", type=int, default=16)
    ap.add_argument("--server-pid", type=int, default=None)
    ap.add_argument("--min-seconds", type=float, default=0.0,
                    help="a measured run shorter than this is repeated with more calls/messages")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="deadline of each streaming call (unary calls: 10 s each)")
    args = ap.parse_args()
    if args.count < 1 or args.warmup < 0:
        ap.error("--count must be >= 1 and --warmup >= 0")
    if args.test != "unary" and args.payload_bytes < 4:
        ap.error("streaming tests need --payload-bytes >= 4 (the position is in the first 4)")
    return args


ARGS = parse_args()
if ARGS.impl == "grpc_green":
    import grpc_green.monkey  # noqa: E402

    grpc_green.monkey.patch_grpc()
import grpc  # noqa: E402
import echo_pb2  # noqa: E402

UNARY_TIMEOUT = 10.0
# Largest measured run (--min-seconds grows runs up to this). The streaming
# requests are built up front, each a Python message object of about 0.5 KB.
MAX_COUNT = {"unary": 10_000_000, "server_stream": 10_000_000,
             "client_stream": 500_000, "bidi_stream": 500_000}


class CheckFailed(Exception):
    pass


def server_cpu_seconds(pid):
    """utime + stime of all the server's threads, from /proc (None if unavailable)."""
    if pid is None:
        return None
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def payload_for(index, size):
    return index.to_bytes(4, "big") + bytes(i % 251 for i in range(size - 4))


def index_of(payload):
    return int.from_bytes(payload[:4], "big")


def multicallable(channel, test):
    if test == "unary":
        return channel.unary_unary(
            "/bench.Echo/Unary",
            request_serializer=echo_pb2.EchoMsg.SerializeToString,
            response_deserializer=echo_pb2.EchoMsg.FromString,
            _registered_method=True)
    if test == "server_stream":
        return channel.unary_stream(
            "/bench.Echo/ServerStream",
            request_serializer=echo_pb2.StreamRequest.SerializeToString,
            response_deserializer=echo_pb2.EchoMsg.FromString,
            _registered_method=True)
    if test == "client_stream":
        return channel.stream_unary(
            "/bench.Echo/ClientStream",
            request_serializer=echo_pb2.EchoMsg.SerializeToString,
            response_deserializer=echo_pb2.StreamSummary.FromString,
            _registered_method=True)
    return channel.stream_stream(
        "/bench.Echo/BidiStream",
        request_serializer=echo_pb2.EchoMsg.SerializeToString,
        response_deserializer=echo_pb2.EchoMsg.FromString,
        _registered_method=True)


# --- the four tests -------------------------------------------------------------
# prepare() builds the requests before the clock starts; run() makes the call
# and checks it, returning a description of what was checked.


def prepare(test, n, size):
    if test == "unary":
        return echo_pb2.EchoMsg(payload=bytes(i % 251 for i in range(size)))
    if test == "server_stream":
        return echo_pb2.StreamRequest(count=n, payload_bytes=size)
    return [echo_pb2.EchoMsg(payload=payload_for(i, size)) for i in range(n)]


def run_unary(call, request, n, size, full_check):
    payload = request.payload
    bad = 0
    for _ in range(n):
        if call(request, timeout=UNARY_TIMEOUT).payload != payload:
            bad += 1
    if bad:
        raise CheckFailed("%d of %d unary replies did not echo the payload" % (bad, n))
    return "%d replies echoed the %d-byte payload" % (n, size)


def run_server_stream(call, request, n, size, full_check):
    responses = call(request, timeout=ARGS.timeout)
    received = nbytes = 0
    last = None
    if full_check:
        for last in responses:
            if len(last.payload) != size or index_of(last.payload) != received:
                raise CheckFailed("message %d: %d bytes, position %d"
                                  % (received, len(last.payload), index_of(last.payload)))
            received += 1
            nbytes += size
    else:
        for last in responses:
            received += 1
            nbytes += len(last.payload)
    _check_stream_end(responses, received, nbytes, last, n, size)
    return ("%d messages, %d bytes, %s, status OK"
            % (received, nbytes, "every position checked" if full_check else
               "last at position %d" % (n - 1)))


def run_client_stream(call, messages, n, size, full_check):
    summary = call(iter(messages), timeout=ARGS.timeout)
    if (summary.messages, summary.payload_bytes, summary.in_sequence) != (n, n * size, n):
        raise CheckFailed("server summary: %d messages, %d bytes, %d in sequence; sent %d, %d bytes"
                          % (summary.messages, summary.payload_bytes, summary.in_sequence,
                             n, n * size))
    return "server received %d messages, %d bytes, all in sequence" % (n, n * size)


def run_bidi_stream(call, messages, n, size, full_check):
    responses = call(iter(messages), timeout=ARGS.timeout)
    received = nbytes = 0
    last = None
    if full_check:
        for last in responses:
            if received >= n or last.payload != messages[received].payload:
                raise CheckFailed("echo %d differs from request %d" % (received, received))
            received += 1
            nbytes += size
    else:
        for last in responses:
            received += 1
            nbytes += len(last.payload)
    _check_stream_end(responses, received, nbytes, last, n, size)
    return ("%d messages echoed, %d bytes, %s, status OK"
            % (received, nbytes, "every echo compared" if full_check else
               "last at position %d" % (n - 1)))


def _check_stream_end(responses, received, nbytes, last, n, size):
    if received != n or nbytes != n * size:
        raise CheckFailed("received %d messages / %d bytes, expected %d / %d"
                          % (received, nbytes, n, n * size))
    if last is not None and index_of(last.payload) != n - 1:
        raise CheckFailed("last message at position %d, expected %d"
                          % (index_of(last.payload), n - 1))
    code = responses.code()
    if code != grpc.StatusCode.OK:
        raise CheckFailed("stream ended with %s" % code)


RUNNERS = {"unary": run_unary, "server_stream": run_server_stream,
           "client_stream": run_client_stream, "bidi_stream": run_bidi_stream}


def main():
    runner = RUNNERS[ARGS.test]
    size = ARGS.payload_bytes
    out = {"impl": ARGS.impl, "test": ARGS.test, "count": ARGS.count,
           "warmup": ARGS.warmup, "payload_bytes": size,
           "grpc_module": grpc.__name__, "grpc_version": grpc.__version__}
    try:
        with grpc.insecure_channel("127.0.0.1:%d" % ARGS.port) as channel:
            call = multicallable(channel, ARGS.test)
            if ARGS.warmup:
                inputs = prepare(ARGS.test, ARGS.warmup, size)
                out["warmup_check"] = runner(call, inputs, ARGS.warmup, size, True)
            count = ARGS.count
            out["short_runs"] = []
            while True:
                inputs = prepare(ARGS.test, count, size)
                srv0 = server_cpu_seconds(ARGS.server_pid)
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                out["check"] = runner(call, inputs, count, size, False)
                wall = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                srv1 = server_cpu_seconds(ARGS.server_pid)
                inputs = None
                if wall >= ARGS.min_seconds or count >= MAX_COUNT[ARGS.test]:
                    break
                # Too short to time well: it counts as more warm-up; go again, longer.
                out["short_runs"].append({"count": count, "seconds": wall})
                count = min(MAX_COUNT[ARGS.test],
                            int(count * max(2.0, 1.3 * ARGS.min_seconds / max(wall, 1e-3))))
    except CheckFailed as e:
        out["error"] = "check failed: %s" % e
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else None
        details = e.details() if hasattr(e, "details") else None
        out["error"] = "RpcError %s: %s" % (code, details)
    except Exception as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    if "error" in out:
        print(json.dumps(out), flush=True)
        return 1
    out.update({"count": count, "seconds": wall, "per_s": count / wall, "client_cpu_s": cpu,
                "client_cpu_share": cpu / wall,
                "client_cpu_us_per_op": cpu / count * 1e6})
    if srv0 is not None and srv1 is not None:
        out["server_cpu_s"] = srv1 - srv0
        out["server_cpu_share"] = (srv1 - srv0) / wall
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
