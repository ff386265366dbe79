"""grpc_green on gevent's hub, inside gevent applications.

Every test runs one scenario script from tests/gevent_scenarios/ in a fresh
subprocess: ``gevent.monkey.patch_all()`` must come before any other import
and must never reach this pytest process (whose grpc_green runs on the
native hub). Each script runs a real grpc_green server and client on
loopback, on gevent's hub, checks what it observes, exits non-zero on a
failure and prints its measurements as ``RESULT {json}``; the tests here
assert on the exit code and again on those measurements.

Covered:

* many_greenlets: 500 client greenlets x 40 unary calls against a server in
  the same process, all answered correctly, handlers interleaved, and a
  gevent.sleep(0.01) ticker never more than 100 ms late; the hub is gevent's.
* wsgi_alongside: a gevent.pywsgi server and a gevent StreamServer keep
  answering probes every 5 ms (each within 200 ms) under heavy unary,
  server-streaming and bidi gRPC load in the same process.
* cancel: gevent.Timeout around a blocked call and Greenlet.kill() of a
  greenlet blocked in a call (unary, and next() on a response stream) raise
  in the caller, and the server's handler sees the call cancelled
  (is_active() False, add_callback callback ran).
* request_iterators: stream_unary and stream_stream request iterators built
  on gevent.queue.Queue, gevent.event.Event and gevent.sleep.
* patch_order: patch_grpc() before/after patch_all(), patch_all(grpc=True)
  (the gevent plugin entry point), patch_all() alone (grpc left alone),
  GRPC_GREEN_HUB=gevent and hub.use("gevent") without monkey-patching; the
  unchanged generated stubs make calls, the hub is gevent's.
* handler_concurrency: handlers that gevent.sleep, spawn and join child
  greenlets, feed a stream from a gevent queue or make nested gRPC calls run
  concurrently (>= half of 200 calls' handlers in progress at once).
* grpcio_interop: real grpcio (tests/peers/, plain subprocesses without
  gevent) as client of a grpc_green server on gevent's hub, and as server of
  a grpc_green client on gevent's hub.

Nothing asserts speed beyond generous bounds (a scenario's total under 10 s,
the ticker's and probes' lags above).
"""

import importlib.util
import json
import os
import sys

import pytest
from conftest import GEN_DIR, ROOT, TESTS_DIR

SCENARIOS = TESTS_DIR / "gevent_scenarios"
TIMEOUT = 90.0

pytestmark = [
    pytest.mark.green_only,
    pytest.mark.skipif(importlib.util.find_spec("gevent") is None, reason="gevent not installed"),
]


class ScenarioFailed(AssertionError):
    """A scenario script exited non-zero; carries its output."""

    def __init__(self, message, stdout, stderr):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr


def scenario_env(**extra):
    env = dict(os.environ)
    for key in ("GRPC_GREEN_HUB", "GRPC_GREEN_TEST_IMPL"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(GEN_DIR)])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env.update(extra)
    return env


def run_scenario(hub, script, *args, env=None, timeout=TIMEOUT):
    """Runs tests/gevent_scenarios/<script> in a fresh interpreter; returns
    its RESULT json. Raises ScenarioFailed if it exits non-zero."""
    result = hub.run_process(
        [sys.executable, SCENARIOS / script, *args], timeout=timeout, env=env or scenario_env()
    )
    if result.returncode != 0:
        raise ScenarioFailed(
            "%s %s exited %s after %.1fs\nstdout:\n%s\nstderr:\n%s"
            % (
                script,
                " ".join(args),
                result.returncode,
                result.elapsed,
                result.stdout[-4000:],
                result.stderr[-8000:],
            ),
            result.stdout,
            result.stderr,
        )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, "expected one RESULT line:\n%s\n%s" % (result.stdout, result.stderr)
    return json.loads(lines[0][len("RESULT ") :])


# ------------------------------------------------------------------ tests


def test_many_greenlets_share_gevents_hub(hub):
    result = run_scenario(hub, "many_greenlets.py", "500", "40")
    assert result["hub"] == "gevent"
    assert result["calls"] == result["server_calls"] == 500 * 40
    assert result["max_in_flight"] > 1
    assert result["ticks"] > 0
    assert result["max_lag"] < 0.100, result


def test_gevent_servers_keep_serving_during_grpc_load(hub):
    result = run_scenario(hub, "wsgi_alongside.py", "1.5")
    assert result["hub"] == "gevent"
    grpc_counts = result["grpc"]
    assert grpc_counts["unary"] >= 100, grpc_counts
    assert grpc_counts["server_stream"] >= 10, grpc_counts
    assert grpc_counts["bidi"] >= 10, grpc_counts
    for probe in ("http", "line"):
        stats = result[probe]
        assert stats["errors"] == [], (probe, stats)
        assert stats["answers"] >= 20, (probe, stats)
        assert stats["max_latency"] < 0.200, (probe, stats)


@pytest.mark.parametrize(
    "case",
    [
        "timeout_unary",
        "timeout_stream",
        "timeout_stream_kept",  # the Timeout object (and its traceback) outlive the call
        "kill_unary",
        "kill_stream",
    ],
)
def test_interrupting_a_blocked_call_cancels_it(hub, case):
    result = run_scenario(hub, "cancel.py", case)
    assert result["hub"] == "gevent"
    caller, server = result["caller"], result["server"]
    assert caller["raised"] == ("GreenletExit" if case.startswith("kill") else "Timeout"), caller
    assert caller["got"] == ([] if case.endswith("unary") else ["first"]), caller
    assert result["interrupted_after"] < 2.0, result
    assert server["started"] and server["active_at_start"], server
    assert server["ended"] and server["saw_inactive"], server
    assert server["callback_ran"] and server["callback_saw_inactive"], server


def test_request_iterators_on_gevent_primitives(hub):
    result = run_scenario(hub, "request_iterators.py")
    assert result["hub"] == "gevent"
    for key in ("client_stream_queue", "client_stream_queue_future"):
        assert result[key] == {"count": 20, "total_bytes": sum(range(20))}, result[key]
    assert result["client_stream_many"]["calls"] == 50
    assert result["client_stream_many"]["max_active_generators"] > 25, result
    assert result["bidi_queue_ping_pong"] == {"rounds": 100}
    assert result["bidi_event_paced"] == {"rounds": 30}


@pytest.mark.parametrize(
    "order, env",
    [
        ("before", {}),
        ("after", {}),
        ("plugin", {}),
        ("plugin_off", {}),
        ("env_gevent", {"GRPC_GREEN_HUB": "gevent"}),
        ("use_gevent", {}),
    ],
)
def test_patch_order(hub, order, env):
    result = run_scenario(hub, "patch_order.py", order, env=scenario_env(**env))
    assert result["order"] == order
    if order == "plugin_off":
        assert result["grpc_patched"] is False
        assert result["socket_patched"] is True
        return
    assert result["grpc"] == "grpc_green"
    assert result["hub"] == "gevent"
    assert result["replies"] == 20
    assert result["socket_patched"] is (order in ("before", "after", "plugin"))


def test_gevent_inside_handlers_runs_concurrently(hub):
    result = run_scenario(hub, "handler_concurrency.py", "200")
    assert result["hub"] == "gevent"
    assert result["calls"] == {"unary": 200, "stream": 50, "proxy": 50}
    concurrent = result["max_concurrent"]
    assert concurrent["unary"] >= 100, concurrent
    assert concurrent["children"] >= 6, concurrent
    assert concurrent["stream"] >= 25 and concurrent["proxy"] >= 25, concurrent
    assert result["elapsed"] < 10.0, result


def test_grpcio_client_calls_green_server_on_gevent(hub):
    result = run_scenario(hub, "grpcio_interop.py", "grpcio_client")
    assert result["hub"] == "gevent"
    assert result["scenarios"] == sorted(
        "echo metadata status exception deadline unimplemented concurrent".split()
    )
    assert result["status_cases"] >= 20
    assert result["max_in_flight"] >= 50, result
    assert result["max_lag"] < 0.1, result


def test_green_client_on_gevent_calls_grpcio_server(hub):
    result = run_scenario(hub, "grpcio_interop.py", "grpcio_server")
    assert result["hub"] == "gevent"
    assert result["concurrent_calls"] == 100
    assert result["max_lag"] < 0.1, result
