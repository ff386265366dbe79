"""The blocked-hub monitor: a thread that reports a hub held away from its
loop for longer than ``max_blocking_time`` (gevent's ``monitor_thread``).

A greenlet that blocks its OS thread (``time.sleep``, a blocking driver, a
long computation) holds the whole hub: every call of that thread waits. The
monitor makes that visible. It is off unless asked for, by
``grpc_green.hub.start_monitor()`` or by ``GRPC_GREEN_MONITOR_THREAD=1``
(``GRPC_GREEN_MAX_BLOCKING_TIME=<seconds>``, 0.1 by default) in the
environment at import.

Native hubs: each counts its steps (loop passes and greenlet switches) and
says whether it is in its poll; that costs the loop two stores per pass and
one per switch, on or off. A daemon thread (a real one, under gevent's
patching too) looks at every native hub of the process
``max_blocking_time / 4`` apart; a hub whose count has not moved for
``max_blocking_time`` while out of its poll is blocked, and one record goes
to the ``grpc_green.hub`` logger (WARNING): the thread, the greenlet the
hub last switched to and the stack the thread is running
(``sys._current_frames()``). One record per blocking episode.

gevent's hubs: gevent's own monitor does the watching (its
``monitor_thread`` and ``max_blocking_time`` settings, set here), and each
episode it reports (``gevent.events.EventLoopBlocked``) is logged the same
way, once. gevent also prints its report to the hub's ``exception_stream``
(stderr) unless ``gevent.config.print_blocking_reports`` is False. Its
monitor starts with a hub's loop, or at ``start_monitor()`` for the calling
thread's running hub.

A thread whose main greenlet works or sleeps outside grpc_green while its
hub has calls or sockets to serve counts as blocking it, as under gevent.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
import warnings
from typing import Any

from grpc_green import _core
from grpc_green._threads import original

_LOGGER = logging.getLogger("grpc_green.hub")
_DEFAULT_MAX_BLOCKING_TIME = 0.1


class _Monitor:
    """The monitor thread's state; one per process while monitoring."""

    def __init__(self, max_blocking_time: float) -> None:
        self.max_blocking_time = max_blocking_time
        self.interval = max(0.002, max_blocking_time / 4)
        self.running = True
        # thread id -> (the hub's step count, when first seen, reported)
        self._seen: dict[int, tuple[int, float, bool]] = {}
        # Looked up here, in the starting thread: the monitor's thread must
        # not import gevent.monkey while another thread is importing it.
        self._sleep = original("time", "sleep")

    def run(self) -> None:
        sleep = self._sleep
        while self.running:
            sleep(self.interval)
            if not self.running:
                break
            try:
                self.check()
            except Exception:  # interpreter shutdown, or a bug: never kill the process
                if sys is None or not self.running:
                    return
                _LOGGER.exception("grpc_green: the hub monitor failed")

    def check(self) -> int:
        """Looks at every native hub once; returns the number reported."""
        now = _core.monotonic()
        reported = 0
        seen: dict[int, tuple[int, float, bool]] = {}
        for thread_id, steps, polling, glet in _core._hub_states():
            previous = self._seen.get(thread_id)
            if polling or previous is None or previous[0] != steps:
                seen[thread_id] = (steps, now, False)
                continue
            _, since, done = previous
            if not done and now - since >= self.max_blocking_time:
                _report(thread_id, glet, now - since, self.max_blocking_time)
                done = True
                reported += 1
            seen[thread_id] = (steps, since, done)
        self._seen = seen
        return reported


def _thread_name(thread_id: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == thread_id:
            return thread.name
    return "thread %d" % thread_id


def _report(thread_id: int, glet: Any, blocked: float, max_blocking_time: float) -> None:
    frame = sys._current_frames().get(thread_id)
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "  (no frame)\n"
    _LOGGER.warning(
        "grpc_green: the hub of %s has not run its loop for %.3f s (max_blocking_time %.3f s); "
        "greenlet %r holds it, running:\n%s",
        _thread_name(thread_id),
        blocked,
        max_blocking_time,
        glet if glet is not None else "(the thread's main greenlet or the hub itself)",
        stack.rstrip("\n"),
        extra={"grpc_green_greenlet": glet, "grpc_green_thread_id": thread_id},
    )


# ------------------------------------------------------------ gevent's hubs


class _GeventBlocked:
    """Logs each episode gevent's monitor reports, once: gevent reports a
    block that lasts again every max_blocking_time. A report is of the same
    episode as the last one when it names the same greenlet and comes one
    period later, or finds the hub's thread in the same frame at the same
    line (a late monitor thread)."""

    def __init__(self) -> None:
        self._last: tuple[Any, float, Any] | None = None

    def __call__(self, event: Any) -> None:
        from gevent.events import EventLoopBlocked

        if not isinstance(event, EventLoopBlocked):
            return
        now = _core.monotonic()
        hub = getattr(event, "hub", None)
        frame = sys._current_frames().get(getattr(hub, "thread_ident", None))  # type: ignore[arg-type]
        where = None if frame is None else (id(frame), frame.f_code, frame.f_lineno)
        last, self._last = self._last, (event.greenlet, now, where)
        if last is not None and last[0] is event.greenlet:
            if now - last[1] < 1.5 * event.blocking_time or (
                where is not None and where == last[2]
            ):
                return  # the same episode, reported again
        _LOGGER.warning(
            "grpc_green: gevent's hub has not run its loop for more than %.3f s "
            "(gevent's monitor):\n%s",
            event.blocking_time,
            "\n".join(str(line) for line in event.info),
            extra={"grpc_green_greenlet": event.greenlet},
        )


_gevent_subscriber: _GeventBlocked | None = None
_gevent_previous: tuple[Any, Any] | None = None  # gevent's settings before ours
_gevent_started: list[Any] = []  # gevent hubs whose monitor start_monitor() started


def _gevent_monitor(max_blocking_time: float) -> None:
    global _gevent_subscriber, _gevent_previous
    import gevent
    from gevent import events

    from grpc_green._hubs import _gevent_hub_in_this_thread

    config: Any = gevent.config
    if _gevent_previous is None:
        _gevent_previous = (config.monitor_thread, config.max_blocking_time)
    config.max_blocking_time = max_blocking_time
    config.monitor_thread = True
    if _gevent_subscriber is None:
        _gevent_subscriber = _GeventBlocked()
        events.subscribers.append(_gevent_subscriber)
    hub = _gevent_hub_in_this_thread()
    if hub is not None and hub.periodic_monitoring_thread is None:
        with warnings.catch_warnings():
            # Said whenever psutil is missing: the memory is not ours to watch.
            warnings.filterwarnings("ignore", "Unable to monitor memory usage")
            if hub.start_periodic_monitoring_thread() is not None:
                _gevent_started.append(hub)


def gevent_hub_selected() -> None:
    """Called when a thread gets gevent's hub: its loop starts gevent's
    monitor when monitoring is on."""
    if _monitor is not None:
        _gevent_monitor(_monitor.max_blocking_time)


def _gevent_stop() -> None:
    global _gevent_subscriber, _gevent_previous
    if _gevent_subscriber is None:
        return
    import gevent
    from gevent import events

    from grpc_green._hubs import _gevent_hub_in_this_thread

    config: Any = gevent.config
    if _gevent_previous is not None:
        config.monitor_thread, config.max_blocking_time = _gevent_previous
        _gevent_previous = None
    try:
        events.subscribers.remove(_gevent_subscriber)
    except ValueError:
        pass
    _gevent_subscriber = None
    mine = _gevent_hub_in_this_thread()
    for hub in list(_gevent_started):
        if hub is mine and hub.periodic_monitoring_thread is not None:
            hub.periodic_monitoring_thread.kill()
            hub.periodic_monitoring_thread = None
            _gevent_started.remove(hub)


# --------------------------------------------------------------- public API

_monitor: _Monitor | None = None
_lock = threading.Lock()


def start_monitor(max_blocking_time: float = _DEFAULT_MAX_BLOCKING_TIME) -> None:
    """Starts the monitor of blocked hubs (see grpc_green.hub's docstring):
    a hub kept from its loop for more than ``max_blocking_time`` seconds is
    logged, with the stack that held it, to the ``grpc_green.hub`` logger.
    Called again, it changes the threshold."""
    global _monitor
    if not max_blocking_time > 0:
        raise ValueError("max_blocking_time must be a positive number of seconds")
    with _lock:
        if _monitor is not None:
            _monitor.max_blocking_time = max_blocking_time
            _monitor.interval = max(0.002, max_blocking_time / 4)
        else:
            _monitor = _Monitor(max_blocking_time)
            _core._set_monitored(True)
            original("_thread", "start_new_thread")(_monitor.run, ())
        if "gevent" in sys.modules:
            _gevent_monitor(max_blocking_time)


def stop_monitor() -> None:
    """Stops the monitor (its thread ends within one interval)."""
    global _monitor
    with _lock:
        if _monitor is not None:
            _monitor.running = False
            _monitor = None
            _core._set_monitored(False)
        if "gevent" in sys.modules:
            _gevent_stop()


def monitoring() -> float | None:
    """The monitor's ``max_blocking_time``, or None when it is off."""
    monitor = _monitor
    return None if monitor is None else monitor.max_blocking_time


def _after_fork_in_child() -> None:
    # The monitor's thread did not come along (nor did whoever held _lock).
    global _monitor, _lock
    _lock = threading.Lock()
    if _monitor is not None:
        max_blocking_time = _monitor.max_blocking_time
        _monitor = None
        start_monitor(max_blocking_time)


def start_from_environment() -> None:
    """``GRPC_GREEN_MONITOR_THREAD=1`` (and ``GRPC_GREEN_MAX_BLOCKING_TIME``)."""
    flag = os.environ.get("GRPC_GREEN_MONITOR_THREAD", "").strip().lower()
    if flag in ("", "0", "false", "no", "off"):
        return
    value = os.environ.get("GRPC_GREEN_MAX_BLOCKING_TIME", "").strip()
    try:
        max_blocking_time = float(value) if value else _DEFAULT_MAX_BLOCKING_TIME
    except ValueError:
        raise ImportError(
            "GRPC_GREEN_MAX_BLOCKING_TIME must be a number of seconds, not %r" % value
        ) from None
    start_monitor(max_blocking_time)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
