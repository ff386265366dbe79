#!/usr/bin/env python3
"""gRPC inside a gevent application: grpc_green vs grpcio, server and callers in one process.

Each row runs in a fresh subprocess (gevent's monkey-patching is
process-wide), pinned to one core, holding a bench.Echo server, N client
greenlets calling it over one channel on 127.0.0.1, and a ticker greenlet
doing gevent.sleep(0.01) in a loop to see whether the rest of the
application ever stalls:

  grpc_green  gevent.monkey.patch_all(grpc=True): `import grpc` is
              grpc_green, running on gevent's hub.
  grpcio      gevent.monkey.patch_all(), import grpc (grpcio),
              grpc.experimental.gevent.init_gevent(); the server on a
              futures.ThreadPoolExecutor(16) of gevent-patched threads.

Tests: unary echo (16-byte payload) with N = 10 and N = 500 callers, and a
server-streaming row (one greenlet receiving 16-byte messages). After a
warm-up, ops are counted over a fixed window; a native (unpatched) thread in
each child keeps the clock, prints progress lines every 0.5 s and gives up
on a child whose hub stops, so a stall still yields the numbers reached so
far; the parent kills any child still alive at warm-up + duration + 20 s.

    .venv/bin/python bench/gevent_inprocess.py [--duration S] [--warmup S]
                                               [--callers 10,500] [--impls ...]
                                               [--tests unary,server_stream]

Prints a table and writes bench/results/gevent_inprocess.json. Exit status
0 when every grpc_green row ran, 1 otherwise (grpcio rows may stall: that is
part of what is measured). See bench/README.md.
"""

import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
GEN = os.path.join(BENCH, "_gen")

# --- child: patching comes first, before anything imports threading or socket ---

if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    _IMPL = sys.argv[2]
    if _IMPL == "grpc_green":
        # The repository root holds grpc_green (built in place) and its
        # egg-info, whose gevent plugin entry point patch_all(grpc=True) finds.
        sys.path.insert(0, ROOT)
        from gevent import monkey

        monkey.patch_all(grpc=True)
    elif _IMPL == "grpcio":
        from gevent import monkey

        monkey.patch_all()
    else:
        sys.exit("usage: gevent_inprocess.py --child grpc_green|grpcio ...")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

IMPLS = {"grpc_green": "grpc_green (gevent hub)", "grpcio": "grpcio + init_gevent"}
BASELINE = "grpcio"
TESTS = {"unary": "unary echo", "server_stream": "server stream"}
PAYLOAD_BYTES = 16
STREAM_COUNT = 10000  # messages per ServerStream call; calls repeat until the window ends
TICK = 0.01  # ticker greenlet: gevent.sleep(TICK) in a loop
PROGRESS_EVERY = 0.5  # child prints a progress line this often (s)
POLL = 0.05  # the child's native clock thread polls this often (s)
CHILD_GRACE = 5.0  # child gives up this long after its window if callers have not finished
JOIN_SECONDS = 2.0  # after the window, callers get this long to finish their call
HARD_KILL_EXTRA = 20.0  # parent kills the child at warm-up + duration + this
STALL_SECONDS = 1.0  # no op completed for this long inside the window: "stalled"
CALL_TIMEOUT = 10.0  # deadline of each unary call
GRPCIO_WORKERS = 16


# --- child ------------------------------------------------------------------------------


def child(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=IMPLS)
    ap.add_argument("--test", choices=TESTS, required=True)
    ap.add_argument("--callers", type=int, default=1)
    ap.add_argument("--warmup", type=float, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--threadpool-size", type=int, default=None)
    args = ap.parse_args(argv)
    impl = args.child

    import faulthandler
    from concurrent import futures

    import gevent
    from gevent import monkey

    real_start_thread = monkey.get_original("_thread", "start_new_thread")
    real_sleep = monkey.get_original("time", "sleep")

    def emit(kind, obj):
        # One write(2) per line (< PIPE_BUF), from greenlets and the native thread.
        os.write(1, ("%s %s\n" % (kind, json.dumps(obj, sort_keys=True))).encode())

    if args.threadpool_size:
        # gevent's native thread pool, where init_gevent parks grpcio's blocking
        # completion-queue waits (default size: gevent.hub.Hub.threadpool_size).
        gevent.get_hub().threadpool.maxsize = args.threadpool_size
    threadpool_size = gevent.get_hub().threadpool.maxsize

    import grpc

    if impl == "grpc_green":
        import grpc_green.hub

        if grpc.__name__ != "grpc_green":
            emit(
                "ERROR",
                {
                    "error": "patch_all(grpc=True) left grpc as %s (%s): gevent did "
                    "not find grpc_green's plugin" % (grpc.__name__, grpc.__file__)
                },
            )
            os._exit(2)
        hub = grpc_green.hub.kind()
        if hub != "gevent":
            emit("ERROR", {"error": "grpc_green runs on the %r hub, not gevent's" % hub})
            os._exit(2)
        version = getattr(grpc, "__version__", None)
    else:
        from grpc.experimental import gevent as grpc_gevent

        grpc_gevent.init_gevent()
        if "grpc_green" in sys.modules or grpc.__name__ != "grpc":
            emit("ERROR", {"error": "grpc is not grpcio: %s" % grpc.__file__})
            os._exit(2)
        hub = "gevent (init_gevent)"
        version = grpc.__version__

    sys.path.insert(0, GEN)
    import echo_pb2

    EchoMsg = echo_pb2.EchoMsg
    pad = bytes(i % 251 for i in range(PAYLOAD_BYTES - 4))

    # -- server: the same generic handlers on both implementations
    def unary(request, context):
        return EchoMsg(payload=request.payload)

    def server_stream(request, context):
        tail = bytes(i % 251 for i in range(request.payload_bytes - 4))
        for i in range(request.count):
            yield EchoMsg(payload=i.to_bytes(4, "big") + tail)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=GRPCIO_WORKERS))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(
                        unary,
                        request_deserializer=EchoMsg.FromString,
                        response_serializer=EchoMsg.SerializeToString,
                    ),
                    "ServerStream": grpc.unary_stream_rpc_method_handler(
                        server_stream,
                        request_deserializer=echo_pb2.StreamRequest.FromString,
                        response_serializer=EchoMsg.SerializeToString,
                    ),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        emit("ERROR", {"error": "could not bind 127.0.0.1:0"})
        os._exit(2)
    server.start()
    channel = grpc.insecure_channel("127.0.0.1:%d" % port)
    # The multicallables a grpc_tools-generated EchoStub builds.
    unary_call = channel.unary_unary(
        "/bench.Echo/Unary",
        request_serializer=EchoMsg.SerializeToString,
        response_deserializer=EchoMsg.FromString,
        _registered_method=True,
    )
    stream_call = channel.unary_stream(
        "/bench.Echo/ServerStream",
        request_serializer=echo_pb2.StreamRequest.SerializeToString,
        response_deserializer=EchoMsg.FromString,
        _registered_method=True,
    )

    # Shared state: greenlets write, the native clock thread reads (and sets
    # the window flags). Plain ints, floats and lists under the GIL.
    st = {
        "phase": "start",
        "ops": 0,
        "errors": 0,
        "first_errors": [],
        "wrong": 0,
        "measuring": False,
        "stop": False,
        "latencies": [],
        "ticks": 0,
        "last_tick": None,
        "tick_lag_max": 0.0,
        "tick_lags": [],
        "stale_max": 0.0,
        "window": None,
        "done": False,
    }

    def note_error(e):
        st["errors"] += 1
        if len(st["first_errors"]) < 3:
            code = getattr(e, "code", None)
            st["first_errors"].append(
                "%s%s: %s"
                % (
                    type(e).__name__,
                    " %s" % code() if callable(code) else "",
                    (e.details() if hasattr(e, "details") and callable(e.details) else str(e)),
                )
            )

    def ticker():
        st["last_tick"] = time.monotonic()
        while not st["stop"]:
            t = time.monotonic()
            gevent.sleep(TICK)
            now = time.monotonic()
            st["last_tick"] = now
            st["ticks"] += 1
            if st["measuring"]:
                lag = now - t - TICK
                st["tick_lags"].append(lag)
                if lag > st["tick_lag_max"]:
                    st["tick_lag_max"] = lag

    def caller(index):
        payload = index.to_bytes(4, "big") + pad
        request = EchoMsg(payload=payload)
        while not st["stop"]:
            t = time.perf_counter()
            try:
                reply = unary_call(request, timeout=CALL_TIMEOUT)
            except Exception as e:  # noqa: BLE001 -- counted and reported
                note_error(e)
                gevent.sleep(0.01)
                continue
            dt = time.perf_counter() - t
            if reply.payload != payload:
                st["wrong"] += 1
                continue
            st["ops"] += 1
            if st["measuring"]:
                st["latencies"].append(dt)

    def streamer():
        request = echo_pb2.StreamRequest(count=STREAM_COUNT, payload_bytes=PAYLOAD_BYTES)
        while not st["stop"]:
            n, last = 0, None
            try:
                call = stream_call(request, timeout=60)
                for msg in call:
                    n += 1
                    st["ops"] += 1
                    last = msg
                    if st["stop"]:
                        call.cancel()
                        break
            except Exception as e:  # noqa: BLE001
                note_error(e)
                gevent.sleep(0.01)
                continue
            if not st["stop"] and (
                n != STREAM_COUNT
                or last is None
                or int.from_bytes(last.payload[:4], "big") != n - 1
            ):
                st["wrong"] += 1

    # -- the native clock thread: window boundaries, progress lines, watchdog
    t0 = time.monotonic()
    t_start = t0 + args.warmup
    t_end = t_start + args.duration
    give_up = t_end + CHILD_GRACE

    def snapshot():
        now = time.monotonic()
        last = st["last_tick"]
        stale = now - last if last is not None else 0.0
        w = st["window"]
        window_ops = 0 if w is None else w.get("ops_end", st["ops"]) - w["ops_start"]
        return {
            "t": round(now - t0, 3),
            "phase": st["phase"],
            "ops": st["ops"],
            "window_ops": window_ops,
            "ticker_stale_max_s": round(st["stale_max"], 4),
            "tick_lag_max_s": round(st["tick_lag_max"], 4),
            "errors": st["errors"],
            "wrong": st["wrong"],
            "ticks": st["ticks"],
            "ticker_stale_s": round(stale, 4),
        }

    def clock():
        next_progress = t0 + PROGRESS_EVERY
        while True:
            real_sleep(POLL)
            now = time.monotonic()
            last = st["last_tick"]
            if st["measuring"] and last is not None:
                # A hub that never comes back never lets the ticker record its lag.
                st["stale_max"] = max(st["stale_max"], now - last - TICK)
            if st["window"] is None and now >= t_start:
                st["window"] = {
                    "start": now,
                    "ops_start": st["ops"],
                    "cpu_start": time.process_time(),
                }
                st["latencies"] = []
                st["measuring"] = True
                st["phase"] = "measure"
            elif st["window"] is not None and "end" not in st["window"] and now >= t_end:
                st["measuring"] = False
                st["window"].update(end=now, ops_end=st["ops"], cpu_end=time.process_time())
                st["phase"] = "finish"
                st["stop"] = True
            if now >= next_progress:
                next_progress += PROGRESS_EVERY
                emit("PROGRESS", snapshot())
            if st["done"]:
                return
            if now >= give_up:
                emit("HUNG", snapshot())
                sys.stderr.write(
                    "gevent_inprocess child (%s): callers still running %.1f s "
                    "after the window; native threads' stacks:\n" % (impl, CHILD_GRACE)
                )
                faulthandler.dump_traceback(all_threads=True)
                sys.stderr.flush()
                os._exit(3)

    real_start_thread(clock, ())

    # -- one checked call before anything is timed
    st["phase"] = "check"
    try:
        if args.test == "unary":
            r = unary_call(EchoMsg(payload=b"check" + pad), timeout=CALL_TIMEOUT)
            if r.payload != b"check" + pad:
                raise RuntimeError("check call: reply does not echo the request")
        else:
            got = list(
                stream_call(
                    echo_pb2.StreamRequest(count=100, payload_bytes=PAYLOAD_BYTES),
                    timeout=CALL_TIMEOUT,
                )
            )
            if [int.from_bytes(m.payload[:4], "big") for m in got] != list(range(100)):
                raise RuntimeError("check call: stream did not deliver messages 0..99")
    except Exception as e:  # noqa: BLE001
        emit("ERROR", {"error": "check call failed: %s: %s" % (type(e).__name__, e)})
        os._exit(2)
    st["phase"] = "warmup" if st["window"] is None else st["phase"]

    tick = gevent.spawn(ticker)
    if args.test == "unary":
        workers = [gevent.spawn(caller, i) for i in range(args.callers)]
    else:
        workers = [gevent.spawn(streamer)]
    while not st["stop"]:
        gevent.sleep(POLL)
    # Callers finish the call they are in (sub-millisecond unless stalled).
    gevent.joinall(workers + [tick], timeout=JOIN_SECONDS)
    w = st["window"]
    lat = sorted(st["latencies"])
    lags = sorted(st["tick_lags"])

    def pct(values, p):
        return values[min(len(values) - 1, int(p * len(values)))] if values else None

    seconds = w["end"] - w["start"]
    ops = w["ops_end"] - w["ops_start"]
    result = {
        "impl": impl,
        "test": args.test,
        "callers": args.callers,
        "hub": hub,
        "grpc_version": version,
        "gevent_threadpool_maxsize": threadpool_size,
        "seconds": round(seconds, 3),
        "ops": ops,
        "per_s": round(ops / seconds, 1),
        "latency_ms": {
            "p50": pct(lat, 0.50) and round(1e3 * pct(lat, 0.50), 3),
            "p99": pct(lat, 0.99) and round(1e3 * pct(lat, 0.99), 3),
            "max": round(1e3 * lat[-1], 3) if lat else None,
            "count": len(lat),
        }
        if args.test == "unary"
        else None,
        "ticker": {
            "interval_s": TICK,
            "ticks": len(lags),
            "lag_max_ms": round(1e3 * max(st["tick_lag_max"], st["stale_max"]), 2),
            "lag_p99_ms": pct(lags, 0.99) and round(1e3 * pct(lags, 0.99), 2),
            "lag_p50_ms": pct(lags, 0.50) and round(1e3 * pct(lags, 0.50), 2),
        },
        "cpu_share": round((w["cpu_end"] - w["cpu_start"]) / seconds, 3),
        "errors": st["errors"],
        "first_errors": st["first_errors"],
        "wrong": st["wrong"],
        "workers_unfinished": sum(1 for g in workers if not g.dead),
    }
    st["done"] = True
    emit("RESULT", result)
    # Teardown is not measured; do not let it hang the run either.
    try:
        with gevent.Timeout(2):
            channel.close()
            server.stop(None)
    except BaseException:  # noqa: BLE001
        pass
    os._exit(0)


# --- parent -----------------------------------------------------------------------------


def run_row(impl, test, callers, args):
    """One child process; returns its row (never raises, never blocks past the hard limit)."""
    import queue
    import signal
    import subprocess
    import threading

    from procs import impl_env, pinned

    row = {
        "impl": impl,
        "test": test,
        "callers": callers,
        "ok": False,
        "status": None,
        "error": None,
        "progress": [],
    }
    cmd = pinned(
        args.core,
        [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            impl,
            "--test",
            test,
            "--callers",
            str(callers),
            "--warmup",
            str(args.warmup),
            "--duration",
            str(args.duration),
        ]
        + (
            ["--threadpool-size", str(args.grpcio_threadpool_size)]
            if impl == "grpcio" and args.grpcio_threadpool_size
            else []
        ),
    )
    row["command"] = " ".join(cmd)
    env = impl_env(impl)
    hard_limit = args.warmup + args.duration + HARD_KILL_EXTRA
    lines = queue.Queue()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    stderr_chunks = []

    def read_out():
        for raw in proc.stdout:
            lines.put(raw.decode(errors="replace").rstrip("\n"))
        lines.put(None)

    def read_err():
        stderr_chunks.append(proc.stderr.read())

    threading.Thread(target=read_out, daemon=True).start()
    err_thread = threading.Thread(target=read_err, daemon=True)
    err_thread.start()
    result = hung = error = None
    killed = False
    last_line_at = t0
    while True:
        remaining = hard_limit - (time.monotonic() - t0)
        try:
            line = lines.get(timeout=max(0.0, remaining))
        except queue.Empty:
            line = "TIMEOUT"
        if line is None:
            break
        if line == "TIMEOUT":
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed = True
            # Nothing came from the child's native clock thread for this long:
            # it could not take the GIL, so no greenlet ran either.
            row["silent_before_kill_s"] = round(time.monotonic() - last_line_at, 2)
            break
        kind, _, payload = line.partition(" ")
        try:
            obj = json.loads(payload)
        except ValueError:
            continue  # stray output (e.g. a library's log line)
        last_line_at = time.monotonic()
        if kind == "PROGRESS":
            row["progress"].append(obj)
        elif kind == "RESULT":
            result = obj
        elif kind == "HUNG":
            hung = obj
        elif kind == "ERROR":
            error = obj.get("error")
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
    else:
        try:  # the child's own threads or subprocesses must not outlive it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    err_thread.join(timeout=2)
    row["wall_s"] = round(time.monotonic() - t0, 2)
    row["exit_status"] = proc.returncode
    stderr = b"".join(stderr_chunks).decode(errors="replace").strip()

    prog = row["progress"]
    # Progress lines of the window: those taken in it and the first one after it.
    in_window = [p for p in prog if p["phase"] == "measure"]
    in_window += [p for p in prog if p["phase"] == "finish"][:1]
    # Longest stretch inside the window in which no op completed (0.5 s resolution).
    longest, run_start, last_ops = 0.0, None, None
    for p in in_window:
        if last_ops is not None and p["ops"] == last_ops:
            longest = max(longest, p["t"] - run_start)
        else:
            run_start, last_ops = p["t"], p["ops"]
    row["longest_no_progress_s"] = round(longest, 2)
    row["ops_total_seen"] = prog[-1]["ops"] if prog else 0

    if result is not None:
        row.update(result)
        row["ok"] = True
        stalled = result["ops"] == 0 or longest >= STALL_SECONDS or result["workers_unfinished"] > 0
        row["status"] = "stalled" if stalled else "ok"
        notes = []
        if result["errors"] or result["wrong"]:
            notes.append(
                "%d errors, %d wrong replies %s"
                % (result["errors"], result["wrong"], "; ".join(result["first_errors"]))
            )
        if stalled:
            notes.append(
                "%d ops in the window, none for %.1f s; %d of %d %s still inside "
                "a call %.0f s after it"
                % (
                    result["ops"],
                    longest,
                    result["workers_unfinished"],
                    len_workers(result),
                    "callers" if test == "unary" else "streamers",
                    JOIN_SECONDS,
                )
            )
        row["error"] = "; ".join(notes) or None
    elif hung is not None or killed:
        # What the child got before it stopped answering.
        snap = hung or (prog[-1] if prog else {})
        w_ops = snap.get("window_ops", 0)
        row["ops_total_seen"] = snap.get("ops", row["ops_total_seen"])
        row["status"] = "stalled"
        row["ops"] = w_ops
        row["seconds"] = args.duration
        row["per_s"] = round(w_ops / args.duration, 1)
        lag = max(
            snap.get("ticker_stale_max_s", 0.0),
            snap.get("tick_lag_max_s", 0.0),
            row.get("silent_before_kill_s", 0.0),
        )
        row["ticker"] = {"lag_max_ms": round(1e3 * lag, 2), "lag_max_is_lower_bound": True}
        row["error"] = "%s; %d ops completed in all, %d in the %.0f s window" % (
            "child's hub stopped: it gave up %.0f s after its window" % CHILD_GRACE
            if hung
            else "child killed after %.0f s with no result, its threads silent "
            "for the last %.1f s" % (hard_limit, row["silent_before_kill_s"]),
            row["ops_total_seen"],
            w_ops,
            args.duration,
        )
        row["ok"] = True  # a figure, even if it is a stall
    else:
        row["status"] = "failed"
        row["error"] = error or "child exit %s with no result" % proc.returncode
    if stderr and (row["status"] != "ok" or not row["ok"]):
        row["stderr_tail"] = stderr[-3000:]
    return row


def len_workers(result):
    return result["callers"] if result["test"] == "unary" else 1


def fmt_ms(v):
    return "-" if v is None else ("%.2f" % v if v < 100 else "%.0f" % v)


def print_table(rows, args, loads):
    print()
    print(
        "gRPC inside one gevent process (server + client greenlets + ticker), %s, "
        "%.0f s window after %.0f s warm-up, 16 B payloads"
        % (
            "unpinned" if args.core is None else "pinned to core %d" % args.core,
            args.duration,
            args.warmup,
        )
    )
    print(
        "%d CPUs, load average %.2f at start, %.2f at end%s"
        % (
            os.cpu_count(),
            loads[0],
            loads[1],
            "; grpcio rows: gevent thread pool maxsize %d (not the default)"
            % args.grpcio_threadpool_size
            if args.grpcio_threadpool_size
            else "",
        )
    )
    hdr = "%-24s %-14s %7s %12s %9s %9s %11s %7s  %s" % (
        "implementation",
        "test",
        "callers",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "ticker max",
        "ratio",
        "status",
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        lat = r.get("latency_ms") or {}
        tick = r.get("ticker") or {}
        per_s = r.get("per_s")
        print(
            "%-24s %-14s %7s %12s %9s %9s %11s %7s  %s"
            % (
                IMPLS[r["impl"]],
                TESTS[r["test"]],
                r["callers"] if r["test"] == "unary" else 1,
                f"{per_s:,.0f}" if per_s is not None else "-",
                fmt_ms(lat.get("p50")),
                fmt_ms(lat.get("p99")),
                fmt_ms(tick.get("lag_max_ms")) + " ms"
                if tick.get("lag_max_ms") is not None
                else "-",
                r.get("ratio_text", "-"),
                r["status"] + (": " + r["error"] if r["error"] else ""),
            )
        )
    print()
    print("ops/s = unary calls/s (unary) or messages received/s (server stream), in the window;")
    print("p50/p99 = unary call latency seen by a caller; ticker max = the largest delay of a")
    print(
        "gevent.sleep(%.2f) wake-up in the window; ratio = grpc_green / grpcio ops/s, same run"
        % TICK
    )
    print(
        "(inf: grpcio completed nothing). stalled = no op completed for %.0f s or more in the "
        "window, or callers stuck after it." % STALL_SECONDS
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--duration", type=float, default=5.0, help="measured window per row, seconds (default 5)"
    )
    ap.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up before the window, seconds (default 1)"
    )
    ap.add_argument(
        "--callers",
        default="10,500",
        help="comma-separated numbers of unary caller greenlets (default 10,500)",
    )
    ap.add_argument(
        "--impls", default=",".join(IMPLS), help="comma-separated subset of: " + ", ".join(IMPLS)
    )
    ap.add_argument(
        "--tests", default=",".join(TESTS), help="comma-separated subset of: " + ", ".join(TESTS)
    )
    ap.add_argument(
        "--grpcio-threadpool-size",
        type=int,
        default=None,
        help="grpcio rows: set gevent's hub thread pool (where init_gevent "
        "parks completion-queue waits) to this size; default: gevent's "
        "own default (10), as grpcio documents nothing else",
    )
    ap.add_argument(
        "--no-pin", action="store_true", help="do not pin the child processes to one core"
    )
    ap.add_argument("--output", default=os.path.join(BENCH, "results", "gevent_inprocess.json"))
    args = ap.parse_args()
    impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    tests = [s.strip() for s in args.tests.split(",") if s.strip()]
    try:
        callers = [int(s) for s in args.callers.split(",") if s.strip()]
    except ValueError:
        ap.error("--callers takes comma-separated integers")
    bad = [i for i in impls if i not in IMPLS] + [t for t in tests if t not in TESTS]
    if bad:
        ap.error("unknown implementations/tests: %s" % ", ".join(bad))
    if args.duration <= 0 or args.warmup < 0.2 or min(callers or [0]) < 1:
        ap.error("--duration > 0, --warmup >= 0.2, callers >= 1")

    import datetime
    import platform

    sys.path.insert(0, BENCH)
    from run import BenchError, cores, generate_protos, log

    server_core, client_core = cores()
    args.core = None if args.no_pin else client_core
    if args.core is None and not args.no_pin:
        log("warning: fewer than 2 usable cores or no taskset; running unpinned")
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        log(
            "warning: load average %.2f before starting; other work on this machine "
            "will skew the figures" % load_at_start[0]
        )
    try:
        generate_protos()
    except BenchError as e:
        log("gevent_inprocess: %s" % e)
        return 1

    plan = []
    for test in tests:
        for n in callers if test == "unary" else [1]:
            for impl in impls:
                plan.append((impl, test, n))
    rows = []
    t0 = time.monotonic()
    for impl, test, n in plan:
        row = run_row(impl, test, n, args)
        rows.append(row)
        log(
            "[gevent-inprocess] %s %s x%d: %s, %s ops/s, ticker max %s ms%s"
            % (
                impl,
                test,
                n,
                row["status"],
                row.get("per_s", "-"),
                (row.get("ticker") or {}).get("lag_max_ms", "-"),
                " (%s)" % row["error"] if row["error"] else "",
            )
        )
    wall = time.monotonic() - t0

    for r in rows:
        base = next(
            (
                b
                for b in rows
                if b["impl"] == BASELINE and b["test"] == r["test"] and b["callers"] == r["callers"]
            ),
            None,
        )
        r["ratio_vs_grpcio"] = None
        if base is None or r.get("per_s") is None or base.get("per_s") is None:
            r["ratio_text"] = "-"
        elif base["per_s"] > 0:
            r["ratio_vs_grpcio"] = round(r["per_s"] / base["per_s"], 3)
            r["ratio_text"] = "%.2fx" % r["ratio_vs_grpcio"]
        else:
            r["ratio_text"] = "inf" if r["per_s"] > 0 else "-"
    load_at_end = os.getloadavg()
    print_table(rows, args, (load_at_start[0], load_at_end[0]))
    for r in rows:
        if r.get("stderr_tail"):
            print(
                "\n%s %s x%d stderr (tail):\n%s"
                % (r["impl"], r["test"], r["callers"], r["stderr_tail"][-1500:])
            )

    git_head = None
    try:
        import subprocess

        git_head = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    report = {
        "benchmark": "gevent_inprocess",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": {
            "process": "one subprocess per row: server, client greenlets and a ticker greenlet "
            "under gevent.monkey.patch_all()",
            "grpc_green": "monkey.patch_all(grpc=True); grpc_green on gevent's hub",
            "grpcio": "monkey.patch_all(); import grpc; grpc.experimental.gevent.init_gevent(); "
            "server ThreadPoolExecutor(%d)" % GRPCIO_WORKERS,
            "channel": "one channel shared by all callers, 127.0.0.1",
            "payload_bytes": PAYLOAD_BYTES,
            "stream_messages_per_call": STREAM_COUNT,
            "ticker_interval_s": TICK,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "core": args.core,
            "stall_seconds": STALL_SECONDS,
            "grpcio_gevent_threadpool_maxsize": args.grpcio_threadpool_size or "gevent default",
            "hard_kill_s": args.warmup + args.duration + HARD_KILL_EXTRA,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in load_at_start],
            "loadavg_at_end": [round(x, 2) for x in load_at_end],
        },
        "git_head": git_head,
        "wall_s": round(wall, 1),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print("results: %s" % os.path.relpath(args.output, os.getcwd()))
    green_ok = all(
        r["status"] == "ok" and not r["error"] for r in rows if r["impl"] == "grpc_green"
    )
    return 0 if green_ok else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[1:])
    else:
        sys.exit(main())
