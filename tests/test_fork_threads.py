"""Threads and fork.

Threads: every OS thread has a hub of its own. A channel serves every
thread (tests/test_threads.py); a call is read and waited on by the thread
that started it, and a server is driven by the thread that made it: other
threads get a clear RuntimeError. Several threads each running their own
hub work side by side.

Fork: ``fork_scenario.py`` runs in a subprocess per mode (grpc_green's hub
with os.fork(); gevent's hub with gevent's os.fork() and with gevent.fork()).
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from conftest import ROOT

pytestmark = pytest.mark.green_only

HERE = Path(__file__).resolve().parent


def _generic(handlers):
    return grpc.method_handlers_generic_handler("threads.Test", handlers)


def _echo(request, context):
    return request


def _serve(extra=None):
    server = grpc.server(None)
    handlers = {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    handlers.update(extra or {})
    server.add_generic_rpc_handlers((_generic(handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _in_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    assert not t.is_alive(), "thread did not finish"
    return box


def test_server_used_from_another_thread_is_refused():
    server, port = _serve()
    try:
        box = _in_thread(lambda: server.stop(None))
        assert isinstance(box.get("error"), RuntimeError), box
        assert "another thread" in str(box["error"])
        with grpc.insecure_channel("127.0.0.1:%d" % port) as channel:
            assert channel.unary_unary("/threads.Test/Echo")(b"x", timeout=10) == b"x"
    finally:
        server.stop(None).wait()


def test_streaming_call_used_from_another_thread_is_refused():
    def count(request, context):
        for i in range(3):
            yield bytes([i])

    server, port = _serve({"Count": grpc.unary_stream_rpc_method_handler(count)})
    try:
        with grpc.insecure_channel("127.0.0.1:%d" % port) as channel:
            call = channel.unary_stream("/threads.Test/Count")(b"", timeout=10)
            assert next(call) == b"\x00"
            box = _in_thread(lambda: next(call))
            assert isinstance(box.get("error"), RuntimeError), box
            assert list(call) == [b"\x01", b"\x02"]
    finally:
        server.stop(None).wait()


def test_threads_each_run_their_own_hub():
    """A server in one thread, clients in three others, all at once."""
    expected_kind = grpc.hub.kind()
    ready = threading.Event()
    state = {}

    def stop(request, context):
        state["stop"].set()
        return b""

    def server_thread():
        state["stop"] = grpc.hub.Event()  # this thread's hub
        server, port = _serve({"Stop": grpc.unary_unary_rpc_method_handler(stop)})
        state["port"] = port
        state["server_kind"] = grpc.hub.kind()
        ready.set()
        state["stop"].wait(60)
        server.stop(None).wait()

    def client_thread(n, results):
        ready.wait(10)
        results[n] = {"kind": grpc.hub.kind()}
        with grpc.insecure_channel("127.0.0.1:%d" % state["port"]) as channel:
            echo = channel.unary_unary("/threads.Test/Echo")
            tasks = [
                grpc.hub.spawn(lambda i=i: echo(b"%d-%d" % (n, i), timeout=20)) for i in range(50)
            ]
            results[n]["ok"] = [t.get(30) for t in tasks] == [b"%d-%d" % (n, i) for i in range(50)]

    results = {}
    threads = [threading.Thread(target=server_thread)] + [
        threading.Thread(target=client_thread, args=(n, results)) for n in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(60)
    with grpc.insecure_channel("127.0.0.1:%d" % state["port"]) as channel:
        channel.unary_unary("/threads.Test/Stop")(b"", timeout=10)
    threads[0].join(30)
    assert not any(t.is_alive() for t in threads)
    assert state["server_kind"] == expected_kind
    assert results == {n: {"kind": expected_kind, "ok": True} for n in range(3)}


@pytest.mark.parametrize("mode", ["native", "gevent-os", "gevent-fork"])
def test_fork(mode):
    env = dict(os.environ)
    env.pop("GRPC_GREEN_HUB", None)  # the scenario picks its hub itself
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(HERE / "fork_scenario.py"), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["kind"] == ("native" if mode == "native" else "gevent")
    assert result["child_exit"] == 0
    assert result["stream_completed"] and result["same_peer_after"]
    assert result["child"] == {
        "kind": result["kind"],
        "same_kind": True,
        "old_channel_works": True,
        "old_channel_new_peer": True,
        "stream_refused": True,
        "server_refused": True,
        "new_objects_work": True,
    }
    # The parent's handler, resumed in the child by gevent, ended quietly.
    assert "Traceback" not in proc.stderr, proc.stderr
