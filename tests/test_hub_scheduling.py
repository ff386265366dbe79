"""The hub's scheduling: greenlets that keep waking one another directly
(never waiting for IO or a timer) must not starve the sockets and timers
of every other greenlet."""

import signal
import time

import pytest
import testing_pb2

import grpc_green.hub as green_hub

ROUNDS_LIMIT = 100_000


@pytest.fixture(autouse=True)
def _green_only(support):
    if not support.using_green:
        pytest.skip("grpc_green's hub")


def test_event_ping_pong_does_not_starve_timers():
    a, b = green_hub.Event(), green_hub.Event()
    state = {"rounds": 0, "stop": False, "woke_at_round": None}

    def ping():
        while not state["stop"]:
            b.set()
            a.wait()
            a.clear()
            state["rounds"] += 1
            if state["rounds"] >= ROUNDS_LIMIT:
                state["stop"] = True
        b.set()

    def pong():
        while True:
            b.wait()
            b.clear()
            a.set()
            if state["stop"]:
                return

    def sleeper():
        green_hub.sleep(0.01)
        state["woke_at_round"] = state["rounds"]
        state["stop"] = True

    tasks = [green_hub.spawn(sleeper), green_hub.spawn(ping), green_hub.spawn(pong)]
    assert green_hub.joinall(tasks, timeout=60)
    assert state["woke_at_round"] is not None
    assert state["woke_at_round"] < ROUNDS_LIMIT, (
        "the 10 ms timer fired only after %d rounds of ping-pong" % state["woke_at_round"]
    )


class _Alarm(Exception):
    pass


def _raise_alarm(signum, frame):
    raise _Alarm()


@pytest.fixture
def alarm_in(request):
    """alarm_in(seconds): SIGALRM then, its handler raising _Alarm."""
    previous = signal.signal(signal.SIGALRM, _raise_alarm)
    request.addfinalizer(
        lambda: (signal.setitimer(signal.ITIMER_REAL, 0), signal.signal(signal.SIGALRM, previous))
    )
    return lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)


def test_signal_handler_interrupts_a_blocked_unary_call(echo_stub, echo_server, alarm_in, hub):
    """The main greenlet parked in a unary call (the only greenlet waiting):
    what a Python signal handler raises comes out of the call at once, the
    call is cancelled on the wire, and the channel goes on serving."""
    alarm_in(0.05)
    start = time.monotonic()
    with pytest.raises(_Alarm):
        echo_stub.Echo(testing_pb2.EchoRequest(message="interrupted", sleep_seconds=5), timeout=10)
    assert time.monotonic() - start < 2
    hub.wait_until(
        lambda: ("interrupted", "cancelled") in echo_server.servicer.outcomes,
        message="the server did not see the call cancelled",
    )
    assert echo_stub.Echo(testing_pb2.EchoRequest(message="after"), timeout=10).message == "after"


def test_signal_handler_interrupts_a_wait_while_greenlets_run(alarm_in):
    """The same while other greenlets keep the hub busy (the main greenlet
    waits on an Event): the exception still reaches the main greenlet."""
    stop = green_hub.Event()

    def busy():
        while not stop.is_set():
            green_hub.sleep(0.001)

    tasks = [green_hub.spawn(busy) for _ in range(3)]
    alarm_in(0.05)
    try:
        with pytest.raises(_Alarm):
            green_hub.Event().wait(5)
    finally:
        stop.set()
    assert green_hub.joinall(tasks, timeout=5)
