"""Wake-ups across threads: Event.set(), Queue.put() and Hub.spawn_threadsafe()
from a thread that is not the waiter's wake the waiter's hub at once (through
the hub's inbox and its loop's async watcher), on the native hub and on
gevent's (GRPC_GREEN_HUB picks the hub of every thread here).

Timing bounds are generous (a busy 2-core machine): a wake-up that is not
delivered shows up as the full timeout of the wait, several times the bound.
"""

import gc
import queue
import threading
import time

import pytest
from test_leaks import check_no_growth

from grpc_green import _core, hub

pytestmark = pytest.mark.green_only

SET_AT = 0.2
WAIT = 3.0
BOUND = 1.5  # far below WAIT: the wait ended because of the set()


def _later(delay, fn, *args):
    """fn(*args) in a plain thread (no hub of its own) after `delay` seconds."""

    def run():
        time.sleep(delay)
        fn(*args)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _in_thread(fn, timeout=30):
    """fn() in a thread of its own (which gets its own hub if fn needs one)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    # Joined cooperatively, so this thread's hub keeps running meanwhile.
    deadline = time.monotonic() + timeout
    while t.is_alive() and time.monotonic() < deadline:
        hub.sleep(0.01)
    assert not t.is_alive(), "thread did not finish"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ------------------------------------------------------------------ Event


def test_event_set_from_another_thread_wakes_the_main_greenlet():
    event = hub.Event()
    started = time.monotonic()
    setter = _later(SET_AT, event.set)
    assert event.wait(WAIT) is True
    elapsed = time.monotonic() - started
    setter.join()
    assert elapsed < BOUND, "woken after %.2fs, set at %.2fs" % (elapsed, SET_AT)


def test_event_set_from_another_thread_wakes_a_spawned_greenlet():
    # Parked in a greenlet of its own: the hub greenlet (not the main one)
    # is polling when the set() comes.
    event = hub.Event()
    started = time.monotonic()
    setter = _later(SET_AT, event.set)
    task = hub.spawn(event.wait, WAIT)
    assert task.get(WAIT + 5) is True
    elapsed = time.monotonic() - started
    setter.join()
    assert elapsed < BOUND, "woken after %.2fs, set at %.2fs" % (elapsed, SET_AT)


def test_event_set_from_another_threads_hub_wakes_waiters_on_two_hubs():
    # One set() from a thread running a hub of its own wakes a greenlet here
    # and one in a third thread, each on its own hub.
    event = hub.Event()
    results = {}

    def other_waiter():
        started = time.monotonic()
        results["other"] = (event.wait(WAIT), time.monotonic() - started)

    other = threading.Thread(target=other_waiter, daemon=True)
    other.start()

    def setter():
        hub.sleep(SET_AT)  # this thread's own hub
        event.set()

    setter_thread = threading.Thread(target=setter, daemon=True)
    started = time.monotonic()
    setter_thread.start()
    assert event.wait(WAIT) is True
    elapsed = time.monotonic() - started
    assert elapsed < BOUND
    deadline = time.monotonic() + 10
    while other.is_alive() and time.monotonic() < deadline:
        hub.sleep(0.01)
    woken, other_elapsed = results["other"]
    assert woken is True
    assert other_elapsed < BOUND


def test_waiting_for_another_thread_is_not_a_deadlock():
    # Nothing of this hub's own can wake it (no socket, no timer): only the
    # other thread's set(). The hub must wait for it, not report a deadlock.
    event = hub.Event()
    setter = _later(SET_AT, event.set)
    assert event.wait() is True
    setter.join()


# ------------------------------------------------------------------ Queue


def test_queue_api():
    q = hub.Queue()
    assert q.empty() and q.qsize() == 0 and not q.full()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - started >= 0.04
    with pytest.raises(queue.Empty):
        q.get(timeout=0)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    for i in range(3):
        q.put(i)
    q.put_nowait(3)
    assert q.qsize() == 4 and not q.empty()
    assert [q.get(), q.get_nowait(), q.get(timeout=1), q.get(False)] == [0, 1, 2, 3]
    assert hub.Empty is queue.Empty


def test_queue_get_parks_only_the_greenlet():
    q = hub.Queue()
    ticks = []

    def ticker():
        for i in range(5):
            ticks.append(i)
            hub.sleep(0.01)
        q.put("done")

    hub.spawn(ticker)
    assert q.get(timeout=WAIT) == "done"
    assert ticks == [0, 1, 2, 3, 4]


def test_queue_getters_are_woken_one_per_item_in_order():
    q = hub.Queue()
    got = []
    tasks = [hub.spawn(lambda i=i: got.append((i, q.get(timeout=WAIT)))) for i in range(3)]
    hub.sleep(0)  # all three parked
    for item in "abc":
        q.put(item)
    assert hub.joinall(tasks, timeout=WAIT)
    assert got == [(0, "a"), (1, "b"), (2, "c")]


def test_queue_put_from_another_thread_wakes_the_getter():
    q = hub.Queue()
    started = time.monotonic()
    putter = _later(SET_AT, q.put, "x")
    assert q.get(timeout=WAIT) == "x"
    elapsed = time.monotonic() - started
    putter.join()
    assert elapsed < BOUND, "woken after %.2fs, put at %.2fs" % (elapsed, SET_AT)


def test_queue_eight_threads_put_1000_items_each():
    threads, per_thread, consumers = 8, 1000, 4
    q = hub.Queue()
    got = []
    hubs_in_producers = []

    def consume():
        while True:
            item = q.get(timeout=30)
            if item is None:
                return
            got.append(item)

    tasks = [hub.spawn(consume) for _ in range(consumers)]
    start = threading.Barrier(threads)

    def produce(t):
        start.wait()
        for i in range(per_thread):
            q.put((t, i))
            if i % 100 == 0:
                time.sleep(0.001)  # interleave with the other producers
        hubs_in_producers.append(_core.hub_kind())

    producers = [threading.Thread(target=produce, args=(t,), daemon=True) for t in range(threads)]
    started = time.monotonic()
    for p in producers:
        p.start()
    deadline = started + 60
    while any(p.is_alive() for p in producers) and time.monotonic() < deadline:
        hub.sleep(0.01)
    for _ in range(consumers):
        q.put(None)
    assert hub.joinall(tasks, timeout=30)
    assert len(got) == threads * per_thread, "lost %d" % (threads * per_thread - len(got))
    assert sorted(got) == [(t, i) for t in range(threads) for i in range(per_thread)]
    for t in range(threads):  # each producer's items in its order
        assert [i for (tt, i) in got if tt == t] == list(range(per_thread))
    assert q.empty()
    # put() needs no hub in the putting thread.
    assert hubs_in_producers == [None] * threads


def test_queue_across_two_hubs():
    # A thread running its own hub consumes what this one produces, and
    # answers on a second queue: both directions cross.
    requests, replies = hub.Queue(), hub.Queue()

    def worker():
        while True:
            item = requests.get(timeout=30)
            if item is None:
                return hub.kind()
            replies.put(item * 2)

    thread_box = {}
    t = threading.Thread(target=lambda: thread_box.update(kind=worker()), daemon=True)
    t.start()
    started = time.monotonic()
    for i in range(200):
        requests.put(i)
        assert replies.get(timeout=WAIT) == 2 * i
    elapsed = time.monotonic() - started
    requests.put(None)
    t.join(10)
    assert thread_box["kind"] == hub.kind()
    assert elapsed < 10, "200 round trips took %.2fs" % elapsed


# -------------------------------------------------------- spawn_threadsafe


def test_spawn_threadsafe_runs_on_the_hubs_thread_at_once():
    target = hub.get_hub()
    assert target.kind == hub.kind()
    here = threading.get_ident()
    done = hub.Event()
    ran = {}

    def callback(value):
        ran["value"] = value
        ran["thread"] = threading.get_ident()
        hub.sleep(0.01)  # a greenlet of its own: it may park
        done.set()

    started = time.monotonic()
    poster = _later(SET_AT, target.spawn_threadsafe, callback, 42)
    assert done.wait(WAIT) is True
    elapsed = time.monotonic() - started
    poster.join()
    assert ran == {"value": 42, "thread": here}
    assert elapsed < BOUND, "ran after %.2fs, posted at %.2fs" % (elapsed, SET_AT)


def test_spawn_threadsafe_from_the_hubs_own_thread():
    done = hub.Event()
    hub.get_hub().spawn_threadsafe(done.set)
    assert done.wait(WAIT)


def test_spawn_threadsafe_many_from_many_threads():
    target = hub.get_hub()
    count = [0]
    total = 8 * 500
    done = hub.Event()

    def bump():
        count[0] += 1
        if count[0] == total:
            done.set()

    def post():
        for _ in range(500):
            target.spawn_threadsafe(bump)

    posters = [threading.Thread(target=post, daemon=True) for _ in range(8)]
    for p in posters:
        p.start()
    assert done.wait(30) is True
    for p in posters:
        p.join(10)
    hub.sleep(0.05)
    assert count[0] == total


def test_spawn_threadsafe_needs_a_callable():
    with pytest.raises(TypeError):
        hub.get_hub().spawn_threadsafe(42)
    with pytest.raises(TypeError):
        hub.get_hub().spawn_threadsafe()


# ------------------------------------------------------------ ended hubs


def test_wakeups_to_an_ended_threads_hub():
    # A thread parks a greenlet on an Event and a Queue, then ends: its hub
    # never runs again. Waking those waiters from here is dropped, quietly;
    # spawn_threadsafe() to that hub raises.
    event = hub.Event()
    q = hub.Queue()

    def short_lived():
        hub.spawn(event.wait)  # left parked when the thread ends
        hub.spawn(q.get)
        hub.sleep(0.01)
        return hub.get_hub()

    ended = _in_thread(short_lived)
    gc.collect()
    event.set()  # dropped: nothing runs on that hub any more
    q.put("kept")  # the parked getter is gone with its hub: the item stays
    with pytest.raises(RuntimeError, match="thread has ended"):
        ended.spawn_threadsafe(print, "never")
    assert q.get(timeout=1) == "kept"
    assert event.wait(0) is True
    # This thread's hub is unaffected.
    done = hub.Event()
    hub.get_hub().spawn_threadsafe(done.set)
    assert done.wait(WAIT)


def test_wakeup_racing_a_thread_end():
    # set() and spawn_threadsafe() while the hub's thread is ending: each is
    # delivered or dropped (or raises RuntimeError), never a crash.
    for _ in range(20):
        event = hub.Event()
        box = {}

        def run(event=event, box=box):
            box["hub"] = hub.get_hub()
            hub.spawn(event.wait)
            hub.sleep(0.001)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        while "hub" not in box:
            time.sleep(0.0005)
        for _ in range(50):
            event.set()
            try:
                box["hub"].spawn_threadsafe(len, ())
            except RuntimeError:
                pass
        t.join(10)
        assert not t.is_alive()


# ------------------------------------------------------------- no growth


def test_many_cross_thread_wakeups_do_not_grow_memory():
    # A thread with a hub of its own ping-pongs with this one over two
    # Events, a Queue and spawn_threadsafe(); each round trip wakes each hub
    # from the other thread.
    here = hub.get_hub()

    def run(n):
        ping, pong = hub.Event(), hub.Event()
        q = hub.Queue()
        got = hub.Event()

        def partner():
            for _ in range(n):
                assert ping.wait(WAIT)
                ping.clear()
                q.put(object())
                here.spawn_threadsafe(got.set)
                pong.set()

        t = threading.Thread(target=partner, daemon=True)
        t.start()
        for _ in range(n):
            ping.set()
            assert pong.wait(WAIT)
            pong.clear()
            q.get(timeout=WAIT)
            assert got.wait(WAIT)
            got.clear()
        t.join(10)
        assert not t.is_alive()

    check_no_growth(run, warmup=300, count=2000)
