"""Helpers shared by the gevent scenario scripts (tests/gevent_scenarios/*.py).

Every scenario is a standalone program run by tests/test_gevent.py in a fresh
subprocess, because ``gevent.monkey.patch_all()`` has to run before anything
else is imported and must never reach the pytest process. A scenario script:

1. monkey-patches first (``gevent.monkey.patch_all()``), then imports this
   module and patches grpc (``grpc_green.monkey.patch_grpc()``);
2. runs a real grpc_green server and client on loopback, both on gevent's hub;
3. checks what it observed itself (``check``) and exits non-zero on failure;
4. prints its measurements as one line ``RESULT {json}`` (``run``), which the
   test parses and asserts on again.

Importing this module puts the repository root, tests/ (echo_behaviour,
streaming_behaviour) and tests/_gen/ (generated stubs) on sys.path; it imports
neither grpc nor grpc_green, so a script decides when grpc gets patched.
"""

import faulthandler
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
GEN = TESTS / "_gen"
PEERS = TESTS / "peers"

for _path in (str(GEN), str(TESTS), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(1, _path)

import gevent  # noqa: E402  (the script has already monkey-patched)
import gevent.event  # noqa: E402

# A hung scenario dumps every thread's stack and exits instead of hanging
# until the test's own timeout.
WATCHDOG_SECONDS = 45


class ScenarioFailure(AssertionError):
    pass


def check(condition, message, *details):
    """Fails the scenario with `message` (and `details`) unless `condition`."""
    if not condition:
        if details:
            message = "%s: %s" % (message, " ".join(repr(d) for d in details))
        raise ScenarioFailure(message)


def run(body, *args):
    """Runs body(*args) -> dict, prints ``RESULT <json>``, exits 0; exits 1
    with the traceback on stderr if it raises."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    try:
        result = body(*args)
    except BaseException:  # noqa: BLE001 -- reported, then exit 1
        traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        sys.exit(1)
    finally:
        faulthandler.cancel_dump_traceback_later()
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
    sys.exit(0)


def hub_kind():
    import grpc_green.hub

    return grpc_green.hub.kind()


def serve(*registrations, **server_kwargs):
    """A started grpc_green server on 127.0.0.1:0: (server, "127.0.0.1:port").

    Each registration is a callable taking the server (e.g. a generated
    add_*_to_server bound with functools.partial) or a generic handler.
    """
    import grpc

    server = grpc.server(None, **server_kwargs)
    for registration in registrations:
        if callable(registration) and not hasattr(registration, "service"):
            registration(server)
        else:
            server.add_generic_rpc_handlers((registration,))
    port = server.add_insecure_port("127.0.0.1:0")
    check(isinstance(port, int) and port > 0, "add_insecure_port failed", port)
    server.start()
    return server, "127.0.0.1:%d" % port


def wait_until(predicate, timeout=5.0, message="condition not met"):
    """Polls `predicate` with gevent.sleep; fails the scenario after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        check(time.monotonic() < deadline, "%s within %ss" % (message, timeout))
        gevent.sleep(0.002)


class Ticker:
    """A greenlet that sleeps `interval` with gevent.sleep over and over and
    records how late each wake-up was (the lag of gevent's hub)."""

    def __init__(self, interval=0.01):
        self.interval = interval
        self.max_lag = 0.0
        self.ticks = 0
        self._stop = False
        self._greenlet = None

    def start(self):
        self._greenlet = gevent.spawn(self._run)
        return self

    def _run(self):
        while not self._stop:
            started = time.monotonic()
            gevent.sleep(self.interval)
            self.max_lag = max(self.max_lag, time.monotonic() - started - self.interval)
            self.ticks += 1

    def stop(self):
        self._stop = True
        self._greenlet.join(5)
        check(self._greenlet.dead, "ticker did not stop")
        if self._greenlet.exception is not None:
            raise self._greenlet.exception
        return self


def joinall(greenlets, timeout=30):
    """gevent.joinall that fails the scenario on a timeout and re-raises the
    first greenlet error."""
    done = gevent.joinall(greenlets, timeout=timeout)
    check(
        len(done) == len(greenlets),
        "%d of %d greenlets still running after %ss"
        % (len(greenlets) - len(done), len(greenlets), timeout),
    )
    for greenlet in greenlets:
        if greenlet.exception is not None:
            raise greenlet.exception
    return [greenlet.value for greenlet in greenlets]
