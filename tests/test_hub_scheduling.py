"""The hub's scheduling: greenlets that keep waking one another directly
(never waiting for IO or a timer) must not starve the sockets and timers
of every other greenlet."""
import grpc_green.hub as hub
import pytest

ROUNDS_LIMIT = 100_000


@pytest.fixture(autouse=True)
def _green_only(support):
    if not support.using_green:
        pytest.skip("grpc_green's hub")


def test_event_ping_pong_does_not_starve_timers():
    a, b = hub.Event(), hub.Event()
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
        hub.sleep(0.01)
        state["woke_at_round"] = state["rounds"]
        state["stop"] = True

    tasks = [hub.spawn(sleeper), hub.spawn(ping), hub.spawn(pong)]
    assert hub.joinall(tasks, timeout=60)
    assert state["woke_at_round"] is not None
    assert state["woke_at_round"] < ROUNDS_LIMIT, (
        "the 10 ms timer fired only after %d rounds of ping-pong" % state["woke_at_round"])
