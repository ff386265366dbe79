"""Process helpers shared by bench/concurrency.py and bench/memory.py.

* WaitServer — bench/servers/wait_server.py in its own process group,
  pinned, its port read from stdout and its STATS lines (handlers running)
  kept; always torn down.
* Child — a load-generating child that speaks `KIND {json}` lines on
  stdout and reads commands on stdin, with a hard time limit.
* status(pid), Sampler — VmRSS / VmHWM from /proc/PID/status, once or
  every few milliseconds in a thread.
* advertised_settings(port) — the SETTINGS frame a server sends (nghttp -v).
"""

import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
GEN = os.path.join(BENCH, "_gen")
RESULTS = os.path.join(BENCH, "results")
WAIT_SERVER = os.path.join(BENCH, "servers", "wait_server.py")

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def raise_nofile():
    """RLIMIT_NOFILE soft limit up to the hard limit; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def status(pid):
    """VmRSS, VmHWM (KiB) and thread count of a process, or None once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
        elif key == "Threads":
            out[key] = int(value)
    return out


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), seconds; None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_sockets(pid):
    """Open socket file descriptors of a process (listening socket included)."""
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        return None
    return n


class Sampler(threading.Thread):
    """Samples a process's VmRSS every `interval` seconds: [(monotonic, KiB)]."""

    def __init__(self, pid, interval=0.005):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples = []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            st = status(self.pid)
            if st is None:
                return
            self.samples.append((time.monotonic(), st["VmRSS"]))
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join(timeout=2)
        return self.samples


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
    """bench/echo.proto -> bench/_gen/echo_pb2.py."""
    os.makedirs(GEN, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I" + BENCH,
        "--python_out=" + GEN,
        os.path.join(BENCH, "echo.proto"),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise BenchError("protoc failed: %s" % (p.stderr.strip() or p.stdout.strip()))


def impl_env(impl):
    """Environment of a child running `impl` (grpc_green: repo root on the path)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("GRPC_GREEN_HUB", None)
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    if impl == "grpc_green":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    else:
        env.pop("PYTHONPATH", None)  # real grpcio; nothing of grpc_green on the path
    return env


def finish_row(row, child, server):
    """Closes a row's load generator and server; on failure the row keeps
    the tails of their stderr."""
    failed = row.get("error") or row.get("errors")
    if child is not None:
        child.close()
        tail = child.stderr()
        if tail and failed:
            row["client_stderr_tail"] = tail[-2000:]
    server.stop()
    tail = server.stderr_tail(2000)
    if tail and failed:
        row["server_stderr_tail"] = tail


def _kill_group(proc, sig=signal.SIGKILL):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class WaitServer:
    """bench/servers/wait_server.py IMPL, pinned to `core`, in its own process group."""

    def __init__(self, impl, core, delay=None):
        self.impl = impl
        self.argv = pinned(
            core,
            [sys.executable, WAIT_SERVER, impl]
            + (["--delay", str(delay)] if delay is not None else []),
        )
        self.proc = None
        self.port = None
        self.stats = {}
        self.stats_at = None
        self._stderr = None
        self._port_q = queue.Queue()

    @property
    def pid(self):
        return self.proc.pid  # taskset execs the server: same pid

    def start(self):
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=impl_env(self.impl),
            cwd=ROOT,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        try:
            line = self._port_q.get(timeout=START_TIMEOUT)
        except queue.Empty:
            raise BenchError("server printed no port within %.0f s" % START_TIMEOUT) from None
        if line is None:
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise BenchError(
                "server exited with status %s before printing a port: %s"
                % (self.proc.returncode, self.stderr_tail(600))
            )
        try:
            self.port = int(line)
        except ValueError:
            raise BenchError("server's first line is not a port: %r" % line[:200]) from None
        return self.port

    def _read(self):
        first = True
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if first:
                self._port_q.put(line)
                first = False
            elif line.startswith("STATS "):
                try:
                    self.stats = json.loads(line[6:])
                    self.stats_at = time.monotonic()
                except ValueError:
                    pass
        if first:
            self._port_q.put(None)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def status(self):
        return status(self.pid)

    def stderr_tail(self, limit=1500):
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace").strip()[-limit:]
        except (OSError, ValueError):
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
                self.proc.wait(timeout=STOP_TIMEOUT)
        _kill_group(self.proc)


class Child:
    """A child process speaking `KIND {json}` lines; killed at `hard_limit` seconds."""

    def __init__(self, argv, env, hard_limit):
        self.argv = argv
        self.hard_limit = hard_limit
        self.t0 = time.monotonic()
        self.lines = queue.Queue()
        self.messages = []  # every (kind, obj) received, in order
        self._stderr = []
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        threading.Thread(target=self._read_out, daemon=True).start()
        self._err_thread = threading.Thread(target=self._read_err, daemon=True)
        self._err_thread.start()
        self.killed = False

    def _read_out(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            kind, _, payload = line.partition(" ")
            try:
                obj = json.loads(payload)
            except ValueError:
                continue  # stray output
            self.lines.put((kind, obj))
        self.lines.put((None, None))

    def _read_err(self):
        self._stderr.append(self.proc.stderr.read())

    def remaining(self):
        return self.hard_limit - (time.monotonic() - self.t0)

    def expect(self, kinds, timeout=None, on_message=None):
        """Waits for a message of one of `kinds`; returns (kind, obj).

        Other messages go to on_message (e.g. PROGRESS). An ERROR message, the
        child's exit or the time limit raise BenchError (the child is killed).
        """
        while True:
            limit = self.remaining() if timeout is None else min(timeout, self.remaining())
            try:
                kind, obj = self.lines.get(timeout=max(0.0, limit))
            except queue.Empty:
                self.kill()
                raise BenchError(
                    "child gave no %s within %.0f s (killed)" % ("/".join(kinds), limit)
                ) from None
            if kind is None:
                self.proc.wait(timeout=STOP_TIMEOUT)
                raise BenchError(
                    "child exited (status %s) before %s%s"
                    % (self.proc.returncode, "/".join(kinds), self.stderr_hint())
                )
            self.messages.append((kind, obj))
            if kind in kinds:
                return kind, obj
            if kind == "ERROR":
                self.kill()
                raise BenchError("child: %s" % obj.get("error"))
            if on_message is not None:
                on_message(kind, obj)

    def send(self, line):
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise BenchError("could not write to the child: %s" % e) from e

    def kill(self):
        self.killed = True
        _kill_group(self.proc)

    def close(self):
        if self.proc.poll() is None:
            self.kill()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        _kill_group(self.proc)
        self._err_thread.join(timeout=2)

    def stderr(self):
        return b"".join(self._stderr).decode(errors="replace").strip()

    def stderr_hint(self):
        self._err_thread.join(timeout=1)
        tail = self.stderr()[-600:]
        return (": " + tail) if tail else ""


def emit(kind, obj):
    """Child side: one `KIND {json}` line on stdout."""
    sys.stdout.write("%s %s\n" % (kind, json.dumps(obj, sort_keys=True)))
    sys.stdout.flush()


_SETTING = re.compile(r"\[SETTINGS_([A-Z_]+)\(0x[0-9a-f]+\):(\d+)\]")


def advertised_settings(port, timeout=10.0):
    """The server's first SETTINGS frame as {name: value}, via `nghttp -v`; None without nghttp."""
    if not shutil.which("nghttp"):
        return None
    try:
        p = subprocess.run(
            ["nghttp", "-v", "-n", "http://127.0.0.1:%d/" % port],
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": "nghttp timed out"}
    text = p.stdout.decode(errors="replace")
    start = text.find("recv SETTINGS frame")
    if start < 0:
        return {"error": "no SETTINGS frame received"}
    end = text.find("recv ", start + 10)
    block = text[start : end if end > 0 else None]
    return {k: int(v) for k, v in _SETTING.findall(block)}


def max_streams_text(settings):
    if settings is None:
        return "not checked (no nghttp)"
    if "error" in settings:
        return "not checked (%s)" % settings["error"]
    v = settings.get("MAX_CONCURRENT_STREAMS")
    return "none advertised (unlimited)" if v is None else str(v)


def git_head():
    try:
        return (
            subprocess.run(
                ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
    except Exception:  # noqa: BLE001
        return None


def machine(load_at_start):
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in load_at_start],
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def grpcio_version():
    try:
        p = subprocess.run(
            [sys.executable, "-c", "import grpc; print(grpc.__version__)"],
            capture_output=True,
            text=True,
            timeout=30,
            env=impl_env("grpcio"),
        )
        return p.stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def write_json(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
