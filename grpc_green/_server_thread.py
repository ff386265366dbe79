"""A server on a hub thread of its own, for threaded (grpcio-style) code.

grpcio's server serves from threads of its own: after ``start()`` the thread
that made it may do anything, sleep or block on a lock or a pool included.
A grpc_green server serves from the hub of the thread that made it, which
runs only while that thread waits in grpc_green. `ThreadedServer` gives
threaded code grpcio's arrangement: the real server lives in a thread that
does nothing but run its hub, handlers run there as greenlets, and the
methods called from other threads are handed to that hub (its inbox) while
the caller waits with a plain OS wait.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from typing import Any, TypeVar

from grpc_green import _api, _core, hub
from grpc_green._threads import call_on_hub

_T = TypeVar("_T")


class _Hub:
    """The server thread: its hub, and the order to end."""

    def __init__(self) -> None:
        self.hub: _core.Hub | None = None
        self.ident: int | None = None
        self.exit = threading.Event()
        self.exit_wake: _core.Event | None = None

    def run(self, made: futures.Future[Any], factory: Callable[[], Any]) -> None:
        self.hub = hub.get_hub()
        self.ident = threading.get_ident()
        self.exit_wake = _core.Event()
        try:
            server = factory()
        except BaseException as exc:  # noqa: BLE001  (raised in the maker's thread)
            made.set_exception(exc)
            return
        made.set_result(server)
        del server
        # Parked here, the thread runs its hub: the server's sockets and
        # handlers. It ends once the server has terminated and nothing
        # refers to it, or the process exits (a daemon thread).
        try:
            while not self.exit.is_set():
                self.exit_wake.wait()
        finally:
            _RUNNING.pop(self, None)

    def end(self) -> None:
        self.exit.set()
        if self.exit_wake is not None and self.hub is not None:
            try:
                self.hub.spawn_threadsafe(self.exit_wake.set)
            except RuntimeError:
                pass  # the thread has ended already


# The servers' threads still running: at interpreter exit their servers stop
# and their threads end before the interpreter goes (a hub thread still
# polling then could not take the GIL back).
_RUNNING: dict[_Hub, tuple[Any, threading.Thread]] = {}
_AT_EXIT_REGISTERED = False


def _stop_all_at_exit() -> None:
    for thread_hub, (server_ref, thread) in list(_RUNNING.items()):
        server = server_ref()
        if server is not None:
            _drop(server, thread_hub)
        else:
            thread_hub.end()
        thread.join(5)


class ThreadedServer(_api.Server):
    """grpcio's Server, served from a thread of its own."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        global _AT_EXIT_REGISTERED
        if not _AT_EXIT_REGISTERED:
            # Run when the main thread has finished, before threads are
            # joined and before atexit (the hook concurrent.futures uses).
            threading._register_atexit(_stop_all_at_exit)  # type: ignore[attr-defined]
            _AT_EXIT_REGISTERED = True
        self._thread_hub = _Hub()
        made: futures.Future[Any] = futures.Future()
        self._thread = threading.Thread(
            target=self._thread_hub.run, args=(made, factory), name="grpc_green server", daemon=True
        )
        self._thread.start()
        self._server = made.result()
        self._terminated = threading.Event()
        _RUNNING[self._thread_hub] = (weakref.ref(self._server), self._thread)
        weakref.finalize(self, _drop, self._server, self._thread_hub)
        self._on_thread(self._watch_termination)

    def _on_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """fn(*args) on the server's thread; its result or exception here."""
        if threading.get_ident() == self._thread_hub.ident:
            return fn(*args)
        assert self._thread_hub.hub is not None
        return call_on_hub(self._thread_hub.hub, fn, *args)

    def _watch_termination(self) -> None:
        terminated = self._terminated

        def watch(server: Any) -> None:
            server.wait_for_termination()
            terminated.set()

        _core.spawn(watch, self._server)

    # configuration
    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[_api.GenericRpcHandler]
    ) -> None:
        self._on_thread(self._server.add_generic_rpc_handlers, generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, _api.RpcMethodHandler]
    ) -> None:
        self._on_thread(self._server.add_registered_method_handlers, service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._on_thread(self._server.add_insecure_port, address)

    def add_secure_port(self, address: str, server_credentials: _api.ServerCredentials) -> int:
        return self._on_thread(self._server.add_secure_port, address, server_credentials)

    # lifecycle
    def start(self) -> None:
        self._on_thread(self._server.start)

    def stop(self, grace: float | None) -> threading.Event:
        """Set once the stop has completed: a threading.Event, as grpcio's."""
        stopped = threading.Event()

        def stop() -> None:
            event = self._server.stop(grace)

            def wait() -> None:
                event.wait()
                stopped.set()

            _core.spawn(wait)

        self._on_thread(stop)
        return stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Waits (an OS wait) until the server stops; True if ``timeout``
        passed first."""
        return not self._terminated.wait(timeout)


def _drop(server: Any, thread_hub: _Hub) -> None:
    """The ThreadedServer is gone: its server stops, its thread ends."""

    def stop() -> None:
        server.stop(None)
        thread_hub.end()

    try:
        if thread_hub.hub is not None:
            thread_hub.hub.spawn_threadsafe(stop)
    except RuntimeError:
        pass  # the thread has ended already
