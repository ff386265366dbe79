"""Handlers that block, run in an executor thread while their call stays on
the server's hub.

A grpc_green server runs each handler in a greenlet of its hub: the fast
path, and right for code that waits only on grpc_green or gevent. A handler
that blocks its OS thread (``time.sleep``, a blocking database driver, a
``threading.Condition``) would stop the whole hub, so the server can be
told to run such handlers in its executor instead (``Placement`` below has
the rule). There the handler sees the call through a ``ThreadCall``: each
step that needs the engine (reading a request, writing a response, the
status) is handed to the hub through its inbox (``Hub.spawn_threadsafe``)
and runs in a greenlet there, while the executor thread waits on a lock,
a real OS wait. What only reads the call under the GIL (``is_active``,
``time_remaining``, metadata, ``add_callback``) is done in the thread.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from concurrent import futures
from typing import Any, Final, TypeVar

from grpc_green import _api, _core
from grpc_green._typing import MetadataType, NullaryCallbackType

__all__ = ["blocking"]

_MARK: Final = "_grpc_green_blocking"
_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


def blocking(behavior: _F) -> _F:
    """Marks a handler as blocking: a grpc_green server runs it in its
    executor thread pool, never in a greenlet of its hub.

    Use it on a servicer's method (``@grpc_green.blocking`` above the
    ``def``), on a function given to a ``*_rpc_method_handler``, or on a
    bound method (its function is marked, so every instance's is). The
    function is returned unchanged; grpcio's server, which runs every
    handler in its thread pool, has nothing to read in the mark.
    """
    target = getattr(behavior, "__func__", behavior)
    try:
        setattr(target, _MARK, True)
    except (AttributeError, TypeError):
        raise TypeError(
            "grpc_green.blocking() marks a function or a method, not %r" % (behavior,)
        ) from None
    return behavior


def behavior_of(handler: _api.RpcMethodHandler) -> Callable[..., Any] | None:
    """The one behavior an RpcMethodHandler carries."""
    if handler.request_streaming:
        return handler.stream_stream if handler.response_streaming else handler.stream_unary
    return handler.unary_stream if handler.response_streaming else handler.unary_unary


SERVER_POOL: Final = object()
"""Placement.pool_for's answer for "the server's executor"."""


class Placement:
    """Where a server runs each handler: in a greenlet of its hub, or in an
    executor. The first rule that applies:

    1. grpcio's ``experimental_non_blocking`` response-streaming behaviors
       (they return at once): the hub.
    2. A behavior with grpcio's ``experimental_thread_pool`` attribute set
       to an executor: that executor.
    3. A behavior marked with ``grpc_green.blocking``, every handler when
       ``blocking_handlers`` is True, or one whose service or method is
       named in ``blocking_handlers``: the server's executor.
    4. Otherwise: the hub.
    """

    __slots__ = ("everything", "services", "methods")

    def __init__(self, blocking_handlers: bool | str | Collection[str]) -> None:
        self.everything = False
        self.services: frozenset[str] = frozenset()
        self.methods: frozenset[str] = frozenset()
        if isinstance(blocking_handlers, bool):
            self.everything = blocking_handlers
            return
        names = (blocking_handlers,) if isinstance(blocking_handlers, str) else blocking_handlers
        services, methods = set(), set()
        for name in names:
            if not isinstance(name, str) or not name.strip("/"):
                raise TypeError(
                    "blocking_handlers takes True, False or service and method names "
                    "('package.Service' or '/package.Service/Method'), not %r" % (name,)
                )
            name = name.strip("/")
            if "/" in name:
                methods.add("/" + name)
            else:
                services.add(name)
        self.services = frozenset(services)
        self.methods = frozenset(methods)

    def named(self, method: str) -> bool:
        if self.everything or method in self.methods:
            return True
        if not self.services:
            return False
        service = method[1:].partition("/")[0]
        return service in self.services

    def pool_for(self, method: str, handler: _api.RpcMethodHandler) -> object | None:
        """None (the hub), SERVER_POOL or the behavior's own executor."""
        behavior = behavior_of(handler)
        if handler.response_streaming and getattr(behavior, "experimental_non_blocking", False):
            return None
        pool = getattr(behavior, "experimental_thread_pool", None)
        if isinstance(pool, futures.Executor):
            return pool
        if getattr(behavior, _MARK, False) or self.named(method):
            return SERVER_POOL
        return None


def default_executor() -> futures.ThreadPoolExecutor:
    """The executor of a server given none that has blocking handlers:
    ``concurrent.futures.ThreadPoolExecutor``'s default size,
    min(32, os.cpu_count() + 4) threads, started as calls need them."""
    return futures.ThreadPoolExecutor(thread_name_prefix="grpc_green-handler")


# ---------------------------------------------------------------- originals

_allocate_lock: Callable[[], Any] | None = None


def original(module: str, name: str) -> Any:
    """``module.name`` as it was before gevent's monkey patching (the OS
    primitive: the monitor and executor threads wait on real locks)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original(module, name)
    return getattr(__import__(module), name)


def call_on_hub(hub: _core.Hub, fn: Callable[..., _T], *args: Any) -> _T:
    """fn(*args) in a greenlet of ``hub`` (another thread's); its result or
    exception here, where the caller waits with an OS wait."""
    done: futures.Future[_T] = futures.Future()

    def run() -> None:
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001  (raised in the waiting thread)
            done.set_exception(exc)

    hub.spawn_threadsafe(run)
    return done.result()


def _new_lock() -> Any:
    global _allocate_lock
    if _allocate_lock is None:
        _allocate_lock = original("_thread", "allocate_lock")
    return _allocate_lock()


# ------------------------------------------------------- the call, threaded

# How often a thread waiting for the hub checks that it still runs (a hub
# whose thread ended drops what its inbox held).
_RECHECK: Final = 1.0


class _Reply:
    """One step run on the hub for a thread waiting on ``lock``."""

    __slots__ = ("lock", "value", "error", "killed")

    def __init__(self) -> None:
        self.lock = _new_lock()
        self.lock.acquire()
        self.value: Any = None
        self.error: Exception | None = None
        self.killed = False

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        # On the hub, in a greenlet of its pool.
        try:
            self.value = fn(*args)
        except Exception as exc:  # noqa: BLE001  (raised again in the waiting thread)
            self.error = exc
        except BaseException:  # the greenlet killed: the hub's thread is ending
            self.killed = True
            raise
        finally:
            self.lock.release()


def _release(call: object) -> None:
    """Run on the hub for ThreadCall.__del__: the call's last reference
    goes with its arguments, on the hub's thread."""


class ThreadCall:
    """A ``_core.ServerCall`` as a handler in an executor thread uses it.

    Made on the hub. Steps that need the engine run there (``_on_hub``);
    once the call has ended, or its hub has, they return at once what they
    return for an ended call (None, False), so a thread never waits on a
    hub that will not answer.
    """

    __slots__ = ("_call", "_hub", "_request", "method")

    def __init__(self, call: _core.ServerCall, hub: _core.Hub, request: bytes | None) -> None:
        self._call = call
        self._hub = hub
        self._request = request  # a unary request, read on the hub before
        self.method = call.method

    def _on_hub(self, ended: Any, fn: Callable[..., Any], *args: Any) -> Any:
        hub = self._hub
        if hub.is_current:  # an executor that runs in the hub's own thread
            return fn(*args)
        if not self._call.is_active():
            return ended
        reply = _Reply()
        try:
            hub.spawn_threadsafe(reply.run, fn, args)
        except RuntimeError:  # the hub's thread has ended
            return ended
        while not reply.lock.acquire(True, _RECHECK):
            if hub.ended:
                return ended
        error = reply.error
        if error is not None:
            # Without its frames on the hub, which hold the call: the call
            # must not be released in this thread (see __del__).
            raise error.with_traceback(None)
        return ended if reply.killed else reply.value

    def __del__(self) -> None:
        # The engine's call goes back to its hub, to be released there: the
        # last release of a call frees it, which only its hub's thread may
        # do. (On the hub's thread, or once the hub has ended, here.)
        hub = self._hub
        try:
            if not hub.is_current and not hub.ended:
                hub.spawn_threadsafe(_release, self._call)
        except Exception:  # noqa: BLE001  (the hub ended meanwhile; nothing runs there again)
            pass

    # the engine's, on the hub
    def read_unary(self) -> bytes | None:
        request, self._request = self._request, None
        return request

    def read(self) -> bytes | None:
        return self._on_hub(None, self._call.read)

    def write(self, data: bytes) -> bool:
        return self._on_hub(False, self._call.write, data)

    def send_initial_metadata(self, metadata: MetadataType | None) -> bool:
        return self._on_hub(False, self._call.send_initial_metadata, metadata)

    def respond(
        self,
        message: bytes | None,
        code: int,
        details: str | None,
        trailing_metadata: MetadataType | None,
    ) -> bool:
        return self._on_hub(False, self._call.respond, message, code, details, trailing_metadata)

    def cancel(self) -> None:
        self._on_hub(None, self._call.cancel)

    # reads of the call under the GIL: in this thread
    def is_active(self) -> bool:
        return self._call.is_active()

    def time_remaining(self) -> float | None:
        return self._call.time_remaining()

    def add_callback(self, callback: NullaryCallbackType) -> bool:
        # The callback runs on the hub, in a greenlet of its own.
        return self._call.add_callback(callback)

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._call.invocation_metadata()

    def peer(self) -> str:
        return self._call.peer()
