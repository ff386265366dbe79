"""Shared fixtures for the grpc_green test suite.

Implementation under test
-------------------------
By default the suite tests grpc_green: this module calls
``grpc_green.monkey.patch_grpc()`` before anything imports a generated
``*_pb2_grpc`` module, so ``import grpc`` in the tests and in the generated
code resolves to grpc_green, and every test runs grpc_green client and server
on the calling thread's hub (no threads).

With ``GRPC_GREEN_TEST_IMPL=grpcio`` nothing is patched and the same tests run
against real grpcio in-process. That mode exists to validate the tests
themselves; there (and only there) threads stand in for greenlets.

Generated code
--------------
``protos/*.proto`` is compiled with ``python -m grpc_tools.protoc`` into
``tests/_gen/`` (gitignored) when missing or stale; that directory is put on
``sys.path`` so tests simply ``import testing_pb2, testing_pb2_grpc``.

Peers
-----
``tests/peers/grpcio_server.py`` and ``tests/peers/grpcio_client.py`` are
standalone programs that import real grpcio; they always run in a subprocess.
While a subprocess runs, this process may be the server it talks to, so it is
waited for cooperatively (poll + ``hub.sleep``), never with a blocking
``wait()``; its output goes to temporary files so it can never block on a
full pipe.
"""

import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
PROTOS_DIR = ROOT / "protos"
GEN_DIR = TESTS_DIR / "_gen"
PEERS_DIR = TESTS_DIR / "peers"

IMPL = os.environ.get("GRPC_GREEN_TEST_IMPL", "grpc_green").strip().lower() or "grpc_green"
if IMPL not in ("grpc_green", "grpcio"):
    raise RuntimeError(
        "GRPC_GREEN_TEST_IMPL must be 'grpc_green' (default) or 'grpcio', got %r" % IMPL
    )
USING_GRPCIO = IMPL == "grpcio"
USING_GREEN = not USING_GRPCIO


# --------------------------------------------------------------- generation


def _generate_protos():
    """Compiles protos/*.proto into tests/_gen/ unless it is up to date."""
    protos = sorted(PROTOS_DIR.glob("*.proto"))
    if not protos:
        raise RuntimeError("no .proto files in %s" % PROTOS_DIR)
    outputs = []
    for proto in protos:
        outputs += [GEN_DIR / (proto.stem + "_pb2.py"), GEN_DIR / (proto.stem + "_pb2_grpc.py")]
    newest_input = max(p.stat().st_mtime for p in protos + [Path(__file__)])
    if all(o.exists() and o.stat().st_mtime >= newest_input for o in outputs):
        return
    GEN_DIR.mkdir(exist_ok=True)
    # Generate into a scratch directory, then move files in one by one, so a
    # concurrent or interrupted run never leaves a half-written module.
    with tempfile.TemporaryDirectory(dir=GEN_DIR) as scratch:
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(PROTOS_DIR),
            "--python_out=" + scratch,
            "--grpc_python_out=" + scratch,
        ] + [str(p) for p in protos]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError("protoc failed:\n%s\n%s" % (result.stdout, result.stderr))
        for produced in Path(scratch).iterdir():
            os.replace(produced, GEN_DIR / produced.name)


_generate_protos()
if str(GEN_DIR) not in sys.path:
    sys.path.insert(0, str(GEN_DIR))


# ------------------------------------------------------ module under test

# Set by `make test-wheel`: the package under test is installed (the wheel),
# and the suite runs outside the checkout.
INSTALLED = os.environ.get("GRPC_GREEN_TEST_INSTALLED") == "1"

if USING_GREEN:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if "grpc" in sys.modules and not sys.modules["grpc"].__name__.startswith("grpc_green"):
        raise RuntimeError(
            "real grpcio was imported before tests/conftest.py could patch it "
            "(imported by a plugin?); run with -p no:<plugin> or set "
            "GRPC_GREEN_TEST_IMPL=grpcio"
        )
    import grpc_green
    import grpc_green.hub
    import grpc_green.monkey

    # `make test-wheel` runs this suite from a copy of tests/ against the
    # wheel installed into a scratch venv: every test must get that package.
    if INSTALLED and not grpc_green.__file__.startswith(sys.prefix + os.sep):
        raise RuntimeError(
            "GRPC_GREEN_TEST_INSTALLED=1 but grpc_green comes from %s, not from "
            "this environment (%s)" % (grpc_green.__file__, sys.prefix)
        )
    grpc_green.monkey.patch_grpc()

import grpc  # noqa: E402  (grpc_green when patched, grpcio otherwise)
import testing_pb2  # noqa: E402
import testing_pb2_grpc  # noqa: E402

GRPC_MODULE = grpc_green if USING_GREEN else grpc


def pytest_report_header(config):
    hub = " on the %s hub" % GRPC_MODULE.hub.kind() if USING_GREEN else ""
    return "grpc implementation under test: %s%s (%s)" % (IMPL, hub, GRPC_MODULE.__file__)


def pytest_configure(config):
    config.addinivalue_line("markers", "green_only: needs grpc_green (greenlets, hub)")


def pytest_collection_modifyitems(config, items):
    if USING_GREEN:
        return
    skip = pytest.mark.skip(reason="only meaningful for grpc_green (GRPC_GREEN_TEST_IMPL=grpcio)")
    for item in items:
        if "green_only" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------- cooperative hub


class _ThreadTask:
    """grpcio-mode stand-in for a grpc_green.hub task (a thread)."""

    def __init__(self, fn, args, kwargs):
        self._value = None
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, fn, args, kwargs):
        try:
            self._value = fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 -- re-raised by get()
            self._error = error

    @property
    def dead(self):
        return not self._thread.is_alive()

    def join(self, timeout=None):
        self._thread.join(timeout)
        return self.dead

    def get(self, timeout=None):
        self._thread.join(timeout)
        if not self.dead:
            raise TimeoutError("task still running")
        if self._error is not None:
            raise self._error
        return self._value


class CompletedProcess:
    def __init__(self, args, returncode, stdout, stderr, elapsed):
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed

    def __repr__(self):
        return "CompletedProcess(args=%r, returncode=%r)" % (self.args, self.returncode)


def _peer_env():
    """Environment for subprocesses: real grpcio, no sanitizer preload."""
    env = dict(os.environ)
    for key in ("LD_PRELOAD", "GRPC_GREEN_TEST_IMPL"):
        env.pop(key, None)
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Process:
    """A subprocess whose stdout/stderr go to temporary files.

    Everything that waits on it does so by polling with ``hub.sleep``, so the
    hub of this thread keeps serving while the subprocess runs.
    """

    def __init__(self, hub, args, env=None, cwd=None):
        self._hub = hub
        self.args = [str(a) for a in args]
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE,  # peers exit when this closes
            stdout=self._out,
            stderr=self._err,
            env=env if env is not None else _peer_env(),
            cwd=cwd,
        )

    @staticmethod
    def _read(f):
        # pread: the child writes through the same open file, so moving its
        # offset (seek) would make the child's next write land over what it
        # wrote before ("PORT 4242" + "\n" read as "\nORT 4242").
        fd = f.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")

    def stdout(self):
        return self._read(self._out)

    def stderr(self):
        return self._read(self._err)

    def poll(self):
        return self.popen.poll()

    def wait(self, timeout):
        """Cooperatively waits for exit; kills it and fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    "%s did not finish within %ss\nstdout:\n%s\nstderr:\n%s"
                    % (" ".join(self.args), timeout, self.stdout(), self.stderr())
                )
            self._hub.sleep(0.01)
        return self.popen.returncode

    def wait_for_output(self, pattern, timeout):
        """Cooperatively waits until stdout matches `pattern`; returns the match."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.stdout())
            if match:
                return match
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    "%s never printed %r (exit code %s)\nstdout:\n%s\nstderr:\n%s"
                    % (
                        " ".join(self.args),
                        pattern,
                        self.popen.returncode,
                        self.stdout(),
                        self.stderr(),
                    )
                )
            self._hub.sleep(0.01)

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
            # Reaping a SIGKILLed child takes microseconds; poll anyway.
            deadline = time.monotonic() + 5
            while self.popen.poll() is None and time.monotonic() < deadline:
                self._hub.sleep(0.005)
        if self.popen.stdin:
            try:
                self.popen.stdin.close()
            except OSError:
                pass

    def close(self):
        self.kill()
        self._out.close()
        self._err.close()


class Hub:
    """The cooperative primitives the tests use.

    grpc_green: grpc_green.hub (greenlets on this thread's hub).
    grpcio:     threads, time.sleep and threading.Event.
    """

    def __init__(self):
        if USING_GREEN:
            self.spawn = grpc_green.hub.spawn
            self.sleep = grpc_green.hub.sleep
            self.Event = grpc_green.hub.Event
        else:
            self.spawn = lambda fn, *args, **kwargs: _ThreadTask(fn, args, kwargs)
            self.sleep = time.sleep
            self.Event = threading.Event

    def wait_until(self, predicate, timeout=5.0, interval=0.005, message=None):
        """Polls `predicate` cooperatively; fails the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(message or "condition not met within %ss" % timeout)
            self.sleep(interval)

    def start_process(self, args, env=None, cwd=None):
        return Process(self, args, env=env, cwd=cwd)

    def run_process(self, args, timeout=30.0, env=None, cwd=None):
        """Runs a subprocess to completion without blocking this thread's hub."""
        proc = Process(self, args, env=env, cwd=cwd)
        try:
            returncode = proc.wait(timeout)
            return CompletedProcess(
                proc.args,
                returncode,
                proc.stdout(),
                proc.stderr(),
                time.monotonic() - proc.started,
            )
        finally:
            proc.close()


HUB = Hub()


@pytest.fixture(scope="session")
def hub():
    return HUB


@pytest.fixture(scope="session")
def grpc_mod():
    """The module under test: grpc_green, or grpcio in GRPC_GREEN_TEST_IMPL=grpcio mode."""
    return GRPC_MODULE


# --------------------------------------------------------------- servicer


from echo_behaviour import headers_to_metadata, metadata_to_headers, respond  # noqa: E402


class EchoServicer(testing_pb2_grpc.TestServiceServicer):
    """TestService.Echo, driven by the fields of EchoRequest (see testing.proto).

    The answer itself comes from echo_behaviour, shared with the grpcio peer.
    Bookkeeping is bounded (deques), so leak tests can run it for thousands
    of calls.
    """

    def __init__(self, sleep=None, history=256):
        self._sleep = sleep or HUB.sleep
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        # The last `history` calls: (message, "completed"|"cancelled"), the
        # messages whose add_callback ran, (message, invocation metadata, peer).
        self.outcomes = collections.deque(maxlen=history)
        self.callbacks = collections.deque(maxlen=history)
        # add_callback() registrations accepted, and callbacks that have run.
        self.callbacks_added = 0
        self.callbacks_run = 0
        self.requests = collections.deque(maxlen=history)

    def _callback_ran(self, message):
        self.callbacks_run += 1
        self.callbacks.append(message)

    def _nap(self, seconds, context):
        """Sleeps `seconds` in small steps; stops early once the RPC is over."""
        end = time.monotonic() + seconds
        while context.is_active():
            left = end - time.monotonic()
            if left <= 0:
                return True
            self._sleep(min(left, 0.01))
        return False

    def Echo(self, request, context):
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        message = request.message
        if context.add_callback(lambda: self._callback_ran(message)):
            self.callbacks_added += 1
        try:
            metadata = tuple(context.invocation_metadata())
            peer = context.peer()
            self.requests.append((message, metadata, peer))
            remaining = context.time_remaining()
            if request.die:
                context.abort(
                    grpc.StatusCode.INTERNAL, "'die' is only supported by the grpcio peer"
                )
            if request.sleep_seconds > 0:
                if not self._nap(request.sleep_seconds, context):
                    self.outcomes.append((message, "cancelled"))
                    return testing_pb2.EchoResponse()
            self.outcomes.append((message, "completed"))

            return respond(grpc, request, context, metadata, peer, remaining)
        finally:
            self.in_flight -= 1


RAW_SERVICE = "grpc_green.testing.Raw"


def raw_handlers():
    """A bytes-in/bytes-out service without serializers: Raw/Identity, Raw/Upper."""
    return grpc.method_handlers_generic_handler(
        RAW_SERVICE,
        {
            "Identity": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
            "Upper": grpc.unary_unary_rpc_method_handler(lambda request, context: request.upper()),
        },
    )


# ---------------------------------------------------------------- servers


class ServerHandle:
    def __init__(self, server, port, servicer):
        self.server = server
        self.port = port
        self.target = "127.0.0.1:%d" % port
        self.servicer = servicer


def _new_server(grpcio_workers=32, **kwargs):
    """An unstarted server of the implementation under test.

    In grpcio mode it gets a thread pool of `grpcio_workers` threads.
    """
    if USING_GRPCIO:
        from concurrent import futures

        kwargs.setdefault("thread_pool", futures.ThreadPoolExecutor(max_workers=grpcio_workers))
    return grpc.server(**kwargs)


@pytest.fixture
def green_server(hub):
    """Factory: green_server(servicer=None, handlers=(), register=None,
    address="127.0.0.1:0", **server_kwargs) -> ServerHandle.

    Starts a server of the implementation under test with `servicer` (a
    TestServiceServicer), extra generic `handlers` and whatever
    `register(server)` adds (e.g. a generated add_*_to_server), all before
    start(); stops it at teardown.
    """
    started = []

    def start(servicer=None, handlers=(), register=None, address="127.0.0.1:0", **server_kwargs):
        server = _new_server(**server_kwargs)
        if servicer is not None:
            testing_pb2_grpc.add_TestServiceServicer_to_server(servicer, server)
        if handlers:
            server.add_generic_rpc_handlers(tuple(handlers))
        if register is not None:
            register(server)
        port = server.add_insecure_port(address)
        assert isinstance(port, int) and port > 0, port
        server.start()
        started.append(server)
        return ServerHandle(server, port, servicer)

    yield start
    for server in started:
        server.stop(None).wait(5)


@pytest.fixture
def echo_server(green_server):
    """A started server with EchoServicer and the Raw bytes service."""
    return green_server(EchoServicer(), handlers=[raw_handlers()])


@pytest.fixture
def make_channel():
    """Factory: make_channel(target, **kwargs) -> channel, closed at teardown."""
    channels = []

    def make(target, **kwargs):
        channel = grpc.insecure_channel(target, **kwargs)
        channels.append(channel)
        return channel

    yield make
    for channel in channels:
        channel.close()


@pytest.fixture
def echo_channel(echo_server, make_channel):
    return make_channel(echo_server.target)


@pytest.fixture
def echo_stub(echo_channel):
    return testing_pb2_grpc.TestServiceStub(echo_channel)


# ------------------------------------------------------------------ peers


class PeerServer:
    def __init__(self, process, port):
        self.process = process
        self.port = port
        self.target = "127.0.0.1:%d" % port

    def alive(self):
        return self.process.poll() is None


def _start_grpcio_server(hub, *extra_args):
    proc = hub.start_process([sys.executable, PEERS_DIR / "grpcio_server.py", *extra_args])
    match = proc.wait_for_output(r"^PORT (\d+)$", timeout=30)
    return PeerServer(proc, int(match.group(1)))


@pytest.fixture
def grpcio_server_factory(hub):
    """Factory: starts a fresh tests/peers/grpcio_server.py; killed at teardown."""
    peers = []

    def start(*extra_args):
        peer = _start_grpcio_server(hub, *extra_args)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.process.close()


@pytest.fixture(scope="module")
def grpcio_server():
    """A real grpcio server (subprocess) serving TestService, shared by a module.

    Tests that kill it ('die') must use grpcio_server_factory instead.
    """
    peer = _start_grpcio_server(HUB)
    yield peer
    peer.process.close()


@pytest.fixture(scope="session")
def grpcio_client(hub):
    """run(scenario, target, timeout=60) -> dict parsed from grpcio_client.py's JSON."""

    def run(scenario, target, timeout=60.0):
        result = hub.run_process(
            [sys.executable, PEERS_DIR / "grpcio_client.py", scenario, target], timeout=timeout
        )
        assert result.returncode == 0, (
            "grpcio_client.py %s failed (exit %s)\nstdout:\n%s\nstderr:\n%s"
            % (scenario, result.returncode, result.stdout, result.stderr)
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        assert lines, "grpcio_client.py printed no JSON:\n%s\n%s" % (result.stdout, result.stderr)
        return json.loads(lines[-1])

    return run


# --------------------------------------------------------------- helpers


def rpc_error(fn, *args, **kwargs):
    """Calls fn and returns the grpc.RpcError it raises (fails if it returns)."""
    try:
        result = fn(*args, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError("expected grpc.RpcError, got result %r" % (result,))


@pytest.fixture(scope="session")
def support():
    """Helpers shared by the test modules (which import generated code directly)."""
    return types.SimpleNamespace(
        impl=IMPL,
        using_green=USING_GREEN,
        EchoServicer=EchoServicer,
        raw_handlers=raw_handlers,
        RAW_SERVICE=RAW_SERVICE,
        rpc_error=rpc_error,
        new_server=_new_server,
        metadata_to_headers=metadata_to_headers,
        headers_to_metadata=headers_to_metadata,
        peers_dir=PEERS_DIR,
        root=ROOT,
    )
