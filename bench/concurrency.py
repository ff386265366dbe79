#!/usr/bin/env python3
"""A slow dependency: 10,000 unary calls at once, each handler waiting 1 s.

The server (bench/servers/wait_server.py, pinned to core 0) answers
/bench.Slow/Wait after waiting --delay seconds: a cooperative
grpc_green.hub.sleep on grpc_green, time.sleep on a thread of
grpc.server(futures.ThreadPoolExecutor()) -- the executor's default
max_workers -- on grpcio. A grpc_green load generator (pinned to core 1,
one greenlet per call over --channels channels) starts --requests calls at
once with a --deadline, after a warm-up, and reports when each one started
and ended. Meanwhile the parent samples the server's VmRSS every 5 ms.

Reported per server: time from the first start until all calls ended and
until the first / median / last successful reply, calls by status code, the
server's peak RSS while every call was in flight minus its idle RSS after
warm-up, per in-flight call. A server that cannot finish within --cap
seconds is stopped there (the calls still running end with their deadline,
by default the same 60 s) and its completion time is projected from the
rate at which it answered.

    .venv/bin/python bench/concurrency.py [--requests N] [--channels C]
                                          [--delay S] [--deadline S] [--cap S]
                                          [--servers grpc_green,grpcio_sync]

Prints a table and writes bench/results/concurrency.json. Exit status 0 when
every grpc_green row ran without an error status (the targets are reported,
not enforced), 1 otherwise. See bench/README.md.
"""

import argparse
import bisect
import os
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from procs import (  # noqa: E402  (bench/ is on sys.path from here)
    GEN,
    RESULTS,
    BenchError,
    Child,
    Sampler,
    WaitServer,
    advertised_settings,
    cores,
    cpu_seconds,
    emit,
    finish_row,
    generate_protos,
    git_head,
    grpcio_version,
    impl_env,
    log,
    machine,
    max_streams_text,
    pinned,
    raise_nofile,
    write_json,
)

SERVERS = {"grpc_green": "grpc_green (hub.sleep)", "grpcio_sync": "grpcio sync (time.sleep, pool)"}
TARGET_ALL_DONE_S = 2.0  # the targets for grpc_green
TARGET_KIB_PER_RPC = 16.0
PROGRESS_EVERY = 0.5
WARM_TIMEOUT = 60.0  # the child must be warmed up within this
SETTLE = 0.5  # idle server before its idle RSS is read
PAYLOAD_BYTES = 16


# --- child: the grpc_green load generator ---------------------------------------------


def child(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--channels", type=int, required=True)
    ap.add_argument("--deadline", type=float, required=True)
    ap.add_argument("--cap", type=float, required=True)
    ap.add_argument("--warmup-fast", type=int, required=True)
    ap.add_argument("--warmup-slow", type=int, required=True)
    args = ap.parse_args(argv)
    raise_nofile()

    import collections

    import grpc_green as grpc
    from grpc_green import hub

    sys.path.insert(0, GEN)
    import echo_pb2

    EchoMsg = echo_pb2.EchoMsg
    from procs import status

    target = "127.0.0.1:%d" % args.port
    channels = [grpc.insecure_channel(target) for _ in range(args.channels)]
    codec = dict(
        request_serializer=EchoMsg.SerializeToString,
        response_deserializer=EchoMsg.FromString,
        _registered_method=True,
    )
    fast = [ch.unary_unary("/bench.Echo/Unary", **codec) for ch in channels]
    slow = [ch.unary_unary("/bench.Slow/Wait", **codec) for ch in channels]
    C = args.channels
    request = EchoMsg(payload=bytes(range(PAYLOAD_BYTES)))

    # -- warm-up: every channel connects, then a burst of fast calls, then a few slow ones
    def warm(calls, n, timeout):
        failures = []

        def one(i):
            try:
                if calls[i % C](request, timeout=timeout).payload != request.payload:
                    failures.append("reply does not echo the request")
            except grpc.RpcError as e:
                failures.append("%s: %s" % (e.code().name, e.details()))

        tasks = [hub.spawn(one, i) for i in range(n)]
        if not hub.joinall(tasks, timeout=timeout + 5):
            failures.append("warm-up calls still running after %.0f s" % (timeout + 5))
        return failures

    t = time.monotonic()
    failures = (
        warm(fast, C, 10)
        + warm(fast, max(C, args.warmup_fast), 20)
        + warm(slow, args.warmup_slow, 30)
    )
    if failures:
        emit("ERROR", {"error": "warm-up failed (%d): %s" % (len(failures), failures[0])})
        os._exit(2)
    emit(
        "WARM",
        {"seconds": round(time.monotonic() - t, 3), "client_rss_kib": status(os.getpid())["VmRSS"]},
    )
    if sys.stdin.readline().strip() != "GO":  # the parent reads the idle server meanwhile
        os._exit(2)

    # -- the run
    N = args.requests
    starts = [0.0] * N
    ends = [None] * N
    call_codes = [None] * N
    codes = collections.Counter()
    st = {"started": 0, "done": 0, "ok": 0}
    all_done = hub.Event()
    first_error = {}

    def one(i):
        call = slow[i % C]
        starts[i] = time.monotonic()
        st["started"] += 1
        try:
            reply = call(request, timeout=args.deadline)
            code = "OK" if reply.payload == request.payload else "WRONG_REPLY"
        except grpc.RpcError as e:
            code = e.code().name
            first_error.setdefault(code, e.details())
        except Exception as e:  # noqa: BLE001 -- counted, reported
            code = type(e).__name__
            first_error.setdefault(code, str(e))
        ends[i] = time.monotonic()
        call_codes[i] = code
        codes[code] += 1
        st["done"] += 1
        if code == "OK":
            st["ok"] += 1
        if st["done"] == N:
            all_done.set()

    t_go = time.monotonic()
    cpu_go = time.process_time()
    running = {"on": True}

    def progress():
        while running["on"]:
            hub.sleep(PROGRESS_EVERY)
            emit(
                "PROGRESS",
                {
                    "t": round(time.monotonic() - t_go, 3),
                    "started": st["started"],
                    "done": st["done"],
                    "ok": st["ok"],
                },
            )

    hub.spawn(progress)
    for i in range(N):
        hub.spawn(one, i)
    t_spawned = time.monotonic()
    # All done, or the cap (+2 s, so that calls whose deadline is the cap end first).
    finished = all_done.wait(max(0.0, args.cap + 2.0 - (time.monotonic() - t_go)))
    t_stop = time.monotonic()
    cpu_stop = time.process_time()
    running["on"] = False
    started = [s for s in starts if s]
    first = min(started) if started else t_go

    def rel(values):
        return sorted(round(v - first, 4) for v in values)

    emit(
        "RESULT",
        {
            "t_go": t_go,
            "first_start": first,
            "spawn_s": round(t_spawned - t_go, 4),
            "finished": finished,
            "waited_s": round(t_stop - t_go, 3),
            "started": st["started"],
            "done": st["done"],
            "ok": st["ok"],
            "outstanding": N - st["done"],
            "codes": dict(codes),
            "first_error": first_error,
            "starts": rel(started),
            "ends": rel(e for e in ends if e is not None),
            "ends_ok": rel(e for e, c in zip(ends, call_codes, strict=True) if c == "OK"),
            "client_rss_kib": status(os.getpid())["VmRSS"],
            "client_cpu_s": round(cpu_stop - cpu_go, 3),
        },
    )
    os._exit(0)


# --- parent ------------------------------------------------------------------------------


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def analyse(row, res, idle, after, samples, n):
    """Timing and memory figures of one run, from the child's RESULT and the RSS samples."""
    starts, ends, ends_ok = res["starts"], res["ends"], res["ends_ok"]
    first = res["first_start"]
    row["last_start_s"] = starts[-1] if starts else None
    row["all_ended_s"] = ends[-1] if res["done"] == n else None
    row["all_ok"] = res["ok"] == n
    row["first_ok_s"] = ends_ok[0] if ends_ok else None
    row["median_ok_s"] = percentile(ends_ok, 0.5)
    row["last_ok_s"] = ends_ok[-1] if ends_ok else None
    row["errors"] = {c: k for c, k in res["codes"].items() if c != "OK"}
    if res["outstanding"]:
        row["errors"]["(no reply when the client stopped)"] = res["outstanding"]
    row["projected_all_s"] = None
    if not row["all_ok"] and ends_ok and ends_ok[-1] > 0:
        # Replies per second since the first start, kept up until all are answered.
        rate = len(ends_ok) / ends_ok[-1]
        row["ok_per_s"] = round(rate, 2)
        row["projected_all_s"] = round(n / rate, 1)

    def inflight(t):
        return bisect.bisect_right(starts, t) - bisect.bisect_right(ends, t)

    # The calls' memory: the server's largest RSS from the start until the first
    # reply, over the calls still in flight at that reply (those the server
    # refused or failed before it are not counted; their memory may be).
    rel = [(t - first, rss) for t, rss in samples]
    t_reply = ends_ok[0] if ends_ok else (ends[-1] if ends else float("inf"))
    window = [rss for t, rss in rel if t < t_reply]
    idle_kib = idle["VmRSS"]
    row["idle_rss_kib"] = idle_kib
    row["rss_samples"] = len(samples)
    row["peak_window_s"] = [0.0, round(t_reply, 3) if t_reply != float("inf") else None]
    row["peak_window_samples"] = len(window)
    if window:
        held = inflight(t_reply - 1e-6) if t_reply != float("inf") else n - len(ends)
        peak = max(window)
        row["peak_inflight_rss_kib"] = peak
        row["inflight_at_peak"] = held
        row["kib_per_call_started"] = round((peak - idle_kib) / n, 2)
        if held:
            row["kib_per_inflight_rpc"] = round((peak - idle_kib) / held, 2)
    row["peak_rss_run_kib"] = max((rss for _, rss in rel), default=None)
    if after:
        row["hwm_kib"] = after["VmHWM"]
        row["rss_after_kib"] = after["VmRSS"]
        row["kib_per_rpc_hwm"] = round((after["VmHWM"] - idle_kib) / n, 2)
    # For the JSON: RSS every 50 ms and replies per 100 ms.
    thin, last_t = [], None
    for t, rss in rel:
        if last_t is None or t - last_t >= 0.05:
            thin.append([round(t, 3), rss])
            last_t = t
    row["rss_timeline"] = thin
    hist = {}
    for e in ends_ok:
        key = "%.1f" % (int(e * 10) / 10)
        hist[key] = hist.get(key, 0) + 1
    row["ok_per_100ms"] = hist


def run_row(impl, args, server_core, client_core):
    row = {"server": impl, "label": SERVERS[impl], "ok": False, "error": None}
    server = WaitServer(impl, server_core, delay=args.delay)
    child = None
    try:
        port = server.start()
        row["settings"] = advertised_settings(port)
        row["max_concurrent_streams"] = max_streams_text(row["settings"])
        cmd = pinned(
            client_core,
            [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                "--port",
                str(port),
                "--requests",
                str(args.requests),
                "--channels",
                str(args.channels),
                "--deadline",
                str(args.deadline),
                "--cap",
                str(args.cap),
                "--warmup-fast",
                str(args.warmup_fast),
                "--warmup-slow",
                str(args.warmup_slow),
            ],
        )
        row["command"] = " ".join(cmd)
        row["server_command"] = " ".join(server.argv)
        child = Child(cmd, impl_env("grpc_green"), WARM_TIMEOUT + args.cap + 30)
        _, warm = child.expect(["WARM"], timeout=WARM_TIMEOUT)
        row["warmup"] = warm
        time.sleep(SETTLE)
        idle = server.status()
        row["idle_server_stats"] = dict(server.stats)
        sampler = Sampler(server.pid, args.sample_interval)
        sampler.start()
        cpu_idle = cpu_seconds(server.pid)
        child.send("GO")
        log(
            "[concurrency] %s: idle server RSS %.1f MiB; %d calls starting"
            % (impl, idle["VmRSS"] / 1024, args.requests)
        )
        progress = []

        def on_message(kind, obj):
            if kind != "PROGRESS":
                return
            progress.append(obj)
            if obj["t"] <= 3.0 or int(obj["t"] / PROGRESS_EVERY) % 10 == 0:
                rss = sampler.samples[-1][1] if sampler.samples else 0
                log(
                    "[concurrency] %s t=%.1f s: %d started, %d ended (%d OK); server RSS "
                    "%.1f MiB, handlers running %s"
                    % (
                        impl,
                        obj["t"],
                        obj["started"],
                        obj["done"],
                        obj["ok"],
                        rss / 1024,
                        server.stats.get("active", "?"),
                    )
                )

        _, res = child.expect(["RESULT"], on_message=on_message)
        samples = sampler.stop()
        cpu_end = cpu_seconds(server.pid)
        time.sleep(0.2)
        after = server.status()
        if cpu_idle is not None and cpu_end is not None:
            row["server_cpu_s"] = round(cpu_end - cpu_idle, 2)
        row["progress"] = progress
        row["server_stats"] = dict(server.stats)
        row["server_max_handlers"] = server.stats.get("max_active")
        row["server_alive"] = server.alive()
        for key in (
            "spawn_s",
            "finished",
            "waited_s",
            "started",
            "done",
            "outstanding",
            "codes",
            "first_error",
            "client_rss_kib",
            "client_cpu_s",
        ):
            row[key] = res[key]
        row["ok_count"] = res["ok"]
        analyse(row, res, idle, after, samples, args.requests)
        row["ok"] = True
    except BenchError as e:
        row["error"] = str(e)
    finally:
        finish_row(row, child, server)
    return row


def fmt_s(v):
    return "-" if v is None else "%.2f" % v


def fmt_mib(kib):
    return "-" if kib is None else "%.1f" % (kib / 1024)


def print_table(rows, args, loads):
    print()
    print(
        "slow dependency: %s unary calls started at once, each handler waits %.1f s; "
        "grpc_green client over %d channels, deadline %.0f s, cap %.0f s"
        % (f"{args.requests:,}", args.delay, args.channels, args.deadline, args.cap)
    )
    print(
        "server on core %s, load generator on core %s; %d CPUs, load average %.2f at start, "
        "%.2f at end" % (args.server_core, args.client_core, os.cpu_count(), loads[0], loads[1])
    )
    hdr = "%-31s %13s %10s %24s %8s %9s %9s %9s  %s" % (
        "server",
        "OK/calls",
        "all ended",
        "OK replies 1st/med/last",
        "handlers",
        "idle RSS",
        "peak RSS",
        "per call",
        "errors",
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if not r["ok"]:
            print("%-31s FAILED: %s" % (r["label"], r["error"]))
            continue
        errors = ", ".join("%s %s" % (c, f"{k:,}") for c, k in sorted(r["errors"].items()))
        print(
            "%-31s %13s %10s %24s %8s %9s %9s %9s  %s"
            % (
                r["label"],
                "%d/%d" % (r["ok_count"], args.requests),
                (fmt_s(r["all_ended_s"]) + " s")
                if r["all_ended_s"] is not None
                else "> %.0f s" % r["waited_s"],
                "%s / %s / %s s"
                % (fmt_s(r["first_ok_s"]), fmt_s(r["median_ok_s"]), fmt_s(r["last_ok_s"])),
                "{:,}".format(r["server_max_handlers"] or 0),
                fmt_mib(r["idle_rss_kib"]) + " MiB",
                fmt_mib(r.get("peak_inflight_rss_kib")) + " MiB",
                ("%.1f KiB" % r["kib_per_inflight_rpc"]) if "kib_per_inflight_rpc" in r else "-",
                errors or "none",
            )
        )
    print()
    print("all ended = from the first call's start until the last call ended (any status);")
    print("OK replies = when the first, median and last successful replies arrived, from the")
    print("first start; handlers = most handlers the server ran at once; peak RSS = the server's")
    print(
        "largest VmRSS from the start until the first reply (sampled every %.0f ms), idle RSS"
        % (1e3 * args.sample_interval)
    )
    print("after warm-up; per call = (peak - idle) / calls still in flight at the first reply.")
    for r in rows:
        if not r["ok"]:
            continue
        notes = []
        if r.get("inflight_at_peak") is not None and r["inflight_at_peak"] != args.requests:
            notes.append(
                "%s calls were still in flight at the first reply (the others had "
                "ended); per call started: %.1f KiB"
                % ("{:,}".format(r["inflight_at_peak"]), r["kib_per_call_started"])
            )
        if r.get("kib_per_rpc_hwm") is not None:
            notes.append(
                "whole-run peak (VmHWM) - idle = %.1f MiB, %.1f KiB per call; RSS after "
                "the run %.1f MiB"
                % (
                    (r["hwm_kib"] - r["idle_rss_kib"]) / 1024,
                    r["kib_per_rpc_hwm"],
                    r["rss_after_kib"] / 1024,
                )
            )
        if r["projected_all_s"] is not None:
            notes.append(
                "stopped after %.0f s with %s OK replies, %.1f per second: at that "
                "rate %s calls take about %s s (%.0f min)"
                % (
                    r["waited_s"],
                    "{:,}".format(r["ok_count"]),
                    r["ok_per_s"],
                    f"{args.requests:,}",
                    "{:,.0f}".format(r["projected_all_s"]),
                    r["projected_all_s"] / 60,
                )
            )
            if r["projected_all_s"] < 120:
                notes[-1] = notes[-1].rsplit(" (", 1)[0]
        if r.get("server_cpu_s") is not None:
            notes.append(
                "CPU time from the start until the client stopped: server %.2f s, "
                "load generator %.2f s" % (r["server_cpu_s"], r["client_cpu_s"])
            )
        notes.append("server advertises MAX_CONCURRENT_STREAMS: %s" % r["max_concurrent_streams"])
        if r["server"] == "grpc_green":
            t_ok = (
                r["all_ok"] and r["last_ok_s"] is not None and r["last_ok_s"] <= TARGET_ALL_DONE_S
            )
            notes.append(
                "target, all %s OK within %.0f s of the first start: %s"
                % (
                    f"{args.requests:,}",
                    TARGET_ALL_DONE_S,
                    ("met (%.2f s)" % r["last_ok_s"])
                    if t_ok
                    else "MISSED (%s)"
                    % (
                        "%.2f s" % r["last_ok_s"]
                        if r["all_ok"]
                        else "%d of %d OK" % (r["ok_count"], args.requests)
                    ),
                )
            )
            per = r.get("kib_per_inflight_rpc")
            notes.append(
                "target, RSS per in-flight call under %.0f KiB: %s"
                % (
                    TARGET_KIB_PER_RPC,
                    "-"
                    if per is None
                    else ("met (%.1f KiB)" if per < TARGET_KIB_PER_RPC else "MISSED (%.1f KiB)")
                    % per,
                )
            )
        print("  %s:" % r["label"])
        for n in notes:
            print("    " + n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10000, help="calls started at once (10000)")
    ap.add_argument(
        "--channels",
        type=int,
        default=20,
        help="client channels (connections) the calls are spread over (20)",
    )
    ap.add_argument("--delay", type=float, default=1.0, help="handler wait, seconds (1.0)")
    ap.add_argument("--deadline", type=float, default=60.0, help="deadline of each call (60)")
    ap.add_argument(
        "--cap",
        type=float,
        default=60.0,
        help="the client stops waiting this long after the start (60)",
    )
    ap.add_argument(
        "--warmup-fast", type=int, default=1000, help="warm-up: fast echo calls at once (1000)"
    )
    ap.add_argument(
        "--warmup-slow",
        type=int,
        default=6,
        help="warm-up: slow calls at once (6, grpcio's default pool on 2 CPUs)",
    )
    ap.add_argument(
        "--sample-interval",
        type=float,
        default=0.005,
        help="server RSS sampling interval, seconds (0.005)",
    )
    ap.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of: " + ", ".join(SERVERS),
    )
    ap.add_argument("--output", default=os.path.join(RESULTS, "concurrency.json"))
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[1:])
    args = ap.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in servers if s not in SERVERS]
    if bad:
        ap.error("unknown servers: %s" % ", ".join(bad))
    if args.requests < 1 or args.channels < 1 or args.cap <= 0 or args.deadline <= 0:
        ap.error("--requests, --channels >= 1; --cap, --deadline > 0")

    import datetime

    args.server_core, args.client_core = cores()
    if args.server_core is None:
        log("warning: fewer than 2 usable cores or no taskset; running unpinned")
    else:  # the RSS sampler thread stays off the server's core
        os.sched_setaffinity(0, {args.client_core})
    raise_nofile()
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        log(
            "warning: load average %.2f before starting; other work on this machine "
            "will skew the timings" % load_at_start[0]
        )
    try:
        generate_protos()
    except BenchError as e:
        log("concurrency: %s" % e)
        return 1
    t0 = time.monotonic()
    rows = []
    for impl in servers:
        log("[concurrency] %s: starting" % impl)
        row = run_row(impl, args, args.server_core, args.client_core)
        rows.append(row)
        log(
            "[concurrency] %s: %s"
            % (impl, row["error"] or "done, %s of %s OK" % (row.get("ok_count"), args.requests))
        )
    load_at_end = os.getloadavg()
    print_table(rows, args, (load_at_start[0], load_at_end[0]))
    for r in rows:
        for key in ("server_stderr_tail", "client_stderr_tail"):
            if r.get(key):
                print("\n%s %s:\n%s" % (r["server"], key.replace("_", " "), r[key][-1500:]))
    report = {
        "benchmark": "concurrency",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": {
            "requests": args.requests,
            "channels": args.channels,
            "delay_s": args.delay,
            "deadline_s": args.deadline,
            "cap_s": args.cap,
            "warmup_fast": args.warmup_fast,
            "warmup_slow": args.warmup_slow,
            "payload_bytes": PAYLOAD_BYTES,
            "sample_interval_s": args.sample_interval,
            "server_core": args.server_core,
            "client_core": args.client_core,
            "client": "grpc_green, one greenlet per call, calls spread round-robin over the "
            "channels",
            "server": "bench/servers/wait_server.py: grpc.server(futures.ThreadPoolExecutor()) "
            "(default max_workers = min(32, CPUs + 4) = %d here)"
            % min(32, (os.cpu_count() or 1) + 4),
            "targets_grpc_green": {
                "all_ok_within_s": TARGET_ALL_DONE_S,
                "kib_per_inflight_rpc_below": TARGET_KIB_PER_RPC,
            },
        },
        "machine": machine(load_at_start),
        "versions": {"grpcio": grpcio_version(), "git_head": git_head()},
        "wall_s": round(time.monotonic() - t0, 1),
        "rows": rows,
    }
    write_json(args.output, report)
    print("results: %s" % os.path.relpath(args.output, os.getcwd()))
    green = [r for r in rows if r["server"] == "grpc_green"]
    return 0 if all(r["ok"] is True and not r.get("errors") for r in green) else 1


if __name__ == "__main__":
    sys.exit(main())
