#!/usr/bin/env python3
"""gRPC client throughput: grpc_green vs grpcio's sync client, against a C++ server.

A C++ echo server on gRPC's callback API (bench/cpp/echo_server.cc) runs
pinned to one core (taskset -c 0); each client runs pinned to the other
(taskset -c 1) as a subprocess of bench/clients/echo_client.py, the same
script for both implementations (for grpc_green it calls
grpc_green.monkey.patch_grpc() before importing grpc). Measured, after a
warm-up:

  unary          sequential Unary calls/s, one call at a time
  server_stream  messages/s received on one ServerStream call
  client_stream  messages/s sent on one ClientStream call (request iterator)
  bidi_stream    messages/s echoed on one BidiStream call

Every run checks its answers (echoed payloads, message counts, bytes and
positions, the server's summary); a run that does not check out gives no figure.

    .venv/bin/python bench/client.py [--unary-calls N] [--stream-messages N]
                                     [--min-seconds S] [--repeats R]
                                     [--tests ...] [--clients ...]

Prints a table (median of the repeats, ratio vs grpcio) and writes
bench/results/client.json. Exit status 0 when every grpcio test ran, 1
otherwise. See bench/README.md.
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
from run import (ROOT, RESULTS, BenchError, Server, cores, generate_protos,  # noqa: E402
                 log, pinned)

CLIENT_SCRIPT = os.path.join(BENCH, "clients", "echo_client.py")
DEFAULT_SERVER = os.path.join(ROOT, "build", "bench", "echo_server_cpp")

CLIENTS = {"grpcio_sync": "grpcio sync", "grpc_green": "grpc_green"}
BASELINE = "grpcio_sync"
# Server CPU share (of its one core) from which a figure is marked server-bound.
SERVER_BOUND_SHARE = 0.9
TESTS = {
    # name: (label, unit)
    "unary": ("unary, sequential", "calls/s"),
    "server_stream": ("server streaming, 1 call", "msgs/s received"),
    "client_stream": ("client streaming, 1 call", "msgs/s sent"),
    "bidi_stream": ("bidi streaming, 1 call", "msgs/s echoed"),
}


def ensure_server_binary(path):
    """Build the default server binary through make (up to date or rebuilt)."""
    if os.path.abspath(path) == DEFAULT_SERVER:
        target = os.path.relpath(DEFAULT_SERVER, ROOT)
        p = subprocess.run(["make", "-C", ROOT, "--no-print-directory", target],
                           capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise BenchError("make %s failed:\n%s" % (target, (p.stderr or p.stdout)[-1500:]))
    if not os.access(path, os.X_OK):
        raise BenchError("server binary %s missing (make build/bench/echo_server_cpp)" % path)


def client_timeout(count, min_seconds):
    # Generous: a client below 200 messages/s is broken anyway. Runs grown to
    # --min-seconds take about 1.3x that, plus building their requests.
    return 30.0 + count / 200.0 + 4 * min_seconds


def run_client(client, test, count, args, port, server_pid):
    """One echo_client.py subprocess: returns its JSON result (raises BenchError)."""
    timeout = client_timeout(count + args.warmup, args.min_seconds)
    cmd = pinned(args.client_core, [
        sys.executable, CLIENT_SCRIPT, client, "--port", str(port), "--test", test,
        "--count", str(count), "--warmup", str(args.warmup),
        "--payload-bytes", str(args.payload_bytes), "--min-seconds", str(args.min_seconds),
        "--server-pid", str(server_pid),
        "--timeout", str(timeout - 5.0)])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           cwd=ROOT, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise BenchError("client timed out after %.0fs" % timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    try:
        res = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise BenchError("client exit %d, no result; stderr: %s"
                         % (p.returncode, p.stderr.strip()[-800:]))
    if p.returncode != 0 or res.get("error") or "per_s" not in res:
        raise BenchError(res.get("error") or "client exit %d: %s"
                         % (p.returncode, p.stderr.strip()[-800:]))
    res["command"] = shlex.join(cmd)
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


def measure(args, server_binary):
    results = {t: {c: {"ok": False, "runs": [], "error": None} for c in args.clients}
               for t in args.tests}
    keeper = ServerKeeper(server_binary, args.server_core)
    try:
        for test in args.tests:
            count = args.unary_calls if test == "unary" else args.stream_messages
            for rep in range(args.repeats):
                # Alternate who goes first so slow drift on the machine hits both.
                order = args.clients if rep % 2 == 0 else list(reversed(args.clients))
                for client in order:
                    cell = results[test][client]
                    if cell["error"]:
                        continue  # a failed test is not retried
                    try:
                        server = keeper.ensure()
                        res = run_client(client, test, count, args, server.port, server.proc.pid)
                        if not server.alive():
                            raise BenchError("server died during the run")
                    except BenchError as e:
                        cell["error"] = str(e)
                        log("[client-bench] %s %s: FAILED: %s" % (test, client, e))
                        continue
                    cell["runs"].append(res)
                    log("[client-bench] %s %s run %d: %d in %.2fs, %.0f %s, client CPU %.2f us/op "
                        "(client CPU %.0f%%, server CPU %s)"
                        % (test, client, rep + 1, res["count"], res["seconds"], res["per_s"],
                           TESTS[test][1],
                           res["client_cpu_us_per_op"], 100 * res["client_cpu_share"],
                           "%.0f%%" % (100 * res["server_cpu_share"])
                           if res.get("server_cpu_share") is not None else "n/a"))
    finally:
        keeper.stop()
    for test in args.tests:
        for client in args.clients:
            cell = results[test][client]
            rates = [r["per_s"] for r in cell["runs"]]
            cell["ok"] = not cell["error"] and len(rates) == args.repeats
            if cell["ok"]:
                cell["per_s_median"] = statistics.median(rates)
                cell["per_s_min"], cell["per_s_max"] = min(rates), max(rates)
                for key in ("client_cpu_us_per_op", "client_cpu_share", "server_cpu_share"):
                    vals = [r[key] for r in cell["runs"] if r.get(key) is not None]
                    cell[key + "_median"] = statistics.median(vals) if vals else None
                share = cell["server_cpu_share_median"]
                cell["server_bound"] = share is not None and share >= SERVER_BOUND_SHARE
        base = results[test].get(BASELINE)
        both = lambda cell: cell["ok"] and base and base["ok"]  # noqa: E731
        for client in args.clients:
            cell = results[test][client]
            cell["ratio_vs_grpcio_sync"] = (
                cell["per_s_median"] / base["per_s_median"] if both(cell) else None)
            # grpcio's client CPU per op / this client's: above 1 = less CPU than grpcio
            cell["cpu_saving_vs_grpcio_sync"] = (
                base["client_cpu_us_per_op_median"] / cell["client_cpu_us_per_op_median"]
                if both(cell) and cell["client_cpu_us_per_op_median"] else None)
    return results, keeper.starts


def fmt_rate(cell):
    if not cell["ok"]:
        return "FAILED"
    text = "{:,.0f}".format(cell["per_s_median"])
    if len(cell["runs"]) > 1:
        text += " ({:,.0f}-{:,.0f})".format(cell["per_s_min"], cell["per_s_max"])
    return text + ("*" if cell.get("server_bound") else "")


def fmt_cpu(cell):
    if not cell["ok"]:
        return "-"
    text = "%.2f us" % cell["client_cpu_us_per_op_median"]
    if cell.get("server_cpu_share_median") is not None:
        text += " (%.0f%%/%.0f%%)" % (100 * cell["client_cpu_share_median"],
                                     100 * cell["server_cpu_share_median"])
    return text


def print_table(results, args):
    cols = list(args.clients)
    green = "grpc_green" in cols and BASELINE in cols
    print()
    print("client benchmark: C++ callback-API echo server on core %s, client on core %s, "
          "%d B payloads, median of %d run(s)"
          % (args.server_core, args.client_core, args.payload_bytes, args.repeats))
    hdr = "%-26s %-16s" % ("test", "unit") + "".join(" %26s" % CLIENTS[c] for c in cols)
    hdr += " %8s" % "ratio" if green else ""
    print(hdr)
    print("-" * len(hdr))
    for test in args.tests:
        line = "%-26s %-16s" % TESTS[test]
        line += "".join(" %26s" % fmt_rate(results[test][c]) for c in cols)
        if green:
            ratio = results[test]["grpc_green"]["ratio_vs_grpcio_sync"]
            line += " %8s" % ("%.2fx" % ratio if ratio else "-")
        print(line)
    print()
    print("client CPU per call or message (client/server CPU use over the run, "
          "one core = 100%)")
    hdr = "%-26s" % "test" + "".join(" %26s" % CLIENTS[c] for c in cols)
    hdr += " %10s" % "CPU ratio" if green else ""
    print(hdr)
    print("-" * len(hdr))
    for test in args.tests:
        line = "%-26s" % TESTS[test][0] + "".join(" %26s" % fmt_cpu(results[test][c])
                                                for c in cols)
        if green:
            saving = results[test]["grpc_green"]["cpu_saving_vs_grpcio_sync"]
            line += " %10s" % ("%.1fx" % saving if saving else "-")
        print(line)
    print()
    print("range = slowest-fastest run. ratio = grpc_green / grpcio sync throughput (medians);")
    print("CPU ratio = grpcio's client CPU per op / grpc_green's (above 1: grpc_green uses less).")
    if any(results[t][c].get("server_bound") for t in args.tests for c in cols):
        print("* the server used >= %.0f%% of its core: the figure may be the server's limit "
              "rather than the client's." % (100 * SERVER_BOUND_SHARE))
    failed = [(t, c, results[t][c]["error"]) for t in args.tests for c in cols
              if not results[t][c]["ok"]]
    if failed:
        print("\nfailed:")
        for t, c, err in failed:
            print("  %s %s: %s" % (t, c, err))


def versions(server_binary):
    out = {"python": platform.python_version()}
    try:
        import grpc

        out["grpcio"] = grpc.__version__
    except Exception:
        pass
    try:
        import google.protobuf

        out["protobuf_python"] = google.protobuf.__version__
    except Exception:
        pass
    for key, cmd in (("grpcxx", ["pkg-config", "--modversion", "grpc++"]),
                     ("protobuf_cxx", ["pkg-config", "--modversion", "protobuf"]),
                     ("git_head", ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out[key] = p.stdout.strip() or None
        except Exception:
            pass
    try:
        sys.path.insert(0, ROOT)
        from grpc_green._version import __version__ as green_version

        out["grpc_green"] = green_version
    except Exception:
        pass
    out["server_binary"] = os.path.relpath(server_binary, ROOT)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--unary-calls", type=int, default=5000,
                    help="sequential unary calls per measured run (default 5000)")
    ap.add_argument("--stream-messages", type=int, default=20000,
                    help="messages per measured streaming call (default 20000)")
    ap.add_argument("--min-seconds", type=float, default=1.0,
                    help="a measured run shorter than this is done again with more "
                         "calls/messages (default 1.0)")
    ap.add_argument("--warmup", type=int, default=1000,
                    help="warm-up calls / messages before each measured run (default 1000)")
    ap.add_argument("--payload-bytes", type=int, default=16,
                    help="EchoMsg.payload size (default 16; streaming needs >= 4)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="measured runs per test and client, each in a fresh process "
                         "(default 3; the median is reported)")
    ap.add_argument("--tests", default=",".join(TESTS),
                    help="comma-separated subset of: " + ", ".join(TESTS))
    ap.add_argument("--clients", default=",".join(CLIENTS),
                    help="comma-separated subset of: " + ", ".join(CLIENTS))
    ap.add_argument("--server-binary", default=DEFAULT_SERVER,
                    help="C++ echo server (default: build/bench/echo_server_cpp, "
                         "built with make if needed)")
    ap.add_argument("--output", default=os.path.join(RESULTS, "client.json"))
    args = ap.parse_args()
    args.tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    bad = [t for t in args.tests if t not in TESTS] + [c for c in args.clients if c not in CLIENTS]
    if bad:
        ap.error("unknown tests/clients: %s" % ", ".join(bad))
    if min(args.unary_calls, args.stream_messages, args.repeats) < 1 or args.warmup < 0:
        ap.error("--unary-calls, --stream-messages, --repeats must be >= 1, --warmup >= 0")
    if args.payload_bytes < (4 if set(args.tests) - {"unary"} else 0):
        ap.error("streaming tests need --payload-bytes >= 4")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))

    args.server_core, args.client_core = cores()
    if args.server_core is None:
        log("warning: fewer than 2 usable cores or no taskset; running unpinned")
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        log("warning: load average %.2f before starting; other work on these cores "
            "will skew the figures" % load_at_start[0])

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
    print_table(results, args)

    report = {
        "benchmark": "client",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": {
            "server": "bench/cpp/echo_server.cc, gRPC C++ callback API, 127.0.0.1",
            "client_script": "bench/clients/echo_client.py",
            "tests": {t: {"label": TESTS[t][0], "unit": TESTS[t][1]} for t in args.tests},
            "payload_bytes": args.payload_bytes, "unary_calls": args.unary_calls,
            "stream_messages": args.stream_messages, "warmup": args.warmup,
            "min_seconds": args.min_seconds,
            "repeats": args.repeats, "figure": "median of the repeats",
            "server_core": args.server_core, "client_core": args.client_core,
        },
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_start": [round(x, 2) for x in load_at_start],
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": versions(server_binary),
        "server_starts": server_starts,
        "wall_s": round(wall, 1),
        "results": results,
        "ratios_grpc_green_vs_grpcio_sync": {
            t: results[t]["grpc_green"]["ratio_vs_grpcio_sync"]
            for t in args.tests if "grpc_green" in results[t]},
        "client_cpu_saving_grpc_green_vs_grpcio_sync": {
            t: results[t]["grpc_green"]["cpu_saving_vs_grpcio_sync"]
            for t in args.tests if "grpc_green" in results[t]},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print("results: %s" % os.path.relpath(args.output, os.getcwd()))
    base_ok = BASELINE not in args.clients or all(
        results[t][BASELINE]["ok"] for t in args.tests)
    return 0 if base_ok else 1


if __name__ == "__main__":
    sys.exit(main())
