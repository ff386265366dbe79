"""Benchmark client: one measurement against a bench.Echo server, on grpcio or grpc_green.

Usage:
    echo_client.py grpc_green|grpcio_sync|grpcio_gevent --port PORT --test TEST
                   [--count N] [--warmup W] [--payload-bytes B] [--min-seconds S]
                   [--callers C] [--window S] [--warmup-seconds S]
                   [--gevent-threadpool N] [--server-pid PID] [--hard-limit S]

Implementations (the module behind the name `grpc`; nothing else differs):
  grpcio_sync    grpcio as installed
  grpc_green     grpc_green.monkey.patch_grpc() before anything imports grpc
  grpcio_gevent  gevent.monkey.patch_all(), import grpc (grpcio),
                 grpc.experimental.gevent.init_gevent(), before any gRPC
                 object exists; with --gevent-threadpool N, gevent's hub
                 thread pool (where init_gevent parks grpcio's blocking
                 completion-queue waits; 10 threads by default) is set to N
                 first

TEST is one of
  unary          N sequential Unary calls, one at a time, same request each
                 time; every reply must echo the request payload; per-call
                 latency
  concurrent     C callers (--callers, default 64) each calling Unary in a
                 loop with its own payload: OS threads for grpcio_sync,
                 greenlets for grpc_green (grpc_green.hub.spawn) and
                 grpcio_gevent (gevent.spawn); counted over a window of
                 --window seconds after --warmup-seconds; per-call latency
  threads64      64 threading.Thread callers sharing the one channel, each
                 calling Unary in a loop with its own payload, the same for
                 every implementation (threaded grpcio code unchanged; under
                 grpcio_gevent the patched threads are greenlets); counted
                 like concurrent; --callers does not apply
  server_stream  one ServerStream call asking for N messages of B bytes;
                 count, bytes and positions of what arrives are checked
  client_stream  one ClientStream call whose request iterator yields N
                 messages of B bytes; the server's summary must match
  bidi_pingpong  one BidiStream call, N round trips: the request iterator
                 yields one message, then waits until its echo has arrived
                 before yielding the next; every echo compared; per-round-
                 trip latency (grpc_green: the iterator, which waits on a
                 hub.Event, is wrapped in grpc_green.hub.cooperative())
  bidi_queue     bidi_pingpong as threaded grpcio code writes it: the request
                 iterator is a plain generator taking the next request from
                 a queue.Queue that the caller fills after reading each
                 response, the same for every implementation (grpc_green
                 consumes it in a worker thread); every echo compared;
                 per-round-trip latency
  bidi_stream    one BidiStream call, the request iterator over N prebuilt
                 messages without waiting (pipelined); all N must come back

Each test builds only the multicallable it measures, with the arguments a
grpc_tools-generated EchoStub passes, so an RPC kind one implementation
lacks fails its own test and no other.

A warm-up (W calls, or one stream of W messages, every message checked)
precedes the measured run of the count-based tests. A measured run shorter
than --min-seconds is discarded (recorded under short_runs) and done again
with more calls or messages, up to a cap. Prints one JSON object on stdout:
the figure (`per_s`), wall and CPU seconds of this process over the measured
run (CPU also per call or message), latency percentiles where there is one,
with --server-pid the server's CPU seconds over the same interval, and how
busy the rest of the machine was meanwhile (/proc/stat, in cores).
Exits 1 with {"error": ...} when anything does not check out, and 3 with
{"error": "timed out ...", "timed_out": true} from a native watchdog thread when
the whole run has not finished --hard-limit seconds after start. The process
always ends with os._exit, without closing its channel: a stalled gRPC
runtime need not let go, and teardown is not measured.
bench/client.py generates bench/_gen/echo_pb2.py before starting it.
"""

import argparse
import json
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(_HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "_gen"))

IMPLS = ("grpc_green", "grpcio_sync", "grpcio_gevent")
TESTS = (
    "unary",
    "concurrent",
    "threads64",
    "server_stream",
    "client_stream",
    "bidi_pingpong",
    "bidi_queue",
    "bidi_stream",
)
WINDOWED = ("concurrent", "threads64")  # counted over --window, not --count
THREADS64_CALLERS = 64


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("impl", choices=IMPLS)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--test", choices=TESTS, required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--payload-bytes", type=int, default=16)
    ap.add_argument("--server-pid", type=int, default=None)
    ap.add_argument(
        "--min-seconds",
        type=float,
        default=0.0,
        help="a measured run shorter than this is repeated with more calls/messages",
    )
    ap.add_argument("--callers", type=int, default=64, help="concurrent: number of callers")
    ap.add_argument("--window", type=float, default=2.0, help="concurrent: measured seconds")
    ap.add_argument(
        "--warmup-seconds",
        type=float,
        default=0.5,
        help="concurrent: seconds of calls before the window",
    )
    ap.add_argument(
        "--gevent-threadpool",
        type=int,
        default=None,
        help="grpcio_gevent: gevent hub thread pool maxsize (default: gevent's)",
    )
    ap.add_argument(
        "--hard-limit",
        type=float,
        default=120.0,
        help="the whole process gives up (exit 3) this many seconds after start; "
        "streaming calls get a deadline 3 s shorter (unary calls: 10 s each)",
    )
    args = ap.parse_args()
    if args.count < 1 or args.warmup < 0 or args.callers < 1 or args.window <= 0:
        ap.error("--count, --callers must be >= 1, --warmup >= 0, --window > 0")
    if args.test not in ("unary",) + WINDOWED and args.payload_bytes < 4:
        ap.error("streaming tests need --payload-bytes >= 4 (the position is in the first 4)")
    if args.gevent_threadpool is not None and args.impl != "grpcio_gevent":
        ap.error("--gevent-threadpool is for grpcio_gevent only")
    return args


T_START = time.monotonic()
ARGS = parse_args()
IMPL = ARGS.impl

# --- the implementation behind `grpc`: chosen before anything imports it ---------
if IMPL == "grpc_green":
    sys.path.insert(0, ROOT)  # grpc_green, built in place
    import grpc_green.monkey

    grpc_green.monkey.patch_grpc()
elif IMPL == "grpcio_gevent":
    from gevent import monkey

    monkey.patch_all()
    import gevent

    if ARGS.gevent_threadpool:
        gevent.get_hub().threadpool.maxsize = ARGS.gevent_threadpool
import grpc  # noqa: E402

if IMPL == "grpcio_gevent":
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
if IMPL != "grpc_green" and ("grpc_green" in sys.modules or grpc.__name__ != "grpc"):
    print(json.dumps({"error": "grpc is not grpcio: %s" % grpc.__file__}), flush=True)
    os._exit(1)
import queue  # noqa: E402  (gevent's under grpcio_gevent: patched above)
import threading  # noqa: E402

import echo_pb2  # noqa: E402

UNARY_TIMEOUT = 10.0
STREAM_TIMEOUT = max(1.0, ARGS.hard_limit - 3.0)
# concurrent, threads64: callers get this long to finish their call after the window
JOIN_SECONDS = 3.0
# concurrent, threads64: no call completed for this long in the window = stalled
STALL_SECONDS = 1.0
# Largest measured run (--min-seconds grows runs up to this). Client-streamed
# and bidi requests are built up front, each a Python message object of
# about 0.5 KB.
MAX_COUNT = {
    "unary": 10_000_000,
    "server_stream": 10_000_000,
    "client_stream": 500_000,
    "bidi_pingpong": 500_000,
    "bidi_queue": 500_000,
    "bidi_stream": 500_000,
}


# --- what differs between the runtimes: spawning, sleeping, a blocking mailbox ---

if IMPL == "grpc_green":
    import collections

    import grpc_green.hub as _hub

    class _Mailbox:
        """put() from one greenlet, get() parks another until something is there."""

        def __init__(self):
            self._event = _hub.Event()
            self._items = collections.deque()

        def put(self, item):
            self._items.append(item)
            self._event.set()

        def get(self):
            while not self._items:
                self._event.wait()
                self._event.clear()
            return self._items.popleft()

    def rt_spawn(fn, *args):
        return _hub.spawn(fn, *args)

    def rt_join(task, timeout):
        return task.join(timeout)

    rt_sleep = _hub.sleep
    rt_mailbox = _Mailbox
    # The mailbox parks on the hub: the request iterator is consumed inline,
    # in a greenlet, rather than in a worker thread.
    rt_requests = _hub.cooperative
    CALLER_KIND = "greenlets (grpc_green.hub.spawn)"
    NATIVE_START_THREAD, NATIVE_SLEEP = None, time.sleep
elif IMPL == "grpcio_gevent":
    import gevent.queue

    def rt_spawn(fn, *args):
        return gevent.spawn(fn, *args)

    def rt_join(glet, timeout):
        glet.join(timeout)
        return glet.dead

    rt_sleep = gevent.sleep
    rt_mailbox = gevent.queue.Queue
    rt_requests = iter
    CALLER_KIND = "greenlets (gevent.spawn)"
    NATIVE_START_THREAD = monkey.get_original("_thread", "start_new_thread")
    NATIVE_SLEEP = monkey.get_original("time", "sleep")
else:

    def rt_spawn(fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        return t

    def rt_join(thread, timeout):
        thread.join(timeout)
        return not thread.is_alive()

    rt_sleep = time.sleep
    rt_mailbox = queue.Queue
    rt_requests = iter
    CALLER_KIND = "threads (threading.Thread)"
    NATIVE_START_THREAD, NATIVE_SLEEP = None, time.sleep
THREAD_KIND = (  # threads64's callers
    "threads (threading.Thread, patched: greenlets)"
    if IMPL == "grpcio_gevent"
    else "threads (threading.Thread)"
)


def emit_and_exit(obj, status):
    # os._exit: a runtime with calls still stuck in it need not shut down.
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    os._exit(status)


PHASE = {"phase": "start"}


def watchdog():
    """Native thread: ends the process --hard-limit seconds after it started."""
    while True:
        left = T_START + ARGS.hard_limit - time.monotonic()
        if left <= 0:
            break
        NATIVE_SLEEP(min(left, 0.5))
    emit_and_exit(
        {
            "impl": IMPL,
            "test": ARGS.test,
            "timed_out": True,
            "error": "timed out: no result %.0f s after start (phase: %s)"
            % (ARGS.hard_limit, PHASE["phase"]),
        },
        3,
    )


if NATIVE_START_THREAD is not None:
    NATIVE_START_THREAD(watchdog, ())
else:
    import _thread

    _thread.start_new_thread(watchdog, ())


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


def machine_busy_seconds():
    """CPU seconds all CPUs spent busy since boot (/proc/stat; None if unavailable)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if fields[:1] != ["cpu"]:
        return None
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait
    busy = sum(int(x) for i, x in enumerate(fields[1:9]) if i not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


def payload_for(index, size):
    return index.to_bytes(4, "big") + bytes(i % 251 for i in range(size - 4))


def index_of(payload):
    return int.from_bytes(payload[:4], "big")


def percentiles_us(latencies):
    if not latencies:
        return None
    lat = sorted(latencies)

    def pct(p):
        return round(1e6 * lat[min(len(lat) - 1, int(p * len(lat)))], 1)

    return {
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "max": round(1e6 * lat[-1], 1),
        "n": len(lat),
    }


def multicallable(channel, test):
    if test in ("unary",) + WINDOWED:
        return channel.unary_unary(
            "/bench.Echo/Unary",
            request_serializer=echo_pb2.EchoMsg.SerializeToString,
            response_deserializer=echo_pb2.EchoMsg.FromString,
            _registered_method=True,
        )
    if test == "server_stream":
        return channel.unary_stream(
            "/bench.Echo/ServerStream",
            request_serializer=echo_pb2.StreamRequest.SerializeToString,
            response_deserializer=echo_pb2.EchoMsg.FromString,
            _registered_method=True,
        )
    if test == "client_stream":
        return channel.stream_unary(
            "/bench.Echo/ClientStream",
            request_serializer=echo_pb2.EchoMsg.SerializeToString,
            response_deserializer=echo_pb2.StreamSummary.FromString,
            _registered_method=True,
        )
    return channel.stream_stream(
        "/bench.Echo/BidiStream",
        request_serializer=echo_pb2.EchoMsg.SerializeToString,
        response_deserializer=echo_pb2.EchoMsg.FromString,
        _registered_method=True,
    )


# --- the count-based tests -----------------------------------------------------------
# prepare() builds the requests before the clock starts; run() makes the call
# and checks it, returning a description of what was checked. `lat` collects
# per-call (or per-round-trip) latencies where the test has them.


def prepare(test, n, size):
    if test == "unary":
        return echo_pb2.EchoMsg(payload=bytes(i % 251 for i in range(size)))
    if test == "server_stream":
        return echo_pb2.StreamRequest(count=n, payload_bytes=size)
    return [echo_pb2.EchoMsg(payload=payload_for(i, size)) for i in range(n)]


def run_unary(call, request, n, size, full_check, lat):
    payload = request.payload
    clock = time.perf_counter
    append = lat.append
    bad = 0
    for _ in range(n):
        t = clock()
        reply = call(request, timeout=UNARY_TIMEOUT)
        append(clock() - t)
        if reply.payload != payload:
            bad += 1
    if bad:
        raise CheckFailed("%d of %d unary replies did not echo the payload" % (bad, n))
    return "%d replies echoed the %d-byte payload" % (n, size)


def run_server_stream(call, request, n, size, full_check, lat):
    responses = call(request, timeout=STREAM_TIMEOUT)
    received = nbytes = 0
    last = None
    if full_check:
        for last in responses:
            if len(last.payload) != size or index_of(last.payload) != received:
                raise CheckFailed(
                    "message %d: %d bytes, position %d"
                    % (received, len(last.payload), index_of(last.payload))
                )
            received += 1
            nbytes += size
    else:
        for last in responses:
            received += 1
            nbytes += len(last.payload)
    _check_stream_end(responses, received, nbytes, last, n, size)
    return "%d messages, %d bytes, %s, status OK" % (
        received,
        nbytes,
        "every position checked" if full_check else "last at position %d" % (n - 1),
    )


def run_client_stream(call, messages, n, size, full_check, lat):
    summary = call(iter(messages), timeout=STREAM_TIMEOUT)
    if (summary.messages, summary.payload_bytes, summary.in_sequence) != (n, n * size, n):
        raise CheckFailed(
            "server summary: %d messages, %d bytes, %d in sequence; sent %d, %d bytes"
            % (summary.messages, summary.payload_bytes, summary.in_sequence, n, n * size)
        )
    return "server received %d messages, %d bytes, all in sequence" % (n, n * size)


def run_bidi_pingpong(call, messages, n, size, full_check, lat):
    return _ping_pong(call, messages, n, size, lat, rt_mailbox(), rt_requests)


def run_bidi_queue(call, messages, n, size, full_check, lat):
    # grpcio's usual ping-pong, unchanged on every implementation: a plain
    # generator over a queue.Queue (gevent's under grpcio_gevent's patching).
    return _ping_pong(call, messages, n, size, lat, queue.Queue(), iter)


def _ping_pong(call, messages, n, size, lat, box, wrap):
    def requests():  # consumed by the implementation's own thread or greenlet
        while True:
            msg = box.get()
            if msg is None:
                return
            yield msg

    clock = time.perf_counter
    append = lat.append
    received = nbytes = 0
    last = None
    box.put(messages[0])
    t = clock()
    responses = call(wrap(requests()), timeout=STREAM_TIMEOUT)
    for last in responses:
        append(clock() - t)
        if received >= n or last.payload != messages[received].payload:
            box.put(None)
            raise CheckFailed("echo %d differs from request %d" % (received, received))
        received += 1
        nbytes += len(last.payload)
        if received < n:
            t = clock()
            box.put(messages[received])
        else:
            box.put(None)  # end of requests: the server then ends the call
    _check_stream_end(responses, received, nbytes, last, n, size)
    return "%d round trips, every echo compared, status OK" % received


def run_bidi_stream(call, messages, n, size, full_check, lat):
    responses = call(iter(messages), timeout=STREAM_TIMEOUT)
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
    return "%d messages echoed, %d bytes, %s, status OK" % (
        received,
        nbytes,
        "every echo compared" if full_check else "last at position %d" % (n - 1),
    )


def _check_stream_end(responses, received, nbytes, last, n, size):
    if received != n or nbytes != n * size:
        raise CheckFailed(
            "received %d messages / %d bytes, expected %d / %d" % (received, nbytes, n, n * size)
        )
    if last is not None and index_of(last.payload) != n - 1:
        raise CheckFailed(
            "last message at position %d, expected %d" % (index_of(last.payload), n - 1)
        )
    code = responses.code()
    if code != grpc.StatusCode.OK:
        raise CheckFailed("stream ended with %s" % code)


RUNNERS = {
    "unary": run_unary,
    "server_stream": run_server_stream,
    "client_stream": run_client_stream,
    "bidi_pingpong": run_bidi_pingpong,
    "bidi_queue": run_bidi_queue,
    "bidi_stream": run_bidi_stream,
}
HAS_LATENCY = ("unary", "concurrent", "threads64", "bidi_pingpong", "bidi_queue")


def measure_counted(call, out):
    runner = RUNNERS[ARGS.test]
    size = ARGS.payload_bytes
    if ARGS.warmup:
        PHASE["phase"] = "warm-up"
        inputs = prepare(ARGS.test, ARGS.warmup, size)
        out["warmup_check"] = runner(call, inputs, ARGS.warmup, size, True, [])
    count = ARGS.count
    out["short_runs"] = []
    while True:
        PHASE["phase"] = "measured run of %d" % count
        inputs = prepare(ARGS.test, count, size)
        lat = []
        busy0 = machine_busy_seconds()
        srv0 = server_cpu_seconds(ARGS.server_pid)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        out["check"] = runner(call, inputs, count, size, False, lat)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        srv1 = server_cpu_seconds(ARGS.server_pid)
        busy1 = machine_busy_seconds()
        inputs = None
        if wall >= ARGS.min_seconds or count >= MAX_COUNT[ARGS.test]:
            break
        # Too short to time well: it counts as more warm-up; go again, longer.
        out["short_runs"].append({"count": count, "seconds": wall})
        count = min(
            MAX_COUNT[ARGS.test], int(count * max(2.0, 1.3 * ARGS.min_seconds / max(wall, 1e-3)))
        )
    out["count"] = count
    return wall, cpu, srv0, srv1, busy0, busy1, lat


# --- the concurrent test ------------------------------------------------------------


def thread_spawn(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def thread_join(thread, timeout):
    thread.join(timeout)
    return not thread.is_alive()


def measure_concurrent(call, out):
    """Callers in a loop; calls completed in a --window-second window.

    concurrent: --callers callers of the implementation's kind (rt_spawn);
    threads64: 64 threading.Thread callers, the main thread sleeping in
    time.sleep (both gevent's under grpcio_gevent's patching).
    """
    if ARGS.test == "threads64":
        n_callers, kind = THREADS64_CALLERS, THREAD_KIND
        spawn, join, sleep = thread_spawn, thread_join, time.sleep
    else:
        n_callers, kind = ARGS.callers, CALLER_KIND
        spawn, join, sleep = rt_spawn, rt_join, rt_sleep
    pad = bytes(i % 251 for i in range(max(0, ARGS.payload_bytes - 4)))
    counts = [0] * n_callers  # each caller owns its slot: no lost updates between threads
    lats = [[] for _ in range(n_callers)]
    errors = []
    state = {"stop": False, "measuring": False}
    clock = time.perf_counter

    def caller(i):
        request = echo_pb2.EchoMsg(payload=(i.to_bytes(4, "big") + pad)[: ARGS.payload_bytes])
        payload = request.payload
        mine = lats[i]
        while not state["stop"]:
            t = clock()
            try:
                reply = call(request, timeout=UNARY_TIMEOUT)
            except Exception as e:  # noqa: BLE001 -- reported; this caller stops
                errors.append(
                    "caller %d: %s: %s"
                    % (
                        i,
                        type(e).__name__,
                        e.details() if hasattr(e, "details") and callable(e.details) else e,
                    )
                )
                return
            dt = clock() - t
            if reply.payload != payload:
                errors.append("caller %d: reply did not echo its payload" % i)
                return
            counts[i] += 1
            if state["measuring"]:
                mine.append(dt)

    # One checked call before anything is timed.
    PHASE["phase"] = "check call"
    check = echo_pb2.EchoMsg(payload=b"check" + pad)
    if call(check, timeout=UNARY_TIMEOUT).payload != check.payload:
        raise CheckFailed("check call: reply does not echo the request")
    PHASE["phase"] = "warm-up"
    workers = [spawn(caller, i) for i in range(n_callers)]
    sleep(ARGS.warmup_seconds)
    PHASE["phase"] = "window"
    busy0 = machine_busy_seconds()
    srv0 = server_cpu_seconds(ARGS.server_pid)
    cpu0 = time.process_time()
    t0 = clock()
    ops0 = sum(counts)
    state["measuring"] = True
    # The window in slices, to see stretches in which no call completed.
    slices = max(1, int(round(ARGS.window / 0.25)))
    marks = [(0.0, ops0)]
    for k in range(1, slices + 1):
        sleep(max(0.0, t0 + ARGS.window * k / slices - clock()))
        marks.append((clock() - t0, sum(counts)))
    state["measuring"] = False
    wall = clock() - t0
    ops1 = sum(counts)
    cpu = time.process_time() - cpu0
    srv1 = server_cpu_seconds(ARGS.server_pid)
    busy1 = machine_busy_seconds()
    state["stop"] = True
    PHASE["phase"] = "joining callers"
    deadline = clock() + JOIN_SECONDS
    unfinished = sum(1 for w in workers if not join(w, max(0.0, deadline - clock())))
    longest, run_start, last_ops = 0.0, 0.0, None
    for t, ops in marks:
        if ops == last_ops:
            longest = max(longest, t - run_start)
        else:
            run_start, last_ops = t, ops
    ops = ops1 - ops0
    out["count"] = ops
    out["callers"] = n_callers
    out["caller_kind"] = kind
    out["longest_no_progress_s"] = round(longest, 2)
    out["callers_unfinished"] = unfinished
    out["calls_before_window"] = ops0
    out["check"] = "%d calls in the window, every reply echoed its caller's payload" % ops
    stalled = ops == 0 or longest >= STALL_SECONDS or unfinished > 0
    if errors:
        out["errors"] = errors[:5]
        out["error_count"] = len(errors)
    if stalled:
        out["stalled"] = True
        out["stall"] = (
            "%d calls in the %.1f s window (%d before it), none for %.2f s; "
            "%d of %d callers still inside a call %.0f s after it"
            % (ops, wall, ops0, longest, unfinished, n_callers, JOIN_SECONDS)
        )
    if errors and not stalled:
        raise CheckFailed("%d callers failed; first: %s" % (len(errors), errors[0]))
    return wall, cpu, srv0, srv1, busy0, busy1, [x for lst in lats for x in lst]


def main():
    size = ARGS.payload_bytes
    out = {
        "impl": IMPL,
        "test": ARGS.test,
        "count": ARGS.count,
        "warmup": ARGS.warmup,
        "payload_bytes": size,
        "grpc_module": grpc.__name__,
        "grpc_version": grpc.__version__,
    }
    if IMPL == "grpcio_gevent":
        out["gevent_version"] = gevent.__version__
        out["gevent_threadpool_maxsize"] = gevent.get_hub().threadpool.maxsize
    try:
        channel = grpc.insecure_channel("127.0.0.1:%d" % ARGS.port)
        call = multicallable(channel, ARGS.test)
        if ARGS.test in WINDOWED:
            wall, cpu, srv0, srv1, busy0, busy1, lat = measure_concurrent(call, out)
        else:
            wall, cpu, srv0, srv1, busy0, busy1, lat = measure_counted(call, out)
    except CheckFailed as e:
        out["error"] = "check failed: %s" % e
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else None
        details = e.details() if hasattr(e, "details") else None
        out["error"] = "RpcError %s: %s" % (code, details)
    except Exception as e:  # noqa: BLE001
        out["error"] = "%s: %s" % (type(e).__name__, e)
    if "error" in out:
        emit_and_exit(out, 1)
    count = out["count"]
    out.update(
        {
            "seconds": wall,
            "per_s": count / wall,
            "client_cpu_s": cpu,
            "client_cpu_share": cpu / wall,
            "client_cpu_us_per_op": cpu / count * 1e6 if count else None,
        }
    )
    if ARGS.test in HAS_LATENCY:
        out["latency_us"] = percentiles_us(lat)
    if srv0 is not None and srv1 is not None:
        out["server_cpu_s"] = srv1 - srv0
        out["server_cpu_share"] = (srv1 - srv0) / wall
    if busy0 is not None and busy1 is not None:
        # Everything else the machine ran meanwhile (other processes, the
        # kernel's own threads), in cores; 10 ms resolution like the server's.
        out["machine_busy_cores"] = (busy1 - busy0) / wall
        out["other_busy_cores"] = (
            max(0.0, busy1 - busy0 - cpu - out.get("server_cpu_s", 0.0)) / wall
        )
    # No channel.close(): teardown is not measured, and a stalled runtime may
    # never finish it; os._exit closes the connection.
    emit_and_exit(out, 0)


if __name__ == "__main__":
    main()
