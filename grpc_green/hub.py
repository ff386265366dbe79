"""Cooperative primitives on grpc_green's hub (one per OS thread).

Greenlet servers and plain scripts use these to run many calls at once:
``spawn`` starts a function in its own greenlet, ``sleep`` and
``Event.wait`` park only the calling greenlet. No thread is ever started.

The hub is grpc_green's own libev loop, or gevent's hub inside gevent
applications (chosen automatically; see ``use`` and ``kind``). On gevent's
hub these primitives and gevent's own (``gevent.sleep``, ``gevent.spawn``,
queues, events) mix freely.

Across threads: ``Event.set()`` and ``Queue.put()`` may be called from any
thread (one with a hub of its own or none), and wake the waiting greenlets
on their own threads' hubs at once. ``get_hub()`` gives this thread's hub as
an object another thread can hold: ``Hub.spawn_threadsafe(fn, *args)`` runs
``fn`` in a greenlet on it. A hub whose thread has ended drops wake-ups
meant for it, and ``spawn_threadsafe`` to it raises RuntimeError.

Request iterators: as in grpcio, a streaming call's request iterator may
block on anything (``queue.Queue``, ``time.sleep``, a socket) without
stalling the hub: unless it is a list, tuple or the like, it is consumed in
a worker thread. ``cooperative(iterable)`` marks one that only ever waits on
the hub (these primitives, grpc_green calls, gevent's) to be consumed inline,
in a greenlet, as fast as a list.

Blocked hubs: ``start_monitor(max_blocking_time=0.1)`` (or
``GRPC_GREEN_MONITOR_THREAD=1`` and ``GRPC_GREEN_MAX_BLOCKING_TIME`` in the
environment) starts a thread that logs, to the ``grpc_green.hub`` logger, a
hub kept from its loop longer than that, with the stack holding it;
``stop_monitor()`` stops it. On gevent's hub, gevent's own monitor watches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from queue import Empty
from typing import Any, Generic, TypeVar

from grpc_green import _core, _monitor
from grpc_green._hubs import kind, use
from grpc_green._monitor import start_monitor, stop_monitor

__all__ = [
    "Cooperative",
    "Empty",
    "Event",
    "Hub",
    "Queue",
    "Task",
    "cooperative",
    "get_hub",
    "joinall",
    "kind",
    "sleep",
    "spawn",
    "start_monitor",
    "stop_monitor",
    "use",
]

Event = _core.Event
Hub = _core.Hub
get_hub = _core.get_hub
sleep = _core.sleep

_T = TypeVar("_T")


class Task(Generic[_T]):
    """A function running in its own greenlet on the hub."""

    __slots__ = ("_done", "_value", "_exc", "greenlet")

    def __init__(
        self, fn: Callable[..., _T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._done = _core.Event()
        self._value: _T | None = None
        self._exc: BaseException | None = None
        self.greenlet = _core.spawn_greenlet(self._run, fn, args, kwargs)

    def _run(self, fn: Callable[..., _T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            self._value = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001  (kept for get(); GreenletExit included)
            self._exc = exc
        finally:
            self._done.set()

    @property
    def dead(self) -> bool:
        return self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Waits for the task to end; True if it has."""
        return self._done.wait(timeout)

    def get(self, timeout: float | None = None) -> _T:
        """The task's return value, or raises what it raised."""
        if not self._done.wait(timeout):
            raise TimeoutError("task still running")
        if self._exc is not None:
            raise self._exc
        return self._value  # type: ignore[return-value]  # set: the task ended without raising

    def kill(self, exception: BaseException | type[BaseException] | None = None) -> None:
        """Throws ``exception`` (GreenletExit by default) into the task."""
        if not self.dead:
            import greenlet

            _core.kill(self.greenlet, exception or greenlet.GreenletExit())


def spawn(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> Task[_T]:
    """Runs ``fn(*args, **kwargs)`` in a new greenlet; returns its Task."""
    return Task(fn, args, kwargs)


def joinall(tasks: Iterable[Task[Any]], timeout: float | None = None) -> bool:
    """Waits for every task; True if all ended within ``timeout``."""
    deadline = None if timeout is None else _core.monotonic() + timeout
    for t in tasks:
        left = None if deadline is None else max(0.0, deadline - _core.monotonic())
        if not t.join(left):
            return False
    return True


class Queue(Generic[_T]):
    """A FIFO queue whose ``get()`` parks the calling greenlet on its thread's
    hub, never the OS thread, and whose ``put()`` may be called from any
    thread: a getter parked on another thread's hub is woken at once.

    The API is ``queue.Queue``'s for an unbounded queue: ``put()`` never
    blocks (``block`` and ``timeout`` are accepted and ignored), ``get()``
    and ``get_nowait()`` raise ``queue.Empty``. Getters are woken one per
    item, first come first served.
    """

    # Pure Python on hub.Event: one Event per parked get(), set by the put()
    # that hands it an item. deque's append/popleft/remove are atomic under
    # the GIL, and each step below is ordered so that a put() racing a get()
    # from another thread is never missed (see _park).
    __slots__ = ("_items", "_getters")

    def __init__(self) -> None:
        self._items: deque[_T] = deque()
        self._getters: deque[_core.Event] = deque()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return False

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        """Appends ``item`` and wakes one parked getter (from any thread)."""
        self._items.append(item)
        if self._getters:
            self._wake_one()

    def put_nowait(self, item: _T) -> None:
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        """The oldest item; parks the calling greenlet until there is one (at
        most ``timeout`` seconds, then raises ``queue.Empty``)."""
        try:
            return self._items.popleft()
        except IndexError:
            pass
        if not block:
            raise Empty
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return self._park(timeout)

    def get_nowait(self) -> _T:
        return self.get(False)

    def _park(self, timeout: float | None) -> _T:
        items = self._items
        event = _core.Event()
        deadline = None if timeout is None else _core.monotonic() + timeout
        try:
            while True:
                # Registered before looking: a put() either comes before the
                # look (its item is seen) or finds this getter (and sets it).
                event.clear()
                self._getters.append(event)
                if not items:
                    left = None if deadline is None else deadline - _core.monotonic()
                    if left is not None and left <= 0:
                        raise Empty
                    event.wait(left)
                try:
                    return items.popleft()
                except IndexError:  # another getter was first: park again
                    pass
                if deadline is not None and _core.monotonic() >= deadline:
                    raise Empty
                self._unregister(event)
        finally:
            # A put() that chose this getter while it was leaving (with
            # another item, by timeout, or killed) meant to wake someone:
            # pass it on.
            if self._unregister(event) and items:
                self._wake_one()

    def _unregister(self, event: _core.Event) -> bool:
        """Removes ``event`` from the getters; True if a put() had taken it."""
        try:
            self._getters.remove(event)
        except ValueError:
            return True
        return False

    def _wake_one(self) -> None:
        try:
            event = self._getters.popleft()
        except IndexError:  # another thread's put() woke the last one
            return
        event.set()


class Cooperative(Generic[_T]):
    """An iterable marked by ``cooperative()``; iterating it iterates the
    iterable it wraps."""

    __slots__ = ("iterable",)

    def __init__(self, iterable: Iterable[_T]) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator[_T]:
        return iter(self.iterable)

    def __repr__(self) -> str:
        return f"cooperative({self.iterable!r})"


def cooperative(iterable: Iterable[_T]) -> Cooperative[_T]:
    """Marks ``iterable`` as a request iterator that blocks only cooperatively.

    A streaming call consumes its request iterator the way grpcio does, so
    that it may block on anything: a generator or other custom iterator is
    run in a worker thread, which hands the messages to the call's hub.
    Wrapped in ``cooperative()``, it is consumed inline instead, in a
    greenlet on the caller's hub, with no thread and no hand-over: use it
    for iterators whose waits are all on this hub (``Event``, ``Queue``,
    ``sleep``, grpc_green calls made on this thread, gevent's primitives on
    gevent's hub)::

        responses = stub.Chat(hub.cooperative(requests_from(mailbox)))

    Such an iterator that blocks the thread instead (``time.sleep``, a
    ``queue.Queue``, a socket) stalls every call on the hub until it returns.
    Lists, tuples and other iterables that cannot block, and the message
    iterators of grpc_green's own calls, are consumed inline anyway; and
    everything is, on gevent's hub once gevent has patched ``threading``.
    """
    return Cooperative(iterable)


_monitor.start_from_environment()
