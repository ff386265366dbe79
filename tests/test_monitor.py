"""The blocked-hub monitor (grpc_green.hub.start_monitor): a handler that
blocks its hub longer than max_blocking_time is logged once, to the
"grpc_green.hub" logger, with the stack that held the hub. On gevent's hub,
gevent's own monitor watches, and grpc_green logs what it reports.
"""

import logging
import os
import subprocess
import sys
import time

import grpc  # grpc_green (patched by conftest)
import pytest

from grpc_green import hub as green_hub

pytestmark = pytest.mark.green_only

SERVICE = "grpc_green.testing.Monitor"


def sleepy_handler(request, context):
    time.sleep(0.3)  # holds the hub: what the monitor is for
    return b"slept"


def polite_handler(request, context):
    green_hub.sleep(0.3)  # parks: the hub runs on
    return b"parked"


@pytest.fixture
def monitored(caplog):
    caplog.set_level(logging.WARNING, logger="grpc_green.hub")
    green_hub.start_monitor(max_blocking_time=0.1)
    yield caplog
    green_hub.stop_monitor()


@pytest.fixture
def channel(green_server, make_channel):
    server = green_server(
        handlers=[
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Sleepy": grpc.unary_unary_rpc_method_handler(sleepy_handler),
                    "Polite": grpc.unary_unary_rpc_method_handler(polite_handler),
                },
            )
        ]
    )
    return make_channel(server.target)


def records_naming(caplog, name):
    return [
        r
        for r in caplog.records
        if r.name == "grpc_green.hub" and r.levelno == logging.WARNING and name in r.getMessage()
    ]


def test_a_blocking_handler_is_reported_once(monitored, channel):
    assert channel.unary_unary("/%s/Sleepy" % SERVICE)(b"", timeout=10) == b"slept"
    green_hub.sleep(0.3)  # the monitor's next looks (the hub is free again)
    records = records_naming(monitored, "sleepy_handler")
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert "time.sleep(0.3)" in message
    assert records[0].grpc_green_greenlet is not None


def test_a_parking_handler_is_not_reported(monitored, channel):
    assert channel.unary_unary("/%s/Polite" % SERVICE)(b"", timeout=10) == b"parked"
    green_hub.sleep(0.3)
    assert records_naming(monitored, "polite_handler") == []


def test_stop_monitor_stops_reporting(caplog, channel):
    caplog.set_level(logging.WARNING, logger="grpc_green.hub")
    green_hub.start_monitor(max_blocking_time=0.1)
    green_hub.stop_monitor()
    green_hub.sleep(0.1)  # the monitor thread's last look
    assert channel.unary_unary("/%s/Sleepy" % SERVICE)(b"", timeout=10) == b"slept"
    green_hub.sleep(0.3)
    assert records_naming(caplog, "sleepy_handler") == []


def test_bad_threshold():
    with pytest.raises(ValueError):
        green_hub.start_monitor(max_blocking_time=0)


def test_started_by_the_environment(support):
    """GRPC_GREEN_MONITOR_THREAD=1 at import; the report reaches the
    logging module's default handler (stderr)."""
    script = (
        "import time, grpc_green\n"
        "from grpc_green import hub\n"
        "hub.get_hub()\n"
        "hub.sleep(0)\n"
        "def held_by_a_plain_sleep():\n"
        "    time.sleep(0.3)\n"
        "held_by_a_plain_sleep()\n"
        "hub.sleep(0.2)\n"
    )
    env = dict(os.environ, GRPC_GREEN_MONITOR_THREAD="1", GRPC_GREEN_MAX_BLOCKING_TIME="0.1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(support.root), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("held_by_a_plain_sleep") >= 1, result.stderr
    assert "has not run its loop" in result.stderr, result.stderr
