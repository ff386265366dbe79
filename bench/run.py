#!/usr/bin/env python3
"""Unary gRPC server throughput: grpc_green against grpcio, C++ gRPC and nghttpd.

Each server runs pinned to one core (taskset -c 0), h2load runs pinned to the
other (taskset -c 1) and drives 4 connections x 16 concurrent streams of unary
bench.Echo/Unary calls, once with a 16-byte and once with a 16-KiB payload.
Servers: grpc_green on its native hub and on gevent's hub, grpcio sync,
grpcio asyncio, grpcio under gevent (init_gevent), pygrpc-native (a
grpcio-compatible server whose HTTP/2 runs in Rust), two C++ gRPC servers
(callback API: build/bench/echo_server_cb; async API, one thread:
build/bench/echo_server_cpp) and nghttpd (raw HTTP/2, no gRPC).
Before and after each measured run the harness checks with nghttp that a call
ends with `grpc-status: 0` and echoes the request.

    .venv/bin/python bench/run.py [--requests N] [--payloads 16,16384]
                                  [--servers grpc_green,grpcio_sync,...]

Prints a table, writes bench/results/server.json and draws
bench/results/server.png (bench/plot.py, needs matplotlib:
bench/requirements.txt). Exit status 0 when the grpc_green rows and the grpcio
sync baseline passed, 1 otherwise. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import queue
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import procs
from procs import BenchError, cores, log, pinned  # client.py, gevent_inprocess.py: from here

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
GEN = os.path.join(BENCH, "_gen")
RESULTS = os.path.join(BENCH, "results")
PATH = "/bench.Echo/Unary"
GRPC_HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
SERVER_SCRIPT = os.path.join(BENCH, "servers", "echo_server.py")
# Python rows with a script of their own (run without a MODE argument); the
# other Python rows run SERVER_SCRIPT with their key as MODE.
OWN_SCRIPTS = {
    "pygrpc_native": os.path.join(BENCH, "servers", "echo_server_pygrpc_native.py"),
}
# C++ servers: callback API (bench/servers/echo_server_cb.cc, the issue's
# comparison) and the client benchmark's async-API one-thread server
# (bench/cpp/echo_server.cc). Both built by make.
DEFAULT_CPP_SERVER = os.path.join(ROOT, "build", "bench", "echo_server_cb")
DEFAULT_CPP_ASYNC_SERVER = os.path.join(ROOT, "build", "bench", "echo_server_cpp")
DEFAULT_BINARIES = (DEFAULT_CPP_SERVER, DEFAULT_CPP_ASYNC_SERVER)
# nghttpd's flow-control windows: 2^20-1 per stream, 2^22-1 per connection,
# about what the gRPC servers here advertise (grpc_green 1 MiB / 4 MiB,
# grpcio and C++ gRPC 4 MiB / 4 MiB). nghttpd's default (64 KiB) would make
# the 16-KiB row wait for WINDOW_UPDATEs.
NGHTTPD_WINDOW_ARGS = ["-w", "20", "-W", "22"]

# key -> (label, kind); the table and the chart keep this order.
SERVERS = {
    "grpc_green": ("grpc_green, native hub", "python"),
    "grpc_green_gevent": ("grpc_green, gevent hub (patch_all(grpc=True))", "python"),
    "grpcio_sync": ("grpcio sync (ThreadPoolExecutor 16)", "python"),
    "grpcio_aio": ("grpcio asyncio (grpc.aio)", "python"),
    "grpcio_gevent": ("grpcio + gevent (init_gevent)", "python"),
    "pygrpc_native": ("pygrpc-native 0.5 (1 I/O thread, TPE 16)", "python"),
    "cpp": ("C++ gRPC callback API (libgrpc++)", "cpp"),
    "cpp_async": ("C++ gRPC async API, 1 thread (libgrpc++)", "cpp"),
    "nghttpd": ("nghttpd, static file (no gRPC)", "nghttpd"),
}
BASELINE = "grpcio_sync"
CPP = "cpp"
# The targets, 16-byte payload, one server core.
TARGETS = {"vs_grpcio_sync": 6.0, "vs_cpp": 1.0}
MUST_PASS = ("grpc_green", "grpc_green_gevent", "grpcio_sync")

START_TIMEOUT = 20.0  # server must print its port within this many seconds
CHECK_TIMEOUT = 10.0  # nghttp verification call
STOP_TIMEOUT = 5.0  # SIGTERM -> SIGKILL grace
CLK_TCK = os.sysconf("SC_CLK_TCK")


def size_label(n):
    if n >= 1024 and n % 1024 == 0:
        return "%d KiB" % (n // 1024)
    return "%d B" % n


# --- setup --------------------------------------------------------------------


def generate_protos():
    """bench/echo.proto -> bench/_gen/echo_pb2.py (regenerated every run); the module."""
    procs.generate_protos()
    sys.path.insert(0, GEN)
    import echo_pb2

    return echo_pb2


def ensure_cpp_server(path):
    """Build a default C++ server through make (up to date or rebuilt)."""
    if os.path.abspath(path) in DEFAULT_BINARIES:
        target = os.path.relpath(os.path.abspath(path), ROOT)
        try:
            p = subprocess.run(
                ["make", "-C", ROOT, "--no-print-directory", target],
                capture_output=True,
                text=True,
                timeout=900,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return "make %s: %s" % (target, e)
        if p.returncode != 0:
            return "make %s failed: %s" % (target, (p.stderr or p.stdout)[-800:])
    if not os.access(path, os.X_OK):
        return "server binary %s missing (make %s)" % (path, os.path.relpath(path, ROOT))
    return None


def grpc_frame(message_bytes):
    return struct.pack(">BI", 0, len(message_bytes)) + message_bytes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- server processes -----------------------------------------------------------


class Server:
    """A server subprocess in its own process group, always torn down."""

    def __init__(self, name, argv, port=None, env=None, workdir=None, info_line=False):
        self.name = name
        self.argv = argv
        self.port = port  # known up front (nghttpd) or read from stdout
        self.env = env
        self.workdir = workdir
        self.info_line = info_line  # a JSON line after the port (echo_server.py)
        self.info = None
        self.proc = None
        self.stderr_file = None

    def start(self):
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            env=self.env,
            cwd=self.workdir,
            start_new_session=True,
        )
        if self.port is None:
            self.port = self._read_port()
        else:
            self._wait_listening()
        return self.port

    def _read_port(self):
        lines = queue.Queue()
        wanted = 2 if self.info_line else 1

        def drain():  # first lines -> queue; keep draining so the pipe never fills
            n = 0
            for line in self.proc.stdout:
                if n < wanted:
                    lines.put(line)
                n += 1
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        got = []
        while len(got) < wanted:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError("no port on stdout within %.0fs" % START_TIMEOUT) from None
            if line is None:
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
                raise BenchError(
                    "exited with status %s before printing %s"
                    % (self.proc.returncode, "its port and description" if got else "a port")
                )
            got.append(line)
        try:
            port = int(got[0].decode().strip())
        except ValueError:
            raise BenchError("first stdout line is not a port: %r" % got[0][:200]) from None
        if not 0 < port < 65536:
            raise BenchError("bad port %d" % port)
        if self.info_line:
            try:
                self.info = json.loads(got[1].decode())
            except ValueError:
                raise BenchError("second stdout line is not JSON: %r" % got[1][:200]) from None
        return port

    def _wait_listening(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("exited with status %s at startup" % self.proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise BenchError("not listening on port %d within %.0fs" % (self.port, START_TIMEOUT))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        """utime + stime of the server, all its threads (10 ms resolution)."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            return None

    def threads(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                m = re.search(r"^Threads:\s+(\d+)", f.read(), re.M)
            return int(m.group(1)) if m else None
        except OSError:
            return None

    def stderr_tail(self, limit=1500):
        if self.stderr_file is None:
            return ""
        try:
            self.stderr_file.seek(0)
            data = self.stderr_file.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return data[-limit:]

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc.stdout:
            self.proc.stdout.close()

    def close(self):
        if self.stderr_file is not None:
            self.stderr_file.close()
            self.stderr_file = None


# --- checks and load ----------------------------------------------------------------


_RECV_HEADER = re.compile(r"recv \(stream_id=\d+\) ([:\w-]+): (.*)$", re.M)


def check_grpc_call(port, body_file, expected_body):
    """One real call through nghttp: HTTP 200, trailer grpc-status: 0, echoed body."""
    url = "http://127.0.0.1:%d%s" % (port, PATH)
    base = ["nghttp"] + GRPC_HEADERS + ["-d", body_file, url]
    try:
        verbose = subprocess.run(
            base[:1] + ["-v"] + base[1:], capture_output=True, timeout=CHECK_TIMEOUT
        )
        plain = subprocess.run(base, capture_output=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(
            "verification call (nghttp) timed out after %.0fs" % CHECK_TIMEOUT
        ) from None
    text = verbose.stdout.decode(errors="replace")
    headers = _RECV_HEADER.findall(text)
    status = [v.strip() for k, v in headers if k == ":status"]
    grpc_status = [v.strip() for k, v in headers if k == "grpc-status"]
    grpc_message = [v.strip() for k, v in headers if k == "grpc-message"]
    if status != ["200"]:
        raise BenchError(
            "verification call: HTTP :status %s (nghttp exit %d) %s"
            % (
                status or "missing",
                verbose.returncode,
                verbose.stderr.decode(errors="replace").strip()[-300:],
            )
        )
    if grpc_status != ["0"]:
        raise BenchError(
            "verification call: grpc-status %s %s" % (grpc_status or "missing", grpc_message)
        )
    if plain.stdout != expected_body:
        raise BenchError(
            "verification call: response body (%d B) %r... does not echo the "
            "request (%d B) %r..."
            % (len(plain.stdout), plain.stdout[:32], len(expected_body), expected_body[:32])
        )
    return "HTTP 200, grpc-status: 0, body echoed (%d B)" % len(expected_body)


def check_static(port, path, body_file, expected_body):
    """nghttpd: the request h2load sends (POST with the body, or GET) returns the file."""
    url = "http://127.0.0.1:%d%s" % (port, path)
    cmd = ["nghttp"] + (["-d", body_file] if body_file else []) + [url]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError("verification request timed out after %.0fs" % CHECK_TIMEOUT) from None
    if p.returncode != 0 or p.stdout != expected_body:
        raise BenchError(
            "verification request failed (exit %d, body %d B %r...)"
            % (p.returncode, len(p.stdout), p.stdout[:32])
        )
    return "HTTP 200, file returned (%d B)" % len(expected_body)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return round(float(m.group(1)) * _UNITS[m.group(2)], 3) if m else None


def parse_h2load(out):
    m = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out)
    if not m:
        raise BenchError("h2load output has no 'finished in' line:\n" + out[-800:])
    seconds = float(m.group(1)) * _UNITS[m.group(2)] / 1000.0
    res = {"finished_s": seconds, "h2load_req_per_s": float(m.group(3))}
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        out,
    )
    if not m:
        raise BenchError("h2load output has no 'requests:' line:\n" + out[-800:])
    for key, val in zip(
        ("total", "started", "done", "succeeded", "failed", "errored", "timeout"),
        m.groups(),
        strict=True,
    ):
        res[key] = int(val)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m:
        res["status_2xx"] = int(m.group(1))
    m = re.search(r"traffic: .*?\((\d+)\) total", out)
    if m:
        res["traffic_bytes"] = int(m.group(1))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        res["latency_ms"] = {
            "min": _ms(m.group(1)),
            "max": _ms(m.group(2)),
            "mean": _ms(m.group(3)),
            "sd": _ms(m.group(4)),
        }
    # The figure: calls that succeeded per second of the run (equal to h2load's
    # own req/s when every request succeeds).
    res["req_per_s"] = round(res["succeeded"] / seconds, 1) if seconds > 0 else 0.0
    return res


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def h2load(core, url, requests, args, extra, timeout):
    """One h2load run. -N (inactivity timeout) ends it if the server stops
    answering; `timeout` kills it as a last resort (h2load prints nothing then)."""
    cmd = pinned(
        core,
        [
            "h2load",
            "-n",
            str(requests),
            "-c",
            str(args.connections),
            "-m",
            str(args.streams),
            "-N",
            "%ds" % args.stall_seconds,
        ]
        + extra
        + [url],
    )
    cpu0 = children_cpu()
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(
            "h2load killed after %.0fs (-n %d): the server answered too slowly "
            "to finish, yet never went %ds without activity"
            % (timeout, requests, args.stall_seconds)
        ) from None
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise BenchError("h2load exit %d: %s" % (p.returncode, (p.stderr or p.stdout)[-500:]))
    res = parse_h2load(p.stdout)
    res["h2load_cpu"] = round((children_cpu() - cpu0) / wall, 3) if wall > 0 else None
    return cmd, res


# --- one row ------------------------------------------------------------------------


def make_server(name, args, files):
    label, kind = SERVERS[name]
    if kind == "nghttpd":
        port = free_port()
        return Server(
            name,
            pinned(
                args.server_core,
                ["nghttpd", "--no-tls", "-a", "127.0.0.1"]
                + NGHTTPD_WINDOW_ARGS
                + ["-d", files["docroot"], str(port)],
            ),
            port=port,
        )
    if kind == "cpp":
        return Server(name, pinned(args.server_core, [args.cpp_binary[name], "0"]))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # echo_server.py sets its own path per mode
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("GRPC_GREEN_HUB", None)
    if name == "grpc_green":
        env["GRPC_GREEN_HUB"] = "native"
    script = [OWN_SCRIPTS[name]] if name in OWN_SCRIPTS else [SERVER_SCRIPT, name]
    return Server(
        name,
        pinned(args.server_core, [sys.executable] + script),
        env=env,
        workdir=ROOT,
        info_line=True,
    )


def run_row(name, payload, args, files):
    label, kind = SERVERS[name]
    p = files["payloads"][payload]
    row = {
        "server": name,
        "label": label,
        "payload_bytes": payload,
        "ok": False,
        "error": None,
        "notes": [],
        "loadavg_at_start": round(os.getloadavg()[0], 2),
    }
    if kind == "nghttpd" and not shutil.which("nghttpd"):
        row.update(
            skipped=True, error="skipped: nghttpd not installed (apt-get install nghttp2-server)"
        )
        return row
    if kind == "cpp" and args.cpp_error.get(name):
        row.update(skipped=True, error="skipped: " + args.cpp_error[name])
        return row
    server = make_server(name, args, files)
    if kind == "nghttpd":
        path = "/" + p["static_name"]
        extra = [] if args.nghttpd_get else ["-d", p["request_file"]]
        row["static_file_bytes"] = len(p["response"])
        row["nghttpd_method"] = "GET" if args.nghttpd_get else "POST"
    else:
        path = PATH
        extra = GRPC_HEADERS + ["-d", p["request_file"]]

    def check(port):
        if kind == "nghttpd":
            return check_static(
                port, path, None if args.nghttpd_get else p["request_file"], p["response"]
            )
        return check_grpc_call(port, p["request_file"], p["response"])

    try:
        t0 = time.monotonic()
        port = server.start()
        row["port"] = port
        row["startup_s"] = round(time.monotonic() - t0, 3)
        if server.info:
            row["server_info"] = server.info
        url = "http://127.0.0.1:%d%s" % (port, path)
        row["check"] = check(port)

        # Warm-up, which also tells how long the measured run will take.
        _, warm = h2load(
            args.load_core,
            url,
            args.warmup,
            args,
            extra,
            args.max_seconds + 3 * args.stall_seconds + 10,
        )
        row["warmup"] = {
            k: warm[k]
            for k in ("req_per_s", "finished_s", "succeeded", "failed", "errored", "timeout")
        }
        if not server.alive():
            raise BenchError("server died during warm-up")
        if warm["succeeded"] < warm["total"]:
            raise BenchError(
                "warm-up: %d of %d requests succeeded in %.1fs (%d failed, "
                "%d timed out: no activity for %ds)"
                % (
                    warm["succeeded"],
                    warm["total"],
                    warm["finished_s"],
                    warm["failed"],
                    warm["timeout"],
                    args.stall_seconds,
                )
            )

        # Measured run, bounded to about --max-seconds at the warm-up's rate.
        requests = args.requests
        affordable = int(warm["req_per_s"] * args.max_seconds)
        if affordable < requests:
            requests = max(args.warmup, affordable)
            row["notes"].append(
                "-n cut to %d (warm-up at %.0f req/s; --max-seconds %d)"
                % (requests, warm["req_per_s"], args.max_seconds)
            )
        cpu0, t_run = server.cpu_seconds(), time.monotonic()
        cmd, res = h2load(
            args.load_core,
            url,
            requests,
            args,
            extra,
            2 * args.max_seconds + 3 * args.stall_seconds + 10,
        )
        cpu1, t_run = server.cpu_seconds(), time.monotonic() - t_run
        row["threads"] = server.threads()
        row["command"] = shlex.join(cmd)
        row.update(res)
        if cpu0 is not None and cpu1 is not None and t_run > 0:
            row["server_cpu"] = round((cpu1 - cpu0) / t_run, 3)
        if not server.alive():
            raise BenchError(
                "server died during the measured run (%d of %d requests "
                "succeeded)" % (res["succeeded"], res["total"])
            )
        bad = res["total"] - res["succeeded"]
        if bad:
            # What it did is kept (req_per_s: succeeded / the run's length,
            # the idle tail included), but the row does not count.
            row["partial"] = True
            what = (
                "stalled: no activity for %ds after %d of %d requests succeeded"
                % (args.stall_seconds, res["succeeded"], res["total"])
                if res["timeout"]
                else "%d of %d requests succeeded" % (res["succeeded"], res["total"])
            )
            try:
                check(port)
                after = "a call made after it succeeded"
            except BenchError as e:
                after = "then %s" % e
            raise BenchError(
                "%s (%d failed, %d errored, %d timed out; %.0f req/s over %.1fs); "
                "%s"
                % (
                    what,
                    res["failed"],
                    res["errored"],
                    res["timeout"],
                    res["req_per_s"],
                    res["finished_s"],
                    after,
                )
            )
        # h2load counts any HTTP 200 as success; re-check the server still answers OK.
        row["check_after"] = check(port)
        # (Figures in the CPU table; the notes stay the same across repeats.)
        if (row.get("h2load_cpu") or 0) >= 0.9:
            row["notes"].append("h2load used 90% or more of its core: load-generator bound")
        if row.get("server_cpu") is not None and row["server_cpu"] < 0.85:
            row["notes"].append(
                "server used less than 85% of its core: not CPU-bound, or other work ran on core 0"
            )
        row["ok"] = True
    except BenchError as e:
        row["error"] = str(e)
    except Exception as e:  # noqa: BLE001  (never let one row take the others down)
        row["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        server.stop()
        tail = server.stderr_tail()
        if tail and (not row["ok"] or kind == "python"):
            row["server_stderr_tail"] = tail
        server.close()
    return row


# --- summary and output ---------------------------------------------------------------


def summarize(rows, names, payloads):
    """Median req/s per server and payload over the repeats, and the ratios."""
    summary = {}
    for name in names:
        summary[name] = {}
        for payload in payloads:
            runs = [r for r in rows if r["server"] == name and r["payload_bytes"] == payload]
            good = [r["req_per_s"] for r in runs if r["ok"]]
            partial = [r["req_per_s"] for r in runs if r.get("partial")]
            cell = {
                "runs": len(runs),
                "ok_runs": len(good),
                "req_per_s": round(statistics.median(good), 1) if good else None,
                "range": [min(good), max(good)] if good else None,
                "errors": [r["error"] for r in runs if not r["ok"]],
                "notes": sorted({n for r in runs for n in r.get("notes", [])}),
                "skipped": bool(runs) and all(r.get("skipped") for r in runs),
                # runs that stalled or lost requests: what they did, not a figure
                "partial_req_per_s": round(statistics.median(partial), 1)
                if partial and not good
                else None,
            }
            cpus = [r["server_cpu"] for r in runs if r["ok"] and r.get("server_cpu") is not None]
            cell["server_cpu"] = round(statistics.median(cpus), 3) if cpus else None
            loads = [r["h2load_cpu"] for r in runs if r["ok"] and r.get("h2load_cpu") is not None]
            cell["h2load_cpu"] = round(statistics.median(loads), 3) if loads else None
            threads = [r["threads"] for r in runs if r["ok"] and r.get("threads")]
            cell["threads"] = max(threads) if threads else None
            lat = [r["latency_ms"]["mean"] for r in runs if r["ok"] and r.get("latency_ms")]
            cell["latency_mean_ms"] = round(statistics.median(lat), 3) if lat else None
            summary[name][str(payload)] = cell
    for payload in payloads:
        base = summary.get(BASELINE, {}).get(str(payload), {}).get("req_per_s")
        cpp = summary.get(CPP, {}).get(str(payload), {}).get("req_per_s")
        for name in names:
            cell = summary[name][str(payload)]
            v = cell["req_per_s"]
            cell["vs_grpcio_sync"] = round(v / base, 3) if v and base else None
            cell["vs_cpp"] = round(v / cpp, 3) if v and cpp else None
    return summary


def fmt_int(v):
    return f"{v:,.0f}"


def print_table(summary, names, payloads, args):
    print()
    print(
        "unary %s, -n %d -c %d -m %d, server on core %s, h2load on core %s%s"
        % (
            PATH,
            args.requests,
            args.connections,
            args.streams,
            args.server_core,
            args.load_core,
            ", median of %d runs" % args.repeats if args.repeats > 1 else "",
        )
    )
    print("x grpcio: relative to grpcio sync; x C++: relative to the C++ callback-API server")
    col = 34
    hdr1 = "%-46s" % "" + "".join(("%s payload" % size_label(p)).center(col) for p in payloads)
    hdr2 = "%-46s" % "server" + "".join(
        "%12s %10s %10s" % ("req/s", "x grpcio", "x C++") for _ in payloads
    )
    print(hdr1)
    print(hdr2)
    print("-" * len(hdr2))
    for name in names:
        line = "%-46s" % SERVERS[name][0]
        for p in payloads:
            c = summary[name][str(p)]
            if c["req_per_s"] is None:
                status = (
                    "SKIPPED"
                    if c["skipped"]
                    else "STALLED"
                    if c["partial_req_per_s"] is not None
                    else "FAILED"
                )
                line += "%12s %10s %10s" % (status, "-", "-")
            else:
                flag = "!" if c["notes"] else " "
                line += "%11s%s %10s %10s" % (
                    fmt_int(c["req_per_s"]),
                    flag,
                    "%.2fx" % c["vs_grpcio_sync"] if c["vs_grpcio_sync"] else "-",
                    "%.2fx" % c["vs_cpp"] if c["vs_cpp"] else "-",
                )
        print(line)
    print()
    hdr = "%-46s" % "CPU over the measured run (one core = 100%)" + "".join(
        ("%s: server/h2load, threads" % size_label(p)).rjust(col) for p in payloads
    )
    print(hdr)
    for name in names:
        line = "%-46s" % SERVERS[name][0]
        for p in payloads:
            c = summary[name][str(p)]
            if c["server_cpu"] is None:
                line += "%34s" % "-"
            else:
                line += "%34s" % (
                    "%3.0f%% / %3.0f%%, %s"
                    % (100 * c["server_cpu"], 100 * (c["h2load_cpu"] or 0), c["threads"] or "?")
                )
        print(line)
    notes = []
    for name in names:
        for p in payloads:
            c = summary[name][str(p)]
            for e in c["errors"]:
                notes.append(
                    "%s, %s: %s%s"
                    % (SERVERS[name][0], size_label(p), "" if c["skipped"] else "FAILED: ", e)
                )
            for n in c["notes"]:
                notes.append("%s, %s: ! %s" % (SERVERS[name][0], size_label(p), n))
    if notes:
        print()
        for n in notes:
            print("  " + n)
    print()
    if "grpc_green" in names and payloads:
        p = 16 if 16 in payloads else payloads[0]
        c = summary["grpc_green"][str(p)]
        for key, what in (("vs_grpcio_sync", "grpcio sync"), ("vs_cpp", "C++ callback server")):
            v = c[key]
            target = TARGETS[key]
            print(
                "grpc_green native / %s, %s: %s (target >= %.1fx: %s)"
                % (
                    what,
                    size_label(p),
                    "%.2fx" % v if v else "n/a",
                    target,
                    "n/a" if not v else ("met" if v >= target else "NOT met"),
                )
            )
        a = summary.get("cpp_async", {}).get(str(p), {}).get("req_per_s")
        if a and c["req_per_s"]:
            print(
                "grpc_green native / C++ async server (1 thread), %s: %.2fx (no target)"
                % (size_label(p), c["req_per_s"] / a)
            )


def versions(args):
    out = {"python": platform.python_version()}
    for mod in ("grpc", "google.protobuf", "gevent", "greenlet"):
        try:
            m = __import__(mod, fromlist=["__version__"])
            out["grpcio" if mod == "grpc" else mod.split(".")[-1]] = m.__version__
        except Exception:  # noqa: BLE001  (a version that cannot be read is left out)
            pass
    for key, cmd in (
        ("h2load", ["h2load", "--version"]),
        ("nghttpd", ["nghttpd", "--version"]),
        ("libgrpc++", ["pkg-config", "--modversion", "grpc++"]),
        ("git_head", ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
    ):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out[key] = p.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--requests",
        "-n",
        type=int,
        default=60000,
        help="requests in each measured run (default 60000)",
    )
    ap.add_argument(
        "--payloads",
        default="16,16384",
        help="EchoMsg.payload sizes in bytes, comma-separated (default 16,16384)",
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="requests in each warm-up run (default: requests/10, 1000..6000)",
    )
    ap.add_argument("--connections", "-c", type=int, default=4)
    ap.add_argument(
        "--streams",
        "-m",
        type=int,
        default=16,
        help="max concurrent streams per connection (default 16)",
    )
    ap.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of: " + ", ".join(SERVERS),
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="measured runs per server and payload, interleaved; the table "
        "shows the median (default 1)",
    )
    ap.add_argument(
        "--max-seconds",
        type=int,
        default=60,
        help="cut -n so that a measured run takes about this long at the "
        "warm-up's rate (default 60)",
    )
    ap.add_argument(
        "--stall-seconds",
        type=int,
        default=5,
        help="h2load -N: give up on a connection after this long without activity (default 5)",
    )
    ap.add_argument(
        "--cpp-server",
        default=DEFAULT_CPP_SERVER,
        help="row cpp: C++ callback-API echo server binary (default "
        "build/bench/echo_server_cb, built with make if needed)",
    )
    ap.add_argument(
        "--cpp-async-server",
        default=DEFAULT_CPP_ASYNC_SERVER,
        help="row cpp_async: C++ async-API echo server binary (default "
        "build/bench/echo_server_cpp, built with make if needed)",
    )
    ap.add_argument(
        "--nghttpd-get",
        action="store_true",
        help="nghttpd row: plain GET of the file (anchors.md's method) instead "
        "of a POST of the same request body as the gRPC rows",
    )
    ap.add_argument("--output", default=os.path.join(RESULTS, "server.json"))
    ap.add_argument(
        "--chart", default=None, help="PNG chart (default: the output's name with .png)"
    )
    args = ap.parse_args()
    if args.warmup is None:
        args.warmup = min(6000, max(1000, args.requests // 10))
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in names if s not in SERVERS]
    try:
        payloads = [int(x) for x in args.payloads.split(",") if x.strip()]
    except ValueError:
        ap.error("--payloads: comma-separated integers")
    if unknown:
        ap.error("unknown servers %s" % unknown)
    if (
        args.requests < 1
        or args.repeats < 1
        or not payloads
        or min(payloads) < 0
        or args.stall_seconds < 1
        or args.max_seconds < 1
    ):
        ap.error("bad -n, --repeats, --payloads, --stall-seconds or --max-seconds")
    for tool in ("h2load", "nghttp"):
        if not shutil.which(tool):
            log("%s not found: apt-get install -y nghttp2-client" % tool)
            return 1
    chart = args.chart or os.path.splitext(args.output)[0] + ".png"

    # Turn SIGTERM/SIGHUP into SystemExit so the try/finally in run_row still
    # kills the server (servers run in their own session, out of our group).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))

    args.server_core, args.load_core = cores()
    if args.server_core is None:
        log("warning: fewer than 2 usable cores or no taskset; running unpinned")
    args.cpp_binary = {"cpp": args.cpp_server, "cpp_async": args.cpp_async_server}
    args.cpp_error = {}
    for name, path in args.cpp_binary.items():
        if name in names:
            args.cpp_error[name] = ensure_cpp_server(path)
            if args.cpp_error[name]:
                log("warning: %s row skipped: %s" % (name, args.cpp_error[name]))

    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        log(
            "warning: load average %.2f before starting; other work on these cores "
            "will skew the figures" % load_at_start[0]
        )

    echo_pb2 = generate_protos()
    rows = []
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grpc_green_bench_") as tmp:
        docroot = os.path.join(tmp, "htdocs")
        os.makedirs(docroot)
        files = {"docroot": docroot, "payloads": {}}
        for payload in payloads:
            data = bytes(i % 251 for i in range(payload))
            framed = grpc_frame(echo_pb2.EchoMsg(payload=data).SerializeToString())
            p = {
                "request_file": os.path.join(tmp, "unary_%d.bin" % payload),
                "response": framed,  # an echo: the response body is the request body
                "static_name": "static_%d.bin" % payload,
            }
            with open(p["request_file"], "wb") as f:
                f.write(framed)
            # nghttpd serves a file as large as the gRPC servers' response body.
            with open(os.path.join(docroot, p["static_name"]), "wb") as f:
                f.write(framed)
            files["payloads"][payload] = p
        for rep in range(args.repeats):
            # Interleaved: each repeat goes through every server and payload.
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                for payload in payloads:
                    log(
                        "[bench] %s, %s%s ..."
                        % (
                            name,
                            size_label(payload),
                            ", run %d" % (rep + 1) if args.repeats > 1 else "",
                        )
                    )
                    t0 = time.monotonic()
                    row = run_row(name, payload, args, files)
                    row["repeat"] = rep
                    row["wall_s"] = round(time.monotonic() - t0, 2)
                    log(
                        "[bench] %s, %s: %s (%.1fs)"
                        % (
                            name,
                            size_label(payload),
                            "%.0f req/s" % row["req_per_s"] if row["ok"] else row["error"],
                            row["wall_s"],
                        )
                    )
                    rows.append(row)
    wall = time.monotonic() - t_start
    load_at_end = os.getloadavg()

    summary = summarize(rows, names, payloads)
    print_table(summary, names, payloads, args)
    report = {
        "benchmark": "server_unary",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": {
            "rpc": PATH,
            "payloads_bytes": payloads,
            "framed_request_bytes": {
                str(p): len(files["payloads"][p]["response"]) for p in payloads
            },
            "requests": args.requests,
            "warmup_requests": args.warmup,
            "connections": args.connections,
            "max_concurrent_streams": args.streams,
            "repeats": args.repeats,
            "max_seconds": args.max_seconds,
            "stall_seconds": args.stall_seconds,
            "server_core": args.server_core,
            "load_generator_core": args.load_core,
            "nghttpd": {
                "method": "GET" if args.nghttpd_get else "POST",
                "window_args": NGHTTPD_WINDOW_ARGS,
                "file": "the framed echo response of each payload",
            },
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in load_at_start],
            "loadavg_at_end": [round(x, 2) for x in load_at_end],
        },
        "versions": versions(args),
        "wall_s": round(wall, 1),
        "servers": {n: SERVERS[n][0] for n in names},
        "targets": TARGETS,
        "summary": summary,
        "results": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print("results: %s" % os.path.relpath(args.output, os.getcwd()))
    try:
        sys.path.insert(0, BENCH)
        import plot

        plot.plot_server(report, chart)
        print("chart:   %s" % os.path.relpath(chart, os.getcwd()))
    except ImportError as e:
        log("no chart (%s): .venv/bin/pip install -r bench/requirements.txt" % e)
    print(
        "server benchmark took %.0fs; load average %.2f at start, %.2f at end"
        % (wall, load_at_start[0], load_at_end[0])
    )
    must = [n for n in MUST_PASS if n in names]
    ok = all(
        summary[n][str(p)]["ok_runs"] == summary[n][str(p)]["runs"] for n in must for p in payloads
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
