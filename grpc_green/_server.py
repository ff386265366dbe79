"""Server side: grpcio's Server and ServicerContext over _core.Server.

Each RPC runs in a pooled greenlet: ``_Server._dispatch`` finds the
handler, reads and deserializes the request, runs the servicer method with
a ``_Context`` and sends the response and status in one step. A handler the
server was told is blocking runs the same steps in an executor thread, on a
``_threads.ThreadCall`` that hands each step on the call to the hub.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent import futures
from typing import Any, NoReturn, Protocol

from grpc_green import _api, _core, _hubs, _threads, _utilities
from grpc_green._api import StatusCode
from grpc_green._common import (
    FAILED,
    INTERNAL,
    NOT_SERIALIZED,
    OK,
    SENT,
    SERVER_OPTIONS,
    STATUS_CODE_TO_INT,
    UNAVAILABLE,
    UNIMPLEMENTED,
    UNKNOWN,
    MessageReader,
    core_options,
    send_messages,
    transform,
)
from grpc_green._typing import (
    ChannelArgumentType,
    DeserializingFunction,
    MetadataType,
    NullaryCallbackType,
    SerializingFunction,
)
from grpc_green.hub import Queue

_LOGGER = logging.getLogger(__name__)
_DESERIALIZE_ERROR = "Exception deserializing request!"
_SERIALIZE_ERROR = "Failed to serialize response!"


class _ServerCall(Protocol):
    """What a handler's steps use of the call: a ``_core.ServerCall`` on
    the hub, a ``_threads.ThreadCall`` in an executor thread."""

    @property
    def method(self) -> str: ...
    def read_unary(self) -> bytes | None: ...
    def read(self) -> bytes | None: ...
    def write(self, data: bytes, /) -> bool: ...
    def send_initial_metadata(self, metadata: MetadataType | None, /) -> bool: ...
    def respond(
        self,
        message: bytes | None,
        code: int,
        details: str | None,
        trailing_metadata: MetadataType | None,
        /,
    ) -> bool: ...
    def is_active(self) -> bool: ...
    def cancel(self) -> None: ...
    def add_callback(self, callback: NullaryCallbackType, /) -> bool: ...
    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]: ...
    def peer(self) -> str: ...
    def time_remaining(self) -> float | None: ...


class _HandlerCallDetails(
    collections.namedtuple("_HandlerCallDetails", ("method", "invocation_metadata")),
    _api.HandlerCallDetails,
):
    pass


class _Abort(Exception):
    """Raised by ``context.abort()``; ends the handler."""


class _Context(_api.ServicerContext):
    __slots__ = ("_call", "_code", "_details", "_trailing", "_aborted")

    def __init__(self, call: _ServerCall) -> None:
        self._call = call
        self._code: _api.StatusCode | None = None
        self._details: bytes | None = None
        self._trailing: MetadataType | None = None
        self._aborted = False

    # RpcContext
    def is_active(self) -> bool:
        return self._call.is_active()

    def time_remaining(self) -> float | None:
        return self._call.time_remaining()

    def cancel(self) -> None:
        self._call.cancel()

    def add_callback(self, callback: NullaryCallbackType) -> bool:
        return self._call.add_callback(callback)

    # ServicerContext
    def invocation_metadata(self) -> MetadataType:
        return self._call.invocation_metadata()

    def peer(self) -> str:
        return self._call.peer()

    def peer_identities(self) -> Sequence[bytes] | None:
        return None

    def peer_identity_key(self) -> str | None:
        return None

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        return {}

    def set_compression(self, compression: _api.Compression) -> None:
        pass  # grpc_green sends uncompressed messages

    def send_initial_metadata(self, initial_metadata: MetadataType) -> None:
        if not self._call.send_initial_metadata(initial_metadata):
            if self._call.is_active():
                raise ValueError("Initial metadata no longer allowed!")

    def set_trailing_metadata(self, trailing_metadata: MetadataType) -> None:
        self._trailing = trailing_metadata

    def trailing_metadata(self) -> MetadataType | None:
        return self._trailing

    def abort(self, code: StatusCode, details: str) -> NoReturn:
        if code == StatusCode.OK:
            _LOGGER.error("abort() called with StatusCode.OK; returning UNKNOWN")
            code, details = StatusCode.UNKNOWN, ""
        self._code = code
        self.set_details(details)
        self._aborted = True
        raise _Abort()

    def abort_with_status(self, status: _api.Status) -> NoReturn:
        self._trailing = status.trailing_metadata
        self.abort(status.code, status.details)

    def set_code(self, code: StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        # grpcio keeps details encoded: details() returns bytes once set.
        self._details = details.encode("utf-8") if isinstance(details, str) else details

    def code(self) -> StatusCode | None:
        return self._code

    def details(self) -> bytes | None:
        return self._details

    def disable_next_message_compression(self) -> None:
        pass

    # status to send
    def _final(
        self, default_code: int, default_details: str
    ) -> tuple[int, str, MetadataType | None]:
        # A code that is not a StatusCode (a plain int, say) ends the call
        # UNKNOWN, as grpcio ends it.
        code = default_code if self._code is None else STATUS_CODE_TO_INT.get(self._code, UNKNOWN)
        details: str | bytes = default_details if self._details is None else self._details
        if isinstance(details, bytes):
            details = details.decode("utf-8", "replace")
        return code, details, self._trailing


class _Server(_api.Server):
    def __init__(
        self,
        handlers: Iterable[_api.GenericRpcHandler] | None,
        interceptors: Iterable[_api.ServerInterceptor] | None,
        options: Iterable[ChannelArgumentType] | None,
        maximum_concurrent_rpcs: int | None,
        thread_pool: futures.Executor | None = None,
        blocking_handlers: bool | str | Collection[str] = False,
    ) -> None:
        kwargs = core_options(options, SERVER_OPTIONS)
        if maximum_concurrent_rpcs is not None:
            if maximum_concurrent_rpcs < 1:
                raise ValueError("maximum_concurrent_rpcs should be a positive integer")
            kwargs["maximum_concurrent_rpcs"] = maximum_concurrent_rpcs
        if thread_pool is not None and not isinstance(thread_pool, futures.Executor):
            raise TypeError(
                "thread_pool must be a concurrent.futures.Executor, not %s"
                % type(thread_pool).__name__
            )
        self._placement = _threads.Placement(blocking_handlers)
        self._thread_pool = thread_pool
        self._own_pool: futures.ThreadPoolExecutor | None = None  # made when first needed
        self._hub: _core.Hub | None = None
        self._generic = list(handlers or ())
        self._registered: dict[str, _api.RpcMethodHandler] = {}
        # Method -> handler for the methods known without asking a generic
        # handler at call time: those run in greenlets (_index), those run
        # in an executor (_threaded).
        self._index: dict[str, _api.RpcMethodHandler] = {}
        self._threaded: dict[str, _api.RpcMethodHandler] = {}
        self._index_handlers()
        self._interceptors = tuple(interceptors or ())
        self._core = _core.Server(self._dispatch, **kwargs)
        self._started = False

    # configuration
    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[_api.GenericRpcHandler]
    ) -> None:
        for h in generic_rpc_handlers:
            if not hasattr(h, "service"):
                raise AttributeError(
                    f'Attempted to add a generic handler without a "service" method: {h}'
                )
        self._generic.extend(generic_rpc_handlers)
        self._index_handlers()

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, _api.RpcMethodHandler]
    ) -> None:
        for name, handler in method_handlers.items():
            self._registered[f"/{service_name}/{name}"] = handler
        self._index_handlers()

    def _index_handlers(self) -> None:
        """Method -> handler for every method whose handler is known without
        asking a generic handler at call time: the registered ones, then
        those of method_handlers_generic_handler() dictionaries up to the
        first generic handler of another kind (which may claim anything)."""
        index: dict[str, _api.RpcMethodHandler] = {}
        for generic in self._generic:
            if type(generic) is not _utilities.DictionaryGenericHandler:
                break
            for method, handler in generic._method_handlers.items():
                index.setdefault(method, handler)
        index.update(self._registered)
        pool_for = self._placement.pool_for
        threaded = {m: h for m, h in index.items() if pool_for(m, h) is not None}
        self._index = {m: h for m, h in index.items() if m not in threaded}
        self._threaded = threaded

    def add_insecure_port(self, address: str) -> int:
        return self._core.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: _api.ServerCredentials) -> int:
        raise NotImplementedError("grpc_green does not support TLS ports yet")

    # lifecycle
    def start(self) -> None:
        if self._started:
            raise ValueError("Cannot start already-started server!")
        self._started = True
        self._core.start()

    def stop(self, grace: float | None) -> _core.Event:
        event = self._core.stop(grace)
        if self._own_pool is not None:
            # Its threads end once the handlers queued there have run (the
            # calls of a stopped server answer at once).
            self._own_pool.shutdown(wait=False)
        return event

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Parks until the server stops; True if ``timeout`` passed first."""
        return not self._core.termination().wait(timeout)

    def __del__(self) -> None:
        # A server dropped without stop() stops as grpcio's does: its calls
        # end and its port closes.
        core = getattr(self, "_core", None)
        if core is not None:
            try:
                core.stop(None)
            except RuntimeError:
                pass  # made on another thread's hub, or before a fork
        pool = getattr(self, "_own_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    # per RPC
    def _lookup(self, method: str, call: _core.ServerCall) -> _api.RpcMethodHandler | None:
        """The handler of a method not in ``_index`` (or of any method, with
        interceptors)."""
        if not self._interceptors:
            handler = self._threaded.get(method)
            if handler is not None:
                return handler
        details = _HandlerCallDetails(method, call.invocation_metadata())

        def find(handler_call_details: _api.HandlerCallDetails) -> _api.RpcMethodHandler | None:
            h = self._registered.get(handler_call_details.method)
            if h is not None:
                return h
            for generic in self._generic:
                h = generic.service(handler_call_details)
                if h is not None:
                    return h
            return None

        continuation: Callable[[_api.HandlerCallDetails], _api.RpcMethodHandler | None] = find
        for interceptor in reversed(self._interceptors):
            continuation = _bind_interceptor(interceptor, continuation)
        return continuation(details)

    def _dispatch(self, call: _core.ServerCall) -> None:
        handler = self._index.get(call.method)
        if handler is None or self._interceptors:
            # Not a greenlet handler known in advance: found now, and maybe
            # one for the executor.
            try:
                handler = self._lookup(call.method, call)
                pool = None if handler is None else self._placement.pool_for(call.method, handler)
            except Exception as exc:
                _LOGGER.exception("Exception servicing handler")
                call.respond(None, UNKNOWN, f"Exception servicing handler: {exc}", None)
                return
            if handler is None:
                call.respond(None, UNIMPLEMENTED, "Method not found!", None)
                return
            if pool is not None:
                self._submit(pool, call, handler)
                return
        try:
            _serve(call, handler)
        except Exception as exc:  # noqa: BLE001  (the call's status says it; _serving_failed logs it)
            _serving_failed(call, exc)

    def _submit(self, pool: object, call: _core.ServerCall, handler: _api.RpcMethodHandler) -> None:
        """Runs the handler in an executor thread; on the hub, in the call's
        greenlet, which ends here (the steps on the call that the thread
        hands over run in greenlets of their own)."""
        if pool is _threads.SERVER_POOL:
            pool = self._thread_pool
            if pool is None:
                pool = self._own_pool
                if pool is None:
                    pool = self._own_pool = _threads.default_executor()
        assert isinstance(pool, futures.Executor)
        # A unary request is read here: the thread starts with it, and an
        # executor never holds a thread for a call still waiting for it.
        request = None
        if not handler.request_streaming:
            request = call.read_unary()
            if request is None:
                _no_unary_request(call)
                return
        hub = self._hub
        if hub is None:
            hub = self._hub = _core.get_hub()
        threaded = _threads.ThreadCall(call, hub, request)
        try:
            pool.submit(_serve_in_thread, threaded, handler)
        except RuntimeError as exc:  # the executor has been shut down
            _LOGGER.error("The server's executor refused a handler: %s", exc)
            call.respond(None, UNAVAILABLE, "The server's executor is shut down", None)


def _serving_failed(call: _ServerCall, exc: Exception) -> None:
    """What the application's own errors did not cause: its trailing
    metadata refused on the way out, or no memory for a response."""
    if isinstance(exc, _core.InvalidMetadataError):
        _LOGGER.exception("Invalid metadata")
        details = "Invalid metadata"  # grpcio's words
    else:
        _LOGGER.exception("Exception servicing the call")
        details = f"Exception servicing the call: {exc!r}"
    if call.is_active():
        call.respond(None, INTERNAL, details, None)


def _serve_in_thread(call: _threads.ThreadCall, handler: _api.RpcMethodHandler) -> None:
    """An executor thread's job: a call's handler, from its request to its status."""
    try:
        _serve(call, handler)
    except Exception as exc:  # noqa: BLE001  (the call's status says it; _serving_failed logs it)
        _serving_failed(call, exc)


def _bind_interceptor(
    interceptor: _api.ServerInterceptor,
    continuation: Callable[[_api.HandlerCallDetails], _api.RpcMethodHandler | None],
) -> Callable[[_api.HandlerCallDetails], _api.RpcMethodHandler | None]:
    return lambda details: interceptor.intercept_service(continuation, details)


class _RequestIterator(MessageReader):
    """The request stream a streaming handler iterates; parks cooperatively.

    When the RPC is cancelled (by the client, a deadline or the server) it
    raises ``grpc.RpcError``, as grpcio's does.
    """

    __slots__ = ("_call", "_deserializer")
    _call: _ServerCall
    _logger = _LOGGER
    _deserialize_error = _DESERIALIZE_ERROR

    def __init__(self, call: _ServerCall, deserializer: DeserializingFunction | None) -> None:
        self._call = call
        self._deserializer = deserializer

    def _reading_ended(self) -> BaseException:
        return StopIteration() if self._call.is_active() else _api.RpcError()

    def _deserialize_error_reported(self) -> BaseException:
        self._call.respond(None, INTERNAL, _DESERIALIZE_ERROR, None)
        return _api.RpcError()


def _fail(call: _ServerCall, context: _Context, exc: Exception, prefix: str) -> None:
    """Sends the status for an exception out of the application."""
    if not call.is_active():
        return  # cancelled: the client is gone, nothing to report
    if context._aborted:
        code, details, trailing = context._final(UNKNOWN, "")
    else:
        try:
            text = prefix + str(exc)
        except Exception:  # noqa: BLE001  (str() of the application's exception failed)
            text = "Calling application raised unprintable Exception!"
        _LOGGER.exception(text)
        code, details, trailing = context._final(UNKNOWN, text)
    call.respond(None, code, details, trailing)


def _no_unary_request(call: _ServerCall) -> None:
    """A unary-request call that ended, or brought other than one request."""
    if call.is_active():
        call.respond(
            None, UNIMPLEMENTED, f'"{call.method}" requires exactly one request message.', None
        )


def _serve(call: _ServerCall, handler: _api.RpcMethodHandler) -> None:
    request: Any
    request_streaming = handler.request_streaming
    if request_streaming:
        request = _RequestIterator(call, handler.request_deserializer)
    else:
        request = call.read_unary()  # None unless exactly one message, then the end
        if request is None:
            _no_unary_request(call)
            return
        deserializer = handler.request_deserializer
        if deserializer is not None:
            request = transform(deserializer, request, _LOGGER, _DESERIALIZE_ERROR)
            if request is FAILED or request is None:  # grpcio reads None as a failure too
                call.respond(None, INTERNAL, _DESERIALIZE_ERROR, None)
                return
    response_streaming = handler.response_streaming
    if response_streaming:
        behavior = handler.stream_stream if request_streaming else handler.unary_stream
    else:
        behavior = handler.stream_unary if request_streaming else handler.unary_unary
    context = _Context(call)
    if response_streaming and getattr(behavior, "experimental_non_blocking", False):
        _stream_from_callback(call, context, handler.response_serializer, behavior, request)
        return
    try:
        result = behavior(request, context)  # type: ignore[misc]  # the handler's one behavior
    except Exception as exc:  # noqa: BLE001  (the call's status says it; _fail logs it)
        _fail(call, context, exc, "Exception calling application: ")
        return
    if response_streaming:
        _stream_responses(call, context, handler.response_serializer, result)
        return
    if context._code is None and context._details is None and context._trailing is None:
        code, details, trailing = OK, None, None  # the common case, no status set
    else:
        code, details, trailing = context._final(OK, "")
        if code != OK:
            call.respond(None, code, details, trailing)
            return
    serializer = handler.response_serializer
    payload = (
        result if serializer is None else transform(serializer, result, _LOGGER, _SERIALIZE_ERROR)
    )
    if not isinstance(payload, bytes):  # FAILED too
        call.respond(None, INTERNAL, _SERIALIZE_ERROR, None)
        return
    call.respond(payload, code, details, trailing)


def _stream_responses(
    call: _ServerCall,
    context: _Context,
    serializer: SerializingFunction | None,
    responses: Iterable[Any],
) -> None:
    """Writes what a response iterator yields; ``call.write`` parks while the
    HTTP/2 send window is full and turns False when the call has ended, which
    closes the iterator (a generator's ``finally`` runs)."""
    try:
        outcome = send_messages(call, responses, serializer, _LOGGER, _SERIALIZE_ERROR, True)
        if outcome == SENT:
            code, details, trailing = context._final(OK, "")
            call.respond(None, code, details, trailing)
        elif outcome == NOT_SERIALIZED:
            call.respond(None, INTERNAL, _SERIALIZE_ERROR, None)
    except Exception as exc:  # noqa: BLE001  (the call's status says it; _fail logs it)
        _fail(call, context, exc, "Exception iterating responses: ")
    finally:
        close = getattr(responses, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                _LOGGER.exception("Exception closing the response iterator")


_CALL_ENDED = object()


def _stream_from_callback(
    call: _ServerCall,
    context: _Context,
    serializer: SerializingFunction | None,
    behavior: Any,  # called with (request, context, send_response)
    request: Any,
) -> None:
    """grpcio's ``experimental_non_blocking`` behaviors (grpcio-health-
    checking's ``HealthServicer.Watch``): ``behavior(request, context,
    send_response)`` returns at once, and ``send_response(message)``, from
    any thread, sends a response later; ``send_response(None)`` ends the
    call with the context's status. The responses wait in a queue that this
    greenlet writes out (unbounded: the application's calls never block,
    as in grpcio they wait for each message to be sent)."""
    responses: Queue[Any] = Queue()
    ended = False

    def send_response(response: Any) -> None:
        if not ended:
            responses.put(response)

    if not call.add_callback(lambda: responses.put(_CALL_ENDED)):
        return  # the call has ended already
    try:
        behavior(request, context, send_response)
    except Exception as exc:  # noqa: BLE001  (the call's status says it; _fail logs it)
        _fail(call, context, exc, "Exception calling application: ")
        return
    try:
        while True:
            response = responses.get()
            if response is _CALL_ENDED:
                return
            if response is None:
                code, details, trailing = context._final(OK, "")
                call.respond(None, code, details, trailing)
                return
            payload = (
                response
                if serializer is None
                else transform(serializer, response, _LOGGER, _SERIALIZE_ERROR)
            )
            if not isinstance(payload, bytes):  # FAILED too
                call.respond(None, INTERNAL, _SERIALIZE_ERROR, None)
                return
            if not call.write(payload):
                return
    finally:
        ended = True
        while not responses.empty():
            responses.get_nowait()


def server(
    thread_pool: futures.Executor | None = None,
    handlers: Sequence[_api.GenericRpcHandler] | None = None,
    interceptors: Sequence[_api.ServerInterceptor] | None = None,
    options: Sequence[ChannelArgumentType] | None = (),
    maximum_concurrent_rpcs: int | None = None,
    compression: _api.Compression | None = None,
    xds: bool = False,
    *,
    blocking_handlers: bool | str | Collection[str] = False,
) -> _Server:
    """A server whose handlers run in greenlets, except those it is told
    block, which run in ``thread_pool``.

    Where the server runs: without ``thread_pool`` (greenlet code), on this
    thread's hub: it serves while this thread waits in grpc_green
    (``wait_for_termination()``, a call, ``hub.sleep``...). With a
    ``thread_pool``, as grpcio code always passes one, on a hub thread of
    its own, as grpcio's server serves from threads of its own: after
    ``start()`` this thread may sleep or block on anything, and the methods
    called from other threads are handed to the server's thread. On
    gevent's hub the server runs on this thread's hub either way (once
    gevent has patched threading, threads are greenlets and block
    cooperatively).

    A handler in a greenlet must not block the OS thread: ``time.sleep``, a
    blocking driver or a ``threading`` lock held for long stops every call
    of the hub. Such handlers are *blocking* and run in an executor thread
    instead, where they see the whole ``ServicerContext`` as usual; each
    step on the call (a request read, a response written, the status) is
    done by the hub, and the thread waits for it. A handler is blocking when

    * ``blocking_handlers`` is True (every handler), or names its service
      (``"package.Service"``) or method (``"/package.Service/Method"``;
      a collection of such names, or one);
    * its function is marked with ``grpc_green.blocking``;
    * its function has grpcio's ``experimental_thread_pool`` attribute set to
      an executor: it runs in that one.

    grpcio's ``experimental_non_blocking`` response-streaming functions
    (grpcio-health-checking's ``Watch``) return at once and run in greenlets.

    ``thread_pool`` is the executor of blocking handlers: code written for
    grpcio keeps its handlers in greenlets until it marks them. Without one,
    a server that meets a blocking handler makes a
    ``concurrent.futures.ThreadPoolExecutor`` of Python's default size
    (min(32, os.cpu_count() + 4) threads), shut down by ``stop()``. When
    every thread is busy, calls wait in the executor's queue, and count
    against ``maximum_concurrent_rpcs`` meanwhile. ``compression`` and
    ``xds`` are accepted for grpcio compatibility and ignored.
    """

    def make() -> _Server:
        return _Server(
            handlers, interceptors, options, maximum_concurrent_rpcs, thread_pool, blocking_handlers
        )

    if thread_pool is not None and _hubs.kind() == "native":
        from grpc_green._server_thread import ThreadedServer

        return ThreadedServer(make)  # type: ignore[return-value]
    return make()
