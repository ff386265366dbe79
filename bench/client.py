#!/usr/bin/env python3
"""gRPC client throughput: grpc_green vs grpcio (sync, and under gevent), against a C++ server.

A C++ echo server on gRPC's asynchronous API (bench/cpp/echo_server.cc) runs
pinned to one core (taskset -c 0); each client runs pinned to the other
(taskset -c 1) as a subprocess of bench/clients/echo_client.py, the same
script for every implementation:

  grpcio_sync         grpcio as installed (the baseline of every ratio)
  grpc_green          grpc_green.monkey.patch_grpc() before `import grpc`
  grpcio_gevent       gevent.monkey.patch_all() + grpcio + init_gevent()
  grpcio_gevent_pool  the same with gevent's thread pool raised to
                      --gevent-pool (default 1000); `concurrent` test only

Measured, after a warm-up:

  unary          sequential Unary calls/s, one call at a time, p50/p99 latency
  concurrent     Unary calls/s of 64 callers in a loop: threads for grpcio
                 sync, greenlets for grpc_green and grpcio under gevent
  threads64      Unary calls/s of 64 threading.Thread callers in a loop on one
                 channel, for every client (under gevent: patched, greenlets)
  server_stream  messages/s received on one ServerStream call
  client_stream  messages/s sent on one ClientStream call (request iterator)
  bidi_pingpong  round trips/s on one BidiStream call: one message out, wait
                 for its echo, repeat; p50/p99 round-trip latency
  bidi_queue     the same, the request iterator a plain generator over a
                 queue.Queue filled after each response (grpcio's usual way;
                 grpc_green consumes it in a worker thread)
  (bidi_stream   messages/s echoed, requests pipelined; not run by default)

Every run checks its answers (echoed payloads, message counts, bytes and
positions, the server's summary); a run that does not check out gives no
figure. Runs under gevent have a hard time limit and report a stall as such.

    .venv/bin/python bench/client.py [--unary-calls N] [--stream-messages N]
                                     [--min-seconds S] [--repeats R]
                                     [--tests ...] [--clients ...]

Prints a table (median of the repeats, server CPU per row, ratio vs grpcio
sync) and writes bench/results/client.json. Exit status 0 when every
grpcio sync and grpc_green test ran, 1 otherwise. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from run import (  # noqa: E402  (bench/ is on sys.path from here)
    RESULTS,
    ROOT,
    BenchError,
    Server,
    cores,
    generate_protos,
    log,
    pinned,
)

CLIENT_SCRIPT = os.path.join(BENCH, "clients", "echo_client.py")
DEFAULT_SERVER = os.path.join(ROOT, "build", "bench", "echo_server_cpp")

# name: (label, implementation for echo_client.py, kind of concurrent callers,
#        tests it runs (None: all))
CLIENTS = {
    "grpcio_sync": ("grpcio sync", "grpcio_sync", "threads", None),
    "grpc_green": ("grpc_green", "grpc_green", "greenlets", None),
    "grpcio_gevent": ("grpcio + gevent", "grpcio_gevent", "greenlets", None),
    "grpcio_gevent_pool": (
        "grpcio + gevent, pool {pool}",
        "grpcio_gevent",
        "greenlets",
        ("concurrent",),
    ),
}
BASELINE = "grpcio_sync"
# Exit status 1 unless every test of these ran (grpcio under gevent may stall:
# that is part of what is measured).
MUST_RUN = ("grpcio_sync", "grpc_green")
# Server CPU share (of its one core) from which a figure is marked server-bound.
SERVER_BOUND_SHARE = 0.9
TESTS = {
    # name: (label, unit)
    "unary": ("unary, sequential", "calls/s"),
    "concurrent": ("unary, {callers} callers", "calls/s"),
    "threads64": ("unary, 64 threads", "calls/s"),
    "server_stream": ("server streaming", "msgs/s received"),
    "client_stream": ("client streaming", "msgs/s sent"),
    "bidi_pingpong": ("bidi ping-pong", "round trips/s"),
    "bidi_queue": ("bidi, queue.Queue", "round trips/s"),
    "bidi_stream": ("bidi, pipelined", "msgs/s echoed"),
}
DEFAULT_TESTS = (
    "unary",
    "concurrent",
    "threads64",
    "server_stream",
    "client_stream",
    "bidi_pingpong",
    "bidi_queue",
)
WINDOWED = ("concurrent", "threads64")  # counted over --window after --concurrent-warmup
JOIN_SECONDS = 3.0  # echo_client.py's grace for callers after the window


def test_label(test, args):
    return TESTS[test][0].format(callers=args.callers)


def client_label(client, args, test=None):
    label = CLIENTS[client][0].format(pool=args.gevent_pool)
    if test == "concurrent":
        label += " (%s)" % CLIENTS[client][2]
    elif test == "threads64" and CLIENTS[client][1] == "grpcio_gevent":
        label += " (patched: greenlets)"
    return label


def ensure_server_binary(path):
    """Build the default server binary through make (up to date or rebuilt)."""
    if os.path.abspath(path) == DEFAULT_SERVER:
        target = os.path.relpath(DEFAULT_SERVER, ROOT)
        p = subprocess.run(
            ["make", "-C", ROOT, "--no-print-directory", target],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if p.returncode != 0:
            raise BenchError("make %s failed:\n%s" % (target, (p.stderr or p.stdout)[-1500:]))
    if not os.access(path, os.X_OK):
        raise BenchError("server binary %s missing (make build/bench/echo_server_cpp)" % path)


def hard_limit(test, count, args):
    """Seconds after which the client gives up on itself (its watchdog thread)."""
    if test in WINDOWED:
        return 20.0 + args.concurrent_warmup + args.window + JOIN_SECONDS
    # Generous: a client below 1000 messages/s would be broken anyway. Runs
    # grown to --min-seconds take about 1.3x that, plus building their requests.
    return 20.0 + (count + args.warmup) / 1000.0 + 8 * args.min_seconds


def run_client(client, test, count, args, port, server_pid):
    """One echo_client.py subprocess: returns its JSON result (raises BenchError)."""
    limit = hard_limit(test, count, args)
    impl = CLIENTS[client][1]
    argv = [
        sys.executable,
        CLIENT_SCRIPT,
        impl,
        "--port",
        str(port),
        "--test",
        test,
        "--count",
        str(count),
        "--warmup",
        str(args.warmup),
        "--payload-bytes",
        str(args.payload_bytes),
        "--min-seconds",
        str(args.min_seconds),
        "--server-pid",
        str(server_pid),
        "--hard-limit",
        "%.0f" % limit,
    ]
    if test in WINDOWED:
        argv += [
            "--callers",
            str(args.callers),
            "--window",
            str(args.window),
            "--warmup-seconds",
            str(args.concurrent_warmup),
        ]
    if client == "grpcio_gevent_pool":
        argv += ["--gevent-threadpool", str(args.gevent_pool)]
    cmd = pinned(args.client_core, argv)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env.pop("GRPC_GREEN_HUB", None)
    if impl != "grpc_green":
        env.pop("PYTHONPATH", None)  # real grpcio; nothing of grpc_green on the path
    timeout = limit + 10.0  # the client's own watchdog normally ends it first
    try:
        p = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(
            "timed out: client killed after %.0f s (its watchdog did not end it)" % timeout
        ) from None
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    try:
        res = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise BenchError(
            "client exit %d, no result; stderr: %s" % (p.returncode, p.stderr.strip()[-800:])
        ) from None
    res["command"] = shlex.join(cmd)
    res["exit_status"] = p.returncode
    if res.get("stalled") and "per_s" in res:
        return res  # a figure, but a stall: the caller records it as such
    if p.returncode != 0 or res.get("error") or "per_s" not in res:
        raise BenchError(
            res.get("error") or "client exit %d: %s" % (p.returncode, p.stderr.strip()[-800:])
        )
    return res


class ServerKeeper:
    """The C++ server; restarted if a run leaves it dead."""

    def __init__(self, binary, core):
        self.binary, self.core, self.server, self.starts = binary, core, None, 0

    def ensure(self):
        if self.server is not None and self.server.alive():
            return self.server
        tail = self.stop()
        if self.starts:
            log("[client-bench] server died; restarting it. stderr tail:\n%s" % tail)
        self.server = Server("echo_server_cpp", pinned(self.core, [self.binary, "0"]))
        self.starts += 1
        self.server.start()
        return self.server

    def stop(self):
        tail = ""
        if self.server is not None:
            self.server.stop()
            tail = self.server.stderr_tail()
            self.server.close()
            self.server = None
        return tail


def runs_test(client, test):
    only = CLIENTS[client][3]
    return only is None or test in only


def fmt_pct(share):
    return "-" if share is None else "%.0f%%" % (100 * share)


def log_run(test, client, rep, res):
    lat = res.get("latency_us") or {}
    log(
        "[client-bench] %s %s run %d: %d in %.2fs, %.0f %s%s, client CPU %s us/op "
        "(client %s, server %s, other %.2f cores)%s"
        % (
            test,
            client,
            rep + 1,
            res["count"],
            res["seconds"],
            res["per_s"],
            TESTS[test][1],
            ", p50/p99 %.0f/%.0f us" % (lat["p50"], lat["p99"]) if lat else "",
            "%.2f" % res["client_cpu_us_per_op"] if res.get("client_cpu_us_per_op") else "-",
            fmt_pct(res.get("client_cpu_share")),
            fmt_pct(res.get("server_cpu_share")),
            res.get("other_busy_cores") or 0.0,
            " STALLED: %s" % res["stall"] if res.get("stalled") else "",
        )
    )


def measure(args, server_binary):
    results = {
        t: {
            c: {"ok": False, "status": None, "runs": [], "error": None}
            for c in args.clients
            if runs_test(c, t)
        }
        for t in args.tests
    }
    keeper = ServerKeeper(server_binary, args.server_core)
    try:
        for test in args.tests:
            count = args.unary_calls if test == "unary" else args.stream_messages
            clients = [c for c in args.clients if runs_test(c, test)]
            for rep in range(args.repeats):
                # Alternate who goes first so slow drift on the machine hits all.
                order = clients if rep % 2 == 0 else list(reversed(clients))
                for client in order:
                    cell = results[test][client]
                    if cell["status"]:
                        continue  # failed, stalled or timed out: not retried
                    try:
                        server = keeper.ensure()
                        res = run_client(client, test, count, args, server.port, server.proc.pid)
                        if not server.alive():
                            raise BenchError("server died during the run")
                    except BenchError as e:
                        cell["error"] = str(e)
                        cell["status"] = "timed out" if str(e).startswith("timed out") else "failed"
                        log("[client-bench] %s %s: %s: %s" % (test, client, cell["status"], e))
                        continue
                    cell["runs"].append(res)
                    log_run(test, client, rep, res)
                    if res.get("stalled"):
                        cell["status"] = "stalled"
                        cell["error"] = res["stall"]
    finally:
        keeper.stop()
    for test in args.tests:
        for cell in results[test].values():
            runs = [r for r in cell["runs"] if not r.get("stalled")]
            if cell["status"] is None:
                cell["status"] = "ok" if len(runs) == args.repeats else "failed"
            cell["ok"] = cell["status"] == "ok"
            shown = runs if cell["ok"] else cell["runs"][-1:] if cell["status"] == "stalled" else []
            if not shown:
                continue
            rates = [r["per_s"] for r in shown]
            cell["per_s_median"] = statistics.median(rates)
            cell["per_s_min"], cell["per_s_max"] = min(rates), max(rates)
            for key in (
                "client_cpu_us_per_op",
                "client_cpu_share",
                "server_cpu_share",
                "other_busy_cores",
            ):
                vals = [r[key] for r in shown if r.get(key) is not None]
                cell[key + "_median"] = statistics.median(vals) if vals else None
            for p in ("p50", "p99"):
                vals = [r["latency_us"][p] for r in shown if r.get("latency_us")]
                cell["latency_%s_us_median" % p] = statistics.median(vals) if vals else None
            others = [r["other_busy_cores"] for r in shown if r.get("other_busy_cores") is not None]
            cell["other_busy_cores_max"] = max(others) if others else None
            share = cell["server_cpu_share_median"]
            cell["server_bound"] = share is not None and share >= SERVER_BOUND_SHARE
        base = results[test].get(BASELINE)
        for cell in results[test].values():
            both = cell["ok"] and base is not None and base["ok"]
            cell["ratio_vs_grpcio_sync"] = (
                cell["per_s_median"] / base["per_s_median"] if both else None
            )
            # grpcio sync's client CPU per op / this client's: above 1 = less CPU
            cell["cpu_saving_vs_grpcio_sync"] = (
                base["client_cpu_us_per_op_median"] / cell["client_cpu_us_per_op_median"]
                if both and cell.get("client_cpu_us_per_op_median")
                else None
            )
    return results, keeper.starts


def fmt_rate(cell):
    if cell.get("per_s_median") is None:
        return "-", ""
    text = "{:,.0f}".format(cell["per_s_median"])
    rng = ""
    if len(cell["runs"]) > 1 and cell["ok"]:
        rng = "{:,.0f}-{:,.0f}".format(cell["per_s_min"], cell["per_s_max"])
    return text, rng


def fmt_us(v):
    return "-" if v is None else ("%.0f" % v if v >= 100 else "%.1f" % v)


def print_table(results, args):
    print()
    print(
        "client benchmark: C++ async-API echo server on core %s, client on core %s, "
        "%d B payloads, median of %d run(s)"
        % (args.server_core, args.client_core, args.payload_bytes, args.repeats)
    )
    fmt = "%-18s %-38s %9s %15s %-15s %6s %6s %7s %6s %7s %5s %7s  %s"
    hdr = fmt % (
        "test",
        "client",
        "figure",
        "range",
        "unit",
        "p50 us",
        "p99 us",
        "us/op",
        "client",
        "server",
        "other",
        "ratio",
        "status",
    )
    print(hdr)
    print("-" * len(hdr))
    for test in args.tests:
        for client, cell in results[test].items():
            rate, rng = fmt_rate(cell)
            server = fmt_pct(cell.get("server_cpu_share_median"))
            if cell.get("server_bound"):
                server += "*"
            other = cell.get("other_busy_cores_max")
            ratio = cell.get("ratio_vs_grpcio_sync")
            status = (
                cell["status"]
                if cell["ok"]
                else "%s: %s" % (cell["status"].upper(), cell["error"] or "")
            )
            print(
                fmt
                % (
                    test_label(test, args),
                    client_label(client, args, test),
                    rate,
                    rng,
                    TESTS[test][1],
                    fmt_us(cell.get("latency_p50_us_median")),
                    fmt_us(cell.get("latency_p99_us_median")),
                    fmt_us(cell.get("client_cpu_us_per_op_median")),
                    fmt_pct(cell.get("client_cpu_share_median")),
                    server,
                    "-" if other is None else "%.2f" % other,
                    "%.2fx" % ratio if ratio else "-",
                    status,
                )
            )
        print()
    print("figure = median over the repeats (range: slowest-fastest run); p50/p99 = call or round-")
    print("trip latency (median over the runs); us/op = client CPU per call or message; client,")
    print("server = CPU use over the measured run, one core = 100% (medians); other = the most")
    print("the rest of the machine used meanwhile in any run, in cores (0 = nothing else ran);")
    print("ratio = figure / grpcio sync's figure for the same test.")
    if any(cell.get("server_bound") for t in args.tests for cell in results[t].values()):
        print(
            "* the server used >= %.0f%% of its core: the figure may be the server's limit "
            "rather than the client's." % (100 * SERVER_BOUND_SHARE)
        )
    targets = target_lines(results)
    if targets:
        print()
        for line in targets:
            print(line)


TARGETS = (("unary", 3.0), ("server_stream", 20.0))


def target_lines(results):
    lines = []
    for test, want in TARGETS:
        cell = results.get(test, {}).get("grpc_green")
        if cell is None:
            continue
        ratio = cell.get("ratio_vs_grpcio_sync")
        lines.append(
            "target %-18s grpc_green / grpcio sync = %s (target >= %.0fx: %s)"
            % (
                TESTS[test][0] + ":",
                "%.2fx" % ratio if ratio else "-",
                want,
                "met" if ratio and ratio >= want else "NOT met",
            )
        )
    return lines


def versions(server_binary):
    out = {"python": platform.python_version()}
    try:
        import grpc

        out["grpcio"] = grpc.__version__
    except Exception:  # noqa: BLE001  (a version that cannot be read is left out)
        pass
    for mod, key in (
        ("google.protobuf", "protobuf_python"),
        ("gevent", "gevent"),
        ("greenlet", "greenlet"),
    ):
        try:
            out[key] = __import__(mod, fromlist=["__version__"]).__version__
        except Exception:  # noqa: BLE001  (a version that cannot be read is left out)
            pass
    for key, cmd in (
        ("grpcxx", ["pkg-config", "--modversion", "grpc++"]),
        ("protobuf_cxx", ["pkg-config", "--modversion", "protobuf"]),
        ("git_head", ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
    ):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out[key] = p.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        sys.path.insert(0, ROOT)
        from grpc_green._version import __version__ as green_version

        out["grpc_green"] = green_version
    except Exception:  # noqa: BLE001  (a version that cannot be read is left out)
        pass
    out["server_binary"] = os.path.relpath(server_binary, ROOT)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--unary-calls",
        type=int,
        default=5000,
        help="sequential unary calls per measured run (default 5000)",
    )
    ap.add_argument(
        "--stream-messages",
        type=int,
        default=20000,
        help="messages (or round trips) per measured streaming call (default 20000)",
    )
    ap.add_argument(
        "--min-seconds",
        type=float,
        default=1.0,
        help="a measured run shorter than this is done again with more "
        "calls/messages (default 1.0)",
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=1000,
        help="warm-up calls / messages before each measured run (default 1000)",
    )
    ap.add_argument("--callers", type=int, default=64, help="concurrent test: callers (default 64)")
    ap.add_argument(
        "--window",
        type=float,
        default=2.0,
        help="concurrent, threads64 tests: measured window, seconds (default 2)",
    )
    ap.add_argument(
        "--concurrent-warmup",
        type=float,
        default=0.5,
        help="concurrent, threads64 tests: seconds of calls before the window (default 0.5)",
    )
    ap.add_argument(
        "--gevent-pool",
        type=int,
        default=1000,
        help="grpcio_gevent_pool: gevent hub thread pool size (default 1000)",
    )
    ap.add_argument(
        "--payload-bytes",
        type=int,
        default=16,
        help="EchoMsg.payload size (default 16; streaming needs >= 4)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="measured runs per test and client, each in a fresh process "
        "(default 3; the median is reported)",
    )
    ap.add_argument(
        "--tests",
        default=",".join(DEFAULT_TESTS),
        help="comma-separated subset of: " + ", ".join(TESTS) + " (default: all but bidi_stream)",
    )
    ap.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help="comma-separated subset of: " + ", ".join(CLIENTS),
    )
    ap.add_argument(
        "--server-binary",
        default=DEFAULT_SERVER,
        help="C++ echo server (default: build/bench/echo_server_cpp, built with make if needed)",
    )
    ap.add_argument("--output", default=os.path.join(RESULTS, "client.json"))
    args = ap.parse_args()
    args.tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    bad = [t for t in args.tests if t not in TESTS] + [c for c in args.clients if c not in CLIENTS]
    if bad:
        ap.error("unknown tests/clients: %s" % ", ".join(bad))
    if (
        min(args.unary_calls, args.stream_messages, args.repeats, args.callers, args.gevent_pool)
        < 1
        or args.warmup < 0
        or args.window <= 0
        or args.concurrent_warmup < 0
    ):
        ap.error(
            "--unary-calls, --stream-messages, --repeats, --callers, --gevent-pool must "
            "be >= 1, --warmup and --concurrent-warmup >= 0, --window > 0"
        )
    if args.payload_bytes < (4 if set(args.tests) - {"unary", *WINDOWED} else 0):
        ap.error("streaming tests need --payload-bytes >= 4")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))

    args.server_core, args.client_core = cores()
    if args.server_core is None:
        log("warning: fewer than 2 usable cores or no taskset; running unpinned")
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        log(
            "warning: load average %.2f before starting; other work on these cores "
            "will skew the figures" % load_at_start[0]
        )

    server_binary = os.path.abspath(args.server_binary)
    try:
        ensure_server_binary(server_binary)
        generate_protos()
    except BenchError as e:
        log("client bench: %s" % e)
        return 1

    t0 = time.monotonic()
    results, server_starts = measure(args, server_binary)
    wall = time.monotonic() - t0
    load_at_end = os.getloadavg()
    print_table(results, args)
    print(
        "load average %.2f at start, %.2f at end; %.0f s in all"
        % (load_at_start[0], load_at_end[0], wall)
    )

    report = {
        "benchmark": "client",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": {
            "server": "bench/cpp/echo_server.cc: gRPC C++ async (completion-queue) API, one "
            "serving thread, 127.0.0.1; ServerStream writes buffer-hinted except "
            "every 128th, the first and the last",
            "client_script": "bench/clients/echo_client.py",
            "clients": {
                c: {
                    "label": client_label(c, args),
                    "implementation": CLIENTS[c][1],
                    "concurrent_callers": CLIENTS[c][2],
                    "tests": list(CLIENTS[c][3] or args.tests),
                }
                for c in args.clients
            },
            "tests": {t: {"label": test_label(t, args), "unit": TESTS[t][1]} for t in args.tests},
            "payload_bytes": args.payload_bytes,
            "unary_calls": args.unary_calls,
            "stream_messages": args.stream_messages,
            "warmup": args.warmup,
            "min_seconds": args.min_seconds,
            "callers": args.callers,
            "concurrent_window_s": args.window,
            "concurrent_warmup_s": args.concurrent_warmup,
            "gevent_pool": args.gevent_pool,
            "repeats": args.repeats,
            "figure": "median of the repeats",
            "server_core": args.server_core,
            "client_core": args.client_core,
            "server_bound_share": SERVER_BOUND_SHARE,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in load_at_start],
            "loadavg_at_end": [round(x, 2) for x in load_at_end],
        },
        "versions": versions(server_binary),
        "server_starts": server_starts,
        "wall_s": round(wall, 1),
        "results": results,
        "ratios_vs_grpcio_sync": {
            t: {c: cell.get("ratio_vs_grpcio_sync") for c, cell in results[t].items()}
            for t in args.tests
        },
        "client_cpu_saving_vs_grpcio_sync": {
            t: {c: cell.get("cpu_saving_vs_grpcio_sync") for c, cell in results[t].items()}
            for t in args.tests
        },
        "targets": target_lines(results),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print("results: %s" % os.path.relpath(args.output, os.getcwd()))
    ok = all(results[t][c]["ok"] for t in args.tests for c in MUST_RUN if c in results[t])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
