"""A client call's request iterator: consumed on the hub, or in a worker thread.

grpcio consumes every request iterator in a thread of its own, so code
written for it lets the iterator block on anything: ``queue.Queue.get()``
fed by the thread that reads the responses, ``time.sleep``, a microphone or
a file. On grpc_green's native hub (and on gevent's when gevent has not
patched ``threading``) a block like that inside a greenlet stalls the hub's
whole thread: every other call, this call's own responses, its deadline.
So each iterator goes one of two ways:

- **inline**, in a greenlet on the caller's hub, as fast as a loop:
  iterables that cannot block (``list``, ``tuple``, ``range``, ``dict``,
  sets, ``deque``, and their iterators), the message iterators of
  grpc_green's own calls (they park cooperatively, on this hub), iterables
  marked with ``hub.cooperative()``, and every iterator once gevent has
  patched ``threading`` (blocking is cooperative then).
- **threaded**, otherwise (generators, custom iterators): a worker thread
  from a pool pulls and serializes the messages and hands them to a sender
  greenlet on the call's hub through a deque and a ``hub.Event`` (set from
  the worker, it wakes the hub through its inbox). The worker runs at most
  ``_MAX_AHEAD_MESSAGES`` messages or ``_MAX_AHEAD_BYTES`` bytes ahead of
  what the sender has taken (HTTP/2 flow control holds the sender back), and
  it stops pulling once the call has ended: a ``next()`` under way then is
  left to finish, and what it returns is dropped.

Either way a failing iterator ends the call UNKNOWN "Exception iterating
requests!" and a failing serializer INTERNAL "Exception serializing
request!", as in grpcio.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

from grpc_green import _core
from grpc_green._common import (
    INTERNAL,
    NOT_SERIALIZED,
    SENT,
    UNKNOWN,
    MessageReader,
    send_messages,
)
from grpc_green.hub import Cooperative

# The records keep the client's logger name (grpcio's come from grpc._channel).
_LOGGER = logging.getLogger("grpc_green._channel")
_ITERATE_ERROR: Final = "Exception iterating requests!"
_SERIALIZE_ERROR: Final = "Exception serializing request!"

# How far a worker may run ahead of the sender (grpcio: not at all, it
# waits for each send before it pulls the next). Enough small messages that
# a fast iterator is handed over in batches, and few enough bytes that what
# a client pulls stays within a message or so of what HTTP/2 flow control
# lets out (tests/test_flow_control.py).
_MAX_AHEAD_MESSAGES: Final = 512
_MAX_AHEAD_BYTES: Final = 16 * 1024
# The sender wakes a worker waiting for room once no more than this is left.
_ROOM_AT: Final = _MAX_AHEAD_MESSAGES // 2

# Iterables, and iterators, whose next() returns at once: never a thread.
_NON_BLOCKING_EXAMPLES: tuple[object, ...] = (
    *([], iter([]), reversed([])),
    *((), iter(())),
    *(range(0), iter(range(0)), iter(range(1 << 64)), reversed(range(0))),
    *({}, iter({}), reversed({})),
    *({}.keys(), {}.values(), {}.items(), iter({}.values()), iter({}.items())),
    *(set(), frozenset(), iter(set())),
    *(collections.deque(), iter(collections.deque()), reversed(collections.deque())),
)
_NON_BLOCKING: Final = frozenset(type(x) for x in _NON_BLOCKING_EXAMPLES)


def _blocking_is_cooperative() -> bool:
    """True on gevent's hub once gevent has patched threading (and so
    queue.Queue, time.sleep and sockets are gevent's)."""
    monkey = sys.modules.get("gevent.monkey")
    return (
        monkey is not None
        and monkey.is_module_patched("threading")
        and _core.hub_kind() == "gevent"
    )


def consume(
    call: _core.Call,
    request_iterator: Iterable[Any],
    serializer: Callable[[Any], Any] | None,
) -> ThreadedRequests | None:
    """Starts feeding ``request_iterator`` into ``call`` (which is active).

    Returns the ThreadedRequests when a worker thread pulls the iterator
    (``stop()`` it when the call is cancelled), None when a greenlet does.
    """
    if type(request_iterator) is Cooperative:
        request_iterator = request_iterator.iterable
    elif not (
        type(request_iterator) in _NON_BLOCKING
        or isinstance(request_iterator, MessageReader)
        or _blocking_is_cooperative()
    ):
        feed = ThreadedRequests(call, request_iterator, serializer)
        return feed if feed.start() else None
    _core.spawn(_send_inline, call, request_iterator, serializer)
    return None


def _send_inline(
    call: _core.Call,
    request_iterator: Iterable[Any],
    serializer: Callable[[Any], Any] | None,
) -> None:
    """Feeds a request iterator into ``call``; runs in a greenlet of its own.

    ``call.write`` parks while the HTTP/2 send window is full and turns
    False once the call has ended, which stops the consumption.
    """
    try:
        outcome = send_messages(
            call, request_iterator, serializer, _LOGGER, _SERIALIZE_ERROR, False
        )
        if outcome == NOT_SERIALIZED:
            call.cancel(INTERNAL, _SERIALIZE_ERROR)
    except Exception:
        _LOGGER.exception(_ITERATE_ERROR)
        call.cancel(UNKNOWN, _ITERATE_ERROR)
        return
    if outcome == SENT:
        call.done_writing()


# What a worker ends with (ThreadedRequests._outcome).
_ENDED: Final = 1  # the iterator is exhausted
_FAILED: Final = 2  # it raised (logged)
_UNSERIALIZABLE: Final = 3  # the serializer raised (logged)


class ThreadedRequests:
    """A request iterator pulled in a worker thread and written by a sender
    greenlet on the call's hub.

    Shared between the two threads, each field written by one side only
    (the GIL orders them): the worker appends to ``_items``, sets
    ``_outcome`` once it is done, and sets ``_ready`` after either; the
    sender pops from ``_items`` and parks on ``_ready`` while there is
    nothing. A worker ahead by its bounds sets ``_room_wanted`` and waits on
    ``_room``, which the sender sets once it has taken enough. ``stop()``
    (the call ended, or was cancelled) releases both sides.
    """

    __slots__ = (
        "_call",
        "_iterable",
        "_serializer",
        "_items",
        "_ready",
        "_room",
        "_room_wanted",
        "_outcome",
        "_stopped",
    )

    def __init__(
        self,
        call: _core.Call,
        iterable: Iterable[Any],
        serializer: Callable[[Any], Any] | None,
    ) -> None:
        self._call = call
        self._iterable: Iterable[Any] | None = iterable
        self._serializer = serializer
        self._items: collections.deque[Any] = collections.deque()
        self._ready = _core.Event()
        self._room = threading.Event()
        self._room_wanted = False
        self._outcome = 0
        self._stopped = False

    def start(self) -> bool:
        """Starts the sender and the worker; False if the call has ended."""
        if not self._call.add_done_callback(self.stop):
            return False
        _core.spawn(self._send)
        _WORKERS.submit(self._pull)
        return True

    def stop(self) -> None:
        """No more messages are pulled, and none is written (any thread)."""
        self._stopped = True
        self._ready.set()
        self._room.set()

    # ------------------------------------------------- the hub's side

    def _send(self) -> None:
        call, items, ready = self._call, self._items, self._ready
        write, take = call.write, items.popleft
        try:
            while not self._stopped:
                if items:
                    message = take()
                    if self._room_wanted and len(items) <= _ROOM_AT:
                        self._room_wanted = False
                        self._room.set()  # the worker goes on while this writes
                    if not write(message):
                        return  # the call has ended
                    continue
                ready.clear()
                if items:
                    continue
                outcome = self._outcome
                if outcome and not items:  # (set after the worker's last append)
                    if outcome == _ENDED:
                        call.done_writing()
                    elif outcome == _FAILED:
                        call.cancel(UNKNOWN, _ITERATE_ERROR)
                    else:
                        call.cancel(INTERNAL, _SERIALIZE_ERROR)
                    return
                ready.wait()
        except Exception:  # write refused a message (not bytes, say)
            _LOGGER.exception(_ITERATE_ERROR)
            call.cancel(UNKNOWN, _ITERATE_ERROR)
        finally:
            self.stop()

    # ----------------------------------------------- the worker's side

    def _pull(self) -> None:
        iterable, self._iterable = self._iterable, None  # the worker's alone from here
        items, ready, serializer = self._items, self._ready, self._serializer
        sizes: collections.deque[int] = collections.deque()  # of the messages in items
        ahead = 0  # their bytes
        outcome = _ENDED
        try:
            iterator = iter(iterable)  # type: ignore[arg-type]
            while not self._stopped:
                while len(sizes) > len(items):  # taken by the sender since
                    ahead -= sizes.popleft()
                if len(items) >= _MAX_AHEAD_MESSAGES or ahead >= _MAX_AHEAD_BYTES:
                    self._wait_for_room()
                    continue
                try:
                    message = next(iterator)
                except StopIteration:
                    break
                if self._stopped:
                    return  # the call ended while next() ran: dropped
                if serializer is not None:
                    try:
                        message = serializer(message)
                    except Exception:
                        _LOGGER.exception(_SERIALIZE_ERROR)
                        outcome = _UNSERIALIZABLE
                        break
                try:
                    size = len(message)
                except TypeError:
                    size = 0  # not a buffer: call.write() refuses it
                sizes.append(size)
                ahead += size
                items.append(message)
                ready.set()
        except BaseException:  # grpcio: Exception; a thread's SystemExit too
            _LOGGER.exception(_ITERATE_ERROR)
            outcome = _FAILED
        if not self._stopped:
            self._outcome = outcome
            ready.set()

    def _wait_for_room(self) -> None:
        room = self._room
        room.clear()
        self._room_wanted = True
        # Looked at once the flag is up: while messages are left the sender
        # takes another and sees the flag; it may have taken the last one
        # just before.
        if self._items and not self._stopped:
            room.wait()
        self._room_wanted = False


_WORKER_THREAD = threading.local()


def in_worker() -> bool:
    """Is this thread one of the workers that run request iterators?"""
    return getattr(_WORKER_THREAD, "on", False)


class _WorkerPool:
    """Daemon threads that run request iterators, reused; as many as are
    needed at once (grpcio starts a thread per call). An idle worker waits
    ``_IDLE_SECONDS`` for more work, then ends; at most ``_MAX_IDLE`` wait."""

    _IDLE_SECONDS: Final = 30.0
    _MAX_IDLE: Final = 64

    def __init__(self) -> None:
        # Idle workers: each waits on its lock, released with its next job.
        self._idle: list[_Worker] = []

    def submit(self, fn: Callable[[], None]) -> None:
        try:
            worker = self._idle.pop()
        except IndexError:
            worker = _Worker(fn)
            threading.Thread(
                target=self._run, args=(worker,), name="grpc_green-requests", daemon=True
            ).start()
            return
        worker.job = fn
        worker.go.release()

    def _run(self, worker: _Worker) -> None:
        _WORKER_THREAD.on = True
        idle = self._idle
        while True:
            job, worker.job = worker.job, None
            if job is not None:
                try:
                    job()
                except BaseException:  # a job handles its own errors: logged, the worker goes on
                    _LOGGER.exception("grpc_green: a request worker failed")
                del job
            if len(idle) >= self._MAX_IDLE:
                return
            idle.append(worker)
            if not worker.go.acquire(timeout=self._IDLE_SECONDS):
                try:
                    idle.remove(worker)
                    return
                except ValueError:  # submit() took it meanwhile: its job comes
                    worker.go.acquire()

    def _after_fork_in_child(self) -> None:
        self._idle = []  # their threads are the parent's


class _Worker:
    __slots__ = ("job", "go")

    def __init__(self, job: Callable[[], None]) -> None:
        self.job: Callable[[], None] | None = job
        self.go = threading.Lock()
        self.go.acquire()


_WORKERS: Final = _WorkerPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WORKERS._after_fork_in_child)
