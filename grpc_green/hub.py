"""Cooperative primitives on grpc_green's hub (one per OS thread).

Greenlet servers and plain scripts use these to run many calls at once:
``spawn`` starts a function in its own greenlet, ``sleep`` and
``Event.wait`` park only the calling greenlet. No thread is ever started.

The hub is grpc_green's own libev loop, or gevent's hub inside gevent
applications (chosen automatically; see ``use`` and ``kind``). On gevent's
hub these primitives and gevent's own (``gevent.sleep``, ``gevent.spawn``,
queues, events) mix freely.

Across threads: ``Event.set()`` may be called from any
thread (one with a hub of its own or none), and wakes the waiting greenlets
on their own threads' hubs at once. ``get_hub()`` gives this thread's hub as
an object another thread can hold: ``Hub.spawn_threadsafe(fn, *args)`` runs
``fn`` in a greenlet on it. A hub whose thread has ended drops wake-ups
meant for it, and ``spawn_threadsafe`` to it raises RuntimeError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from grpc_green import _core
from grpc_green._hubs import kind, use

__all__ = [
    "Event",
    "Hub",
    "Task",
    "get_hub",
    "joinall",
    "kind",
    "sleep",
    "spawn",
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
