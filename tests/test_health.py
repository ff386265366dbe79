"""grpcio-health-checking's servicer on a grpc_green server.

``grpc_health.v1.health.HealthServicer`` is grpcio's: its ``Watch`` either
takes a ``send_response_callback`` (grpcio's ``experimental_non_blocking``,
the default), or returns an iterator that waits on a ``threading.Condition``
(``experimental_non_blocking=False``). The first runs in a greenlet (the
callback may be called from any thread); the second must run in the
server's executor (marked through ``blocking_handlers``). Either way a Watch
never holds the hub: other calls, and a second probe, are answered while it
is open, and ``set()`` from another thread reaches it.

A frozen hub would freeze this test too (it runs on the same hub), so a
watchdog thread ends the Watches after a while and the test fails.
"""

import threading
from concurrent import futures

import grpc  # grpc_green (patched by conftest) or grpcio in grpcio mode
import pytest
import testing_pb2
import testing_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

Request = health_pb2.HealthCheckRequest
Status = health_pb2.HealthCheckResponse
SERVICE = "grpc_green.testing.TestService"


class Watchdog:
    """Ends every open Watch of ``servicer`` (from its own thread) after
    ``seconds``, and again every ``then`` seconds until stopped; ``fired``
    says whether it had to."""

    def __init__(self, servicer, seconds=10.0, then=2.0):
        self.fired = False
        self._servicer = servicer
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(seconds, then), daemon=True)
        self._thread.start()

    def _run(self, seconds, then):
        while not self._done.wait(seconds):
            seconds = then
            self.fired = True
            with self._servicer._lock:
                callbacks = [
                    cb for cbs in self._servicer._send_response_callbacks.values() for cb in cbs
                ]
            for callback in callbacks:
                callback(None)

    def stop(self):
        self._done.set()
        self._thread.join()


def in_thread(fn, *args):
    """Runs fn(*args) in a new thread and waits for it (cooperatively)."""
    thread = threading.Thread(target=fn, args=args)
    thread.start()
    return thread


MODES = {
    # grpcio's default: Watch gets a send_response_callback and returns.
    "non-blocking": dict(servicer={}, server={}),
    # Watch waits on a threading.Condition: the server is told it blocks.
    "blocking": dict(
        servicer={"experimental_non_blocking": False},
        server={"blocking_handlers": [health.SERVICE_NAME]},
    ),
}


@pytest.fixture(params=sorted(MODES))
def health_server(request, green_server, support):
    mode = MODES[request.param]
    servicer = health.HealthServicer(**mode["servicer"])
    kwargs = dict(mode["server"])
    if support.using_green:
        # Enough threads for test_many_watches_and_updates's blocking Watches.
        kwargs["thread_pool"] = futures.ThreadPoolExecutor(32)
    else:
        kwargs.pop("blocking_handlers", None)
    handle = green_server(
        support.EchoServicer(),
        register=lambda server: health_pb2_grpc.add_HealthServicer_to_server(servicer, server),
        **kwargs,
    )
    handle.health = servicer
    watchdog = Watchdog(servicer)
    handle.watchdog = watchdog
    yield handle
    watchdog.stop()
    assert not watchdog.fired, "a Watch froze the server until the watchdog ended it"


@pytest.fixture
def health_stub(health_server, make_channel):
    return health_pb2_grpc.HealthStub(make_channel(health_server.target))


def test_check_while_a_watch_is_open(health_server, health_stub, support):
    watch = health_stub.Watch(Request(service=SERVICE), timeout=30)
    assert next(watch).status == Status.SERVICE_UNKNOWN
    assert health_stub.Check(Request(), timeout=5).status == Status.SERVING
    error = support.rpc_error(health_stub.Check, Request(service="nope"), timeout=5)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    health_server.health.set(SERVICE, Status.NOT_SERVING)
    assert health_stub.Check(Request(service=SERVICE), timeout=5).status == Status.NOT_SERVING
    assert next(watch).status == Status.NOT_SERVING
    watch.cancel()


def test_watch_leaves_the_server_serving(health_server, health_stub, make_channel, hub):
    servicer = health_server.health
    servicer.set(SERVICE, Status.SERVING)
    watch = health_stub.Watch(Request(service=SERVICE), timeout=30)
    assert next(watch).status == Status.SERVING

    # While it is open: other calls, and a second probe, are answered.
    echo = testing_pb2_grpc.TestServiceStub(make_channel(health_server.target))
    assert echo.Echo(testing_pb2.EchoRequest(message="meanwhile"), timeout=5).message == "meanwhile"
    assert health_stub.Check(Request(service=SERVICE), timeout=5).status == Status.SERVING
    second = health_stub.Watch(Request(service=SERVICE), timeout=30)
    assert next(second).status == Status.SERVING

    # set() from another thread reaches both Watches.
    thread = in_thread(servicer.set, SERVICE, Status.NOT_SERVING)
    assert next(watch).status == Status.NOT_SERVING
    assert next(second).status == Status.NOT_SERVING
    hub.wait_until(lambda: not thread.is_alive())

    # Cancelled, they are forgotten (their close callbacks ran).
    watch.cancel()
    second.cancel()
    hub.wait_until(lambda: not servicer._send_response_callbacks.get(SERVICE))
    assert health_stub.Check(Request(service=SERVICE), timeout=5).status == Status.NOT_SERVING


def test_many_watches_and_updates(health_server, health_stub, hub):
    servicer = health_server.health
    watches = [health_stub.Watch(Request(service="svc-%d" % i), timeout=30) for i in range(20)]
    assert {next(w).status for w in watches} == {Status.SERVICE_UNKNOWN}

    def flip():
        for i in range(20):
            servicer.set("svc-%d" % i, Status.SERVING)

    thread = in_thread(flip)
    assert {next(w).status for w in watches} == {Status.SERVING}
    hub.wait_until(lambda: not thread.is_alive())
    for w in watches:
        w.cancel()
    hub.wait_until(lambda: not any(servicer._send_response_callbacks.values()))


def test_watch_ends_when_the_server_stops(health_server, health_stub, hub):
    watch = health_stub.Watch(Request(service=SERVICE), timeout=30)
    assert next(watch).status == Status.SERVICE_UNKNOWN
    health_server.server.stop(None)
    with pytest.raises(grpc.RpcError):
        next(watch)
    hub.wait_until(lambda: not health_server.health._send_response_callbacks.get(SERVICE))


def test_grpcio_client(health_server, hub, support):
    """grpcio's client: Check, then a Watch that sees an update set() by
    another thread of this process."""
    servicer = health_server.health
    servicer.set(SERVICE, Status.SERVING)
    proc = hub.start_process(
        [
            __import__("sys").executable,
            support.peers_dir / "grpcio_health_client.py",
            health_server.target,
            SERVICE,
        ]
    )
    try:
        proc.wait_for_output(r"^FIRST SERVING$", timeout=30)
        thread = in_thread(servicer.set, SERVICE, Status.NOT_SERVING)
        assert proc.wait(30) == 0, proc.stderr()
        hub.wait_until(lambda: not thread.is_alive())
        lines = proc.stdout().split("\n")
        assert lines[:4] == [
            "CHECK SERVING",
            "FIRST SERVING",
            "SECOND NOT_SERVING",
            "CHECK_AFTER NOT_SERVING",
        ], proc.stdout()
    finally:
        proc.close()
