#!/usr/bin/env python3
"""Unary gRPC server throughput: grpc_green vs grpcio sync (and raw nghttpd).

Each server runs pinned to one core (taskset -c 0), h2load runs pinned to the
other (taskset -c 1) and drives 4 connections x 16 concurrent streams of unary
bench.Echo/Unary calls carrying a 16-byte payload. Before the measured run the
harness checks with nghttp that a call really ends with `grpc-status: 0` and
echoes the request, then does a short warm-up.

    .venv/bin/python bench/run.py [--requests N] [--payload-bytes B]
                                  [--servers grpcio_sync,grpc_green,nghttpd]

Prints a table and writes bench/results/server_unary.json. Exit status 0 when
the grpcio sync row ran, 1 otherwise. See bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import queue
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
GEN = os.path.join(BENCH, "_gen")
RESULTS = os.path.join(BENCH, "results")
PATH = "/bench.Echo/Unary"
GRPC_HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
STATIC_FILE_BYTES = 25

SERVERS = {
    "grpcio_sync": "grpcio sync (ThreadPoolExecutor 16)",
    "grpc_green": "grpc_green",
    "nghttpd": "nghttpd --no-tls (static %d B, GET)" % STATIC_FILE_BYTES,
}
BASELINE = "grpcio_sync"

START_TIMEOUT = 20.0  # server must print its port within this many seconds
CHECK_TIMEOUT = 10.0  # nghttp verification call
STOP_TIMEOUT = 5.0  # SIGTERM -> SIGKILL grace


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- setup --------------------------------------------------------------------


def cores():
    """(server core, load-generator core), or (None, None) if we cannot pin."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        allowed = list(range(os.cpu_count() or 1))
    if len(allowed) < 2 or not shutil.which("taskset"):
        return None, None
    return allowed[0], allowed[1]


def pinned(core, argv):
    return argv if core is None else ["taskset", "-c", str(core)] + argv


def generate_protos():
    """bench/echo.proto -> bench/_gen/echo_pb2.py (regenerated every run)."""
    os.makedirs(GEN, exist_ok=True)
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I" + BENCH,
           "--python_out=" + GEN, os.path.join(BENCH, "echo.proto")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise BenchError("protoc failed: %s" % (p.stderr.strip() or p.stdout.strip()))
    sys.path.insert(0, GEN)
    import echo_pb2  # noqa: E402

    return echo_pb2


def grpc_frame(message_bytes):
    return struct.pack(">BI", 0, len(message_bytes)) + message_bytes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- server processes -----------------------------------------------------------


class Server:
    """A server subprocess in its own process group, always torn down."""

    def __init__(self, name, argv, port=None, env=None, workdir=None):
        self.name = name
        self.argv = argv
        self.port = port  # known up front (nghttpd) or read from stdout
        self.env = env
        self.workdir = workdir
        self.proc = None
        self.stderr_file = None

    def start(self):
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.stderr_file, env=self.env, cwd=self.workdir,
            start_new_session=True)
        if self.port is None:
            self.port = self._read_port()
        else:
            self._wait_listening()
        return self.port

    def _read_port(self):
        lines = queue.Queue()

        def drain():  # first line -> queue; keep draining so the pipe never fills
            first = True
            for line in self.proc.stdout:
                if first:
                    lines.put(line)
                    first = False
            if first:
                lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            raise BenchError("no port on stdout within %.0fs" % START_TIMEOUT)
        if line is None:
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise BenchError("exited with status %s before printing a port"
                             % self.proc.returncode)
        try:
            port = int(line.decode().strip())
        except ValueError:
            raise BenchError("first stdout line is not a port: %r" % line[:200])
        if not 0 < port < 65536:
            raise BenchError("bad port %d" % port)
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
            for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
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
        verbose = subprocess.run(base[:1] + ["-v"] + base[1:], capture_output=True,
                                 timeout=CHECK_TIMEOUT)
        plain = subprocess.run(base, capture_output=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError("verification call (nghttp) timed out after %.0fs" % CHECK_TIMEOUT)
    text = verbose.stdout.decode(errors="replace")
    headers = _RECV_HEADER.findall(text)
    status = [v.strip() for k, v in headers if k == ":status"]
    grpc_status = [v.strip() for k, v in headers if k == "grpc-status"]
    grpc_message = [v.strip() for k, v in headers if k == "grpc-message"]
    if status != ["200"]:
        raise BenchError("verification call: HTTP :status %s (nghttp exit %d) %s"
                         % (status or "missing", verbose.returncode,
                            verbose.stderr.decode(errors="replace").strip()[-300:]))
    if grpc_status != ["0"]:
        raise BenchError("verification call: grpc-status %s %s"
                         % (grpc_status or "missing", grpc_message))
    if plain.stdout != expected_body:
        raise BenchError("verification call: response body %r does not echo the request %r"
                         % (plain.stdout[:64], expected_body[:64]))
    return "HTTP 200, grpc-status: 0, body echoed (%d B)" % len(expected_body)


def check_get(port, path, expected_body):
    url = "http://127.0.0.1:%d%s" % (port, path)
    try:
        p = subprocess.run(["nghttp", url], capture_output=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError("verification GET timed out after %.0fs" % CHECK_TIMEOUT)
    if p.returncode != 0 or p.stdout != expected_body:
        raise BenchError("verification GET failed (exit %d, body %r)" % (p.returncode, p.stdout[:64]))
    return "HTTP 200, body %d B" % len(expected_body)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return round(float(m.group(1)) * _UNITS[m.group(2)], 3) if m else None


def parse_h2load(out):
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    if not m:
        raise BenchError("h2load output has no 'finished in' line:\n" + out[-800:])
    seconds = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    res = {"finished_s": seconds, "req_per_s": float(m.group(3))}
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if not m:
        raise BenchError("h2load output has no 'requests:' line:\n" + out[-800:])
    for key, val in zip(("total", "started", "done", "succeeded", "failed", "errored",
                         "timeout"), m.groups()):
        res[key] = int(val)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m:
        res["status_2xx"] = int(m.group(1))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        res["latency_ms"] = {"min": _ms(m.group(1)), "max": _ms(m.group(2)),
                             "mean": _ms(m.group(3)), "sd": _ms(m.group(4))}
    return res


def h2load(core, url, requests, args, extra, min_timeout):
    cmd = pinned(core, ["h2load", "-n", str(requests), "-c", str(args.connections),
                        "-m", str(args.streams)] + extra + [url])
    # Generous: anything below 500 req/s counts as broken. h2load itself waits
    # forever on a stream that never completes, so this is the only bound.
    timeout = max(min_timeout, requests / 500.0)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("h2load timed out after %.0fs (-n %d)" % (timeout, requests))
    if p.returncode != 0:
        raise BenchError("h2load exit %d: %s" % (p.returncode, (p.stderr or p.stdout)[-500:]))
    return cmd, parse_h2load(p.stdout)


# --- one row ------------------------------------------------------------------------


def run_row(name, args, files, server_core, load_core):
    row = {"server": name, "label": SERVERS[name], "ok": False, "error": None}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, GEN, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if name == "nghttpd":
        if not shutil.which("nghttpd"):
            row["error"] = "skipped: nghttpd not installed (apt-get install nghttp2-server)"
            row["skipped"] = True
            return row
        port = free_port()
        server = Server(name, pinned(server_core, [
            "nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", files["docroot"], str(port)]),
            port=port)
        url = "http://127.0.0.1:%d/%s" % (port, files["static_name"])
        extra = []
    else:
        script = os.path.join(BENCH, "servers", "echo_server.py")
        server = Server(name, pinned(server_core, [sys.executable, script, name]), env=env,
                        workdir=ROOT)
        url = None
        extra = GRPC_HEADERS + ["-d", files["unary"]]
    try:
        t0 = time.monotonic()
        port = server.start()
        row["port"] = port
        row["startup_s"] = round(time.monotonic() - t0, 3)
        url = url or "http://127.0.0.1:%d%s" % (port, PATH)
        if name == "nghttpd":
            row["check"] = check_get(port, "/" + files["static_name"], files["static_body"])
        else:
            row["check"] = check_grpc_call(port, files["unary"], files["unary_bytes"])
        _, warm = h2load(load_core, url, args.warmup, args, extra, 20.0)
        row["warmup"] = {k: warm[k] for k in ("req_per_s", "succeeded", "failed")}
        if warm["succeeded"] == 0:
            raise BenchError("warm-up: 0 of %d requests succeeded" % args.warmup)
        if not server.alive():
            raise BenchError("server died during warm-up")
        cmd, res = h2load(load_core, url, args.requests, args, extra, 30.0)
        row["command"] = shlex.join(cmd)
        row.update(res)
        if not server.alive():
            raise BenchError("server died during the measured run")
        # h2load counts any HTTP 200 as success; re-check the server still answers OK.
        if name != "nghttpd":
            check_grpc_call(port, files["unary"], files["unary_bytes"])
        bad = res["failed"] + res["errored"] + res["timeout"]
        if res["succeeded"] == 0:
            raise BenchError("0 of %d requests succeeded" % res["total"])
        if bad:
            row["error"] = "%d of %d requests failed/errored/timed out" % (bad, res["total"])
        row["ok"] = True
    except BenchError as e:
        row["error"] = str(e)
    except Exception as e:  # never let one row take the others down
        row["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        server.stop()
        tail = server.stderr_tail()
        if not row["ok"] and tail:
            row["server_stderr_tail"] = tail
        server.close()
    return row


# --- output ---------------------------------------------------------------------------


def print_table(rows, args):
    base = next((r for r in rows if r["server"] == BASELINE and r["ok"]), None)
    for r in rows:
        r["ratio_vs_grpcio_sync"] = (round(r["req_per_s"] / base["req_per_s"], 3)
                                     if base and r["ok"] else None)
    print()
    print("unary %s, %d B payload, -n %d -c %d -m %d, server on core %s, h2load on core %s"
          % (PATH, args.payload_bytes, args.requests, args.connections, args.streams,
             args.server_core, args.load_core))
    hdr = "%-40s %12s %21s %9s  %s" % ("server", "req/s", "succeeded/failed", "ratio", "note")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if r["ok"]:
            fails = r["failed"] + r["errored"] + r["timeout"]
            print("%-40s %12.0f %21s %9s  %s" % (
                r["label"], r["req_per_s"], "%d/%d" % (r["succeeded"], fails),
                "%.3fx" % r["ratio_vs_grpcio_sync"] if r["ratio_vs_grpcio_sync"] else "-",
                r["error"] or ""))
        else:
            status = "SKIPPED" if r.get("skipped") else "FAILED"
            print("%-40s %12s %21s %9s  %s" % (r["label"], status, "-", "-", r["error"]))
    print()
    green = next((r for r in rows if r["server"] == "grpc_green"), None)
    if green is not None:
        if green["ok"] and base:
            print("grpc_green / grpcio sync = %.3f" % green["ratio_vs_grpcio_sync"])
        else:
            print("grpc_green / grpcio sync = n/a (%s)"
                  % ("grpc_green failed" if not green["ok"] else "no grpcio sync baseline"))
    for r in rows:
        if not r["ok"] and r.get("server_stderr_tail"):
            print("\n--- %s server stderr (tail) ---\n%s" % (r["server"], r["server_stderr_tail"]))


def versions():
    out = {"python": platform.python_version()}
    try:
        import grpc

        out["grpcio"] = grpc.__version__
    except Exception:
        pass
    try:
        import google.protobuf

        out["protobuf"] = google.protobuf.__version__
    except Exception:
        pass
    try:
        p = subprocess.run(["h2load", "--version"], capture_output=True, text=True, timeout=10)
        out["h2load"] = p.stdout.strip()
    except Exception:
        pass
    try:
        p = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        out["git_head"] = p.stdout.strip() or None
    except Exception:
        pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", "-n", type=int, default=60000,
                    help="requests in the measured run (default 60000)")
    ap.add_argument("--payload-bytes", type=int, default=16,
                    help="EchoMsg.payload size in bytes (default 16)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="requests in the warm-up run (default: requests/10, 1000..6000)")
    ap.add_argument("--connections", "-c", type=int, default=4)
    ap.add_argument("--streams", "-m", type=int, default=16,
                    help="max concurrent streams per connection (default 16)")
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help="comma-separated subset of: " + ", ".join(SERVERS))
    ap.add_argument("--output", default=os.path.join(RESULTS, "server_unary.json"))
    args = ap.parse_args()
    if args.warmup is None:
        args.warmup = min(6000, max(1000, args.requests // 10))
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in names if s not in SERVERS]
    if unknown or args.requests < 1 or args.payload_bytes < 0:
        ap.error("bad arguments: unknown servers %s" % unknown if unknown else "bad -n/payload")
    for tool in ("h2load", "nghttp"):
        if not shutil.which(tool):
            log("%s not found: apt-get install -y nghttp2-client" % tool)
            return 1

    # Turn SIGTERM/SIGHUP into SystemExit so the try/finally in run_row still
    # kills the server (servers run in their own session, out of our group).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))

    args.server_core, args.load_core = cores()
    if args.server_core is None:
        log("warning: fewer than 2 usable cores or no taskset; running unpinned")

    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        log("warning: load average %.2f before starting; other work on these cores "
            "will skew the figures" % load_at_start[0])

    echo_pb2 = generate_protos()
    payload = bytes(i % 251 for i in range(args.payload_bytes))
    request = echo_pb2.EchoMsg(payload=payload).SerializeToString()
    framed = grpc_frame(request)

    rows = []
    with tempfile.TemporaryDirectory(prefix="grpc_green_bench_") as tmp:
        files = {"unary": os.path.join(tmp, "unary.bin"), "unary_bytes": framed,
                 "docroot": os.path.join(tmp, "htdocs"), "static_name": "static.bin",
                 "static_body": b"x" * (STATIC_FILE_BYTES - 1) + b"\n"}
        with open(files["unary"], "wb") as f:
            f.write(framed)
        os.makedirs(files["docroot"])
        with open(os.path.join(files["docroot"], files["static_name"]), "wb") as f:
            f.write(files["static_body"])
        for name in names:
            log("[bench] %s ..." % name)
            t0 = time.monotonic()
            row = run_row(name, args, files, args.server_core, args.load_core)
            row["wall_s"] = round(time.monotonic() - t0, 2)
            log("[bench] %s: %s" % (name, "%.0f req/s" % row["req_per_s"] if row["ok"]
                                     else row["error"]))
            rows.append(row)

    print_table(rows, args)
    green = next((r for r in rows if r["server"] == "grpc_green"), None)
    report = {
        "benchmark": "server_unary",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": {
            "rpc": PATH, "payload_bytes": args.payload_bytes,
            "request_message_bytes": len(request), "framed_request_bytes": len(framed),
            "requests": args.requests, "warmup_requests": args.warmup,
            "connections": args.connections, "max_concurrent_streams": args.streams,
            "server_core": args.server_core, "load_generator_core": args.load_core,
        },
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_start": [round(x, 2) for x in load_at_start]},
        "versions": versions(),
        "results": rows,
        "ratio_grpc_green_vs_grpcio_sync":
            green["ratio_vs_grpcio_sync"] if green and green["ok"] else None,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print("results: %s" % os.path.relpath(args.output, os.getcwd()))
    base_ok = any(r["server"] == BASELINE and r["ok"] for r in rows)
    return 0 if base_ok else 1


if __name__ == "__main__":
    sys.exit(main())
