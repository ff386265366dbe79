"""Threads sharing a channel, as grpcio code does: any thread may call,
stream, cancel and close at once, while the main thread blocks in plain
threading waits (join, futures), never in a grpc_green call.

Each test runs against a grpcio server (a subprocess) and a grpc_green
server running in a thread of its own, and passes on grpcio too
(GRPC_GREEN_TEST_IMPL=grpcio).
"""

import gc
import os
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import pytest
import threads_service
from conftest import ROOT, TESTS_DIR, USING_GREEN, _new_server

SERVICE = "/" + threads_service.SERVICE
sleep = grpc.hub.sleep if USING_GREEN else time.sleep


class ServerThread:
    """The implementation under test serving threads_service in a thread of
    its own (on that thread's hub)."""

    def __init__(self):
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    def _run(self):
        server = _new_server()
        server.add_generic_rpc_handlers((threads_service.handler(grpc, sleep),))
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self.ready.set()
        while not self.stopping.is_set():
            sleep(0.02)
        server.stop(None)

    def stop(self):
        self.stopping.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module", params=["grpcio-server", "green-server"])
def target(request):
    if request.param == "grpcio-server":
        yield "127.0.0.1:%d" % request.getfixturevalue("grpcio_server").port
    else:
        server = ServerThread()
        yield "127.0.0.1:%d" % server.port
        server.stop()


def run_threads(fn, n):
    """fn(i) in n threads at once; returns their results, raises the first error."""
    results = [None] * n
    errors = []

    def run(i):
        try:
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "threads did not finish"
    if errors:
        raise errors[0]
    return results


def test_many_threads_share_one_channel(target):
    with grpc.insecure_channel(target) as channel:
        echo = channel.unary_unary(SERVICE + "/Echo")
        assert echo(b"main", timeout=30) == b"main"
        results = run_threads(
            lambda i: [echo(b"%d-%d" % (i, k), timeout=30) for k in range(5)], 100
        )
        assert results == [[b"%d-%d" % (i, k) for k in range(5)] for i in range(100)]
        # The thread that made it still calls on it.
        assert echo(b"main again", timeout=30) == b"main again"


def test_thread_pool_fan_out(target):
    with grpc.insecure_channel(target) as channel:
        echo = channel.unary_unary(SERVICE + "/Echo")
        requests = [b"%d" % i for i in range(200)]
        with futures.ThreadPoolExecutor(max_workers=8) as pool:
            assert list(pool.map(lambda r: echo(r, timeout=30), requests)) == requests


def test_threads_stream_on_one_channel(target):
    with grpc.insecure_channel(target) as channel:
        count = channel.unary_stream(SERVICE + "/Count")
        chat = channel.stream_stream(SERVICE + "/Chat")

        def both(i):
            counted = list(count(b"5,0.01", timeout=30))
            chatted = list(chat(iter([b"%d-%d" % (i, k) for k in range(5)]), timeout=30))
            return counted, chatted

        for i, (counted, chatted) in enumerate(run_threads(both, 8)):
            assert counted == [b"0", b"1", b"2", b"3", b"4"]
            assert chatted == [b"%d-%d" % (i, k) for k in range(5)]


def test_close_from_another_thread_cancels_every_threads_calls(target):
    channel = grpc.insecure_channel(target)
    count = channel.unary_stream(SERVICE + "/Count")
    started = [threading.Event() for _ in range(4)]

    def stream(i):
        call = count(b"100000,0.05", timeout=60)
        got = [next(call)]
        started[i].set()
        try:
            for message in call:
                got.append(message)
        except grpc.RpcError as error:
            return error.code(), len(got)
        return None, len(got)

    box = {}
    runner = threading.Thread(target=lambda: box.setdefault("r", run_threads(stream, 4)))
    runner.start()
    for event in started:
        assert event.wait(30)
    began = time.monotonic()
    channel.close()
    runner.join(60)
    assert not runner.is_alive()
    assert time.monotonic() - began < 20
    for code, received in box["r"]:
        assert code == grpc.StatusCode.CANCELLED
        assert received < 1000
    # Closed for every thread.
    with pytest.raises(ValueError):
        channel.unary_unary(SERVICE + "/Echo")(b"x", timeout=5)
    with pytest.raises(ValueError):
        run_threads(lambda i: channel.unary_unary(SERVICE + "/Echo")(b"x", timeout=5), 1)


def test_cancel_from_another_thread(target):
    """A worker streams on a channel the main thread made; the main thread
    cancels the worker's call."""
    with grpc.insecure_channel(target) as channel:
        count = channel.unary_stream(SERVICE + "/Count")
        first = threading.Event()
        box = {}

        def consume():
            call = box["call"] = count(b"100000,0.05", timeout=60)
            got = [next(call)]
            first.set()
            try:
                for message in call:
                    got.append(message)
            except grpc.RpcError as error:
                box["code"] = error.code()
            box["got"] = len(got)

        t = threading.Thread(target=consume)
        t.start()
        assert first.wait(30)
        call = box["call"]
        assert call.cancel() is True
        t.join(30)
        assert not t.is_alive()
        assert box["code"] == grpc.StatusCode.CANCELLED
        assert box["got"] < 1000
        assert call.code() == grpc.StatusCode.CANCELLED
        assert call.cancel() is False
        # The channel goes on, in both threads.
        echo = channel.unary_unary(SERVICE + "/Echo")
        assert echo(b"after", timeout=30) == b"after"
        assert run_threads(lambda i: echo(b"t", timeout=30), 2) == [b"t", b"t"]


def test_cancel_a_future_from_another_thread(target):
    with grpc.insecure_channel(target) as channel:
        slow = channel.unary_unary(SERVICE + "/Sleep")
        started = threading.Event()
        box = {}

        def wait():
            future = box["future"] = slow.future(b"20", timeout=60)
            started.set()
            try:
                future.result(timeout=30)
            except grpc.FutureCancelledError:
                box["woken"] = "cancelled"

        t = threading.Thread(target=wait)
        t.start()
        assert started.wait(30)
        assert box["future"].cancel() is True
        t.join(30)
        assert not t.is_alive()
        assert box["woken"] == "cancelled"
        assert box["future"].cancelled()
        assert slow(b"0", timeout=30) == b"slept"


def test_channel_made_in_a_thread_that_ended(target):
    box = {}

    def make():
        box["channel"] = grpc.insecure_channel(target)
        box["echo"] = box["channel"].unary_unary(SERVICE + "/Echo")
        return box["echo"](b"maker", timeout=30)

    assert run_threads(lambda i: make(), 1) == [b"maker"]
    assert box["echo"](b"main", timeout=30) == b"main"
    assert run_threads(lambda i: box["echo"](b"other", timeout=30), 3) == [b"other"] * 3
    box["channel"].close()


def _open_fds():
    """(sockets, all fds) open in this process."""
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.append(os.readlink("/proc/self/fd/" + fd))
        except OSError:
            pass  # the listing's own fd, gone already
    return sum(f.startswith("socket:") for f in fds), len(fds)


def test_short_lived_threads_leave_nothing_behind(target):
    """Threads that each make a call and end: their connections go with them,
    and a channel dropped in another thread than the ones that used it is
    freed without touching their loops."""
    with grpc.insecure_channel(target) as channel:
        echo = channel.unary_unary(SERVICE + "/Echo")
        assert echo(b"warm", timeout=30) == b"warm"
        run_threads(lambda i: echo(b"x", timeout=30), 4)
        gc.collect()
        sockets, fds = _open_fds()
        for _ in range(5):
            run_threads(lambda i: echo(b"x", timeout=30), 10)
        gc.collect()
        # Every thread's connection closed with it (grpcio keeps a few
        # sockets of its own: a small margin).
        assert _open_fds()[0] <= sockets + 4
        if USING_GREEN and grpc.hub.kind() == "native":
            # And its loop. (A gevent hub that gevent made for a plain
            # thread keeps its loop's two fds after the thread ends.)
            assert _open_fds()[1] <= fds + 4

    def drop_elsewhere(i):
        channel = grpc.insecure_channel(target)
        echo = channel.unary_unary(SERVICE + "/Echo")
        assert run_threads(lambda k: echo(b"y", timeout=30), 3) == [b"y"] * 3
        call = channel.unary_stream(SERVICE + "/Count")(b"3,0", timeout=30)
        return channel, call

    box = run_threads(drop_elsewhere, 1)
    # The channel and an unfinished call made in an ended thread, freed here.
    del box
    gc.collect()

    # Made and used here, the last reference dropped in a worker: this
    # thread's engine is freed on this thread's next pass.
    holder = [grpc.insecure_channel(target)]
    assert holder[0].unary_unary(SERVICE + "/Echo")(b"here", timeout=30) == b"here"
    run_threads(lambda i: holder.pop().close(), 1)
    with grpc.insecure_channel(target) as channel:
        assert channel.unary_unary(SERVICE + "/Echo")(b"z", timeout=30) == b"z"


# --------------------------------------------- a server given a thread pool


# On gevent's hub a server runs on its maker's hub, thread pool or not
# (threads block cooperatively once gevent has patched them).
pool_server_test = pytest.mark.skipif(
    USING_GREEN and grpc.hub.kind() == "gevent",
    reason="a server given a thread pool gets a thread of its own on the native hub",
)


def _pool_server():
    """grpcio's usual server: made with a thread pool, by a plain thread."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((threads_service.handler(grpc, sleep),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, "127.0.0.1:%d" % port


@pool_server_test
def test_pool_server_serves_while_its_thread_blocks():
    """After start(), the thread that made the server may sleep, wait on
    threading primitives or on a pool of client threads: the server goes on
    serving (grpcio's servers serve from threads of their own)."""
    server, target = _pool_server()
    try:
        with grpc.insecure_channel(target) as channel:
            echo = channel.unary_unary(SERVICE + "/Echo")
            # A pool of client threads while this thread waits on the pool.
            with futures.ThreadPoolExecutor(max_workers=8) as pool:
                assert list(pool.map(lambda i: echo(b"%d" % i, timeout=30), range(50))) == [
                    b"%d" % i for i in range(50)
                ]
            # A client thread while this thread sleeps in time.sleep.
            box = {}
            t = threading.Thread(target=lambda: box.setdefault("r", echo(b"slept", timeout=30)))
            t.start()
            time.sleep(0.3)
            t.join(30)
            assert box["r"] == b"slept"
            # And this thread calls it too.
            assert echo(b"here", timeout=30) == b"here"
    finally:
        stopped = server.stop(None)
    assert stopped.wait(30)
    assert server.wait_for_termination(0) is False


@pool_server_test
def test_pool_server_stop_and_termination_from_other_threads():
    server, target = _pool_server()
    with grpc.insecure_channel(target) as channel:
        assert channel.unary_unary(SERVICE + "/Echo")(b"x", timeout=30) == b"x"
    # Not stopped yet: the wait times out.
    assert server.wait_for_termination(0.05) is True
    waited = {}
    waiter = threading.Thread(
        target=lambda: waited.setdefault("r", server.wait_for_termination(30))
    )
    waiter.start()
    run_threads(lambda i: server.stop(0.5).wait(30), 1)
    waiter.join(30)
    assert waited["r"] is False
    with pytest.raises(grpc.RpcError) as info:
        with grpc.insecure_channel(target) as channel:
            channel.unary_unary(SERVICE + "/Echo")(b"x", timeout=2)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pool_server_test
def test_pool_server_dropped_closes_its_port():
    server, target = _pool_server()
    with grpc.insecure_channel(target) as channel:
        assert channel.unary_unary(SERVICE + "/Echo")(b"x", timeout=30) == b"x"
    del server
    gc.collect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(target) as channel:
                channel.unary_unary(SERVICE + "/Echo")(b"x", timeout=1)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            return
        time.sleep(0.05)
    raise AssertionError("the dropped server still answers")


@pool_server_test
def test_pool_server_left_running_at_exit(tmp_path):
    """A script that starts a server with a pool and ends without stopping
    it exits cleanly, as with grpcio."""
    script = tmp_path / "serve_and_leave.py"
    script.write_text(
        "import sys, time\n"
        "sys.path[:0] = %r\n" % [str(p) for p in (ROOT, TESTS_DIR)] + "import os\n"
        "if os.environ.get('GRPC_GREEN_TEST_IMPL', 'grpc_green') != 'grpcio':\n"
        "    import grpc_green.monkey; grpc_green.monkey.patch_grpc()\n"
        "import grpc, threads_service\n"
        "from concurrent import futures\n"
        "server = grpc.server(futures.ThreadPoolExecutor(2))\n"
        "server.add_generic_rpc_handlers((threads_service.handler(grpc, time.sleep),))\n"
        "port = server.add_insecure_port('127.0.0.1:0')\n"
        "server.start()\n"
        "ch = grpc.insecure_channel('127.0.0.1:%d' % port)\n"
        "print(ch.unary_unary('/grpc_green.testing.Threads/Echo')(b'ok', timeout=10).decode())\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_request_generator_reads_another_call(target):
    """A request generator (consumed in a worker thread) that reads the
    responses of another call the caller started: each message is read on
    the caller's hub and handed over."""
    with grpc.insecure_channel(target) as channel:
        count = channel.unary_stream(SERVICE + "/Count")
        chat = channel.stream_stream(SERVICE + "/Chat")
        source = count(b"200,0", timeout=30)
        out = list(chat((b"x" + message for message in source), timeout=30))
        assert out == [b"x%d" % i for i in range(200)]
        assert source.code() == grpc.StatusCode.OK
