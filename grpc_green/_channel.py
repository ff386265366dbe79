"""Client side: channels and multicallables with grpcio's semantics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal, NoReturn

from grpc_green import _api, _core, _requests
from grpc_green._api import StatusCode
from grpc_green._common import (
    CANCELLED,
    CHANNEL_OPTIONS,
    FAILED,
    INTERNAL,
    MessageReader,
    core_options,
    int_to_status_code,
    transform,
)
from grpc_green._threads import call_on_hub
from grpc_green._typing import (
    ChannelArgumentType,
    DeserializingFunction,
    MetadataType,
    NullaryCallbackType,
    RequestIterableType,
    SerializingFunction,
)
from grpc_green._version import __version__

_LOGGER = logging.getLogger(__name__)
_USER_AGENT = f"grpc-python-grpc_green/{__version__} (nghttp2 {_core.NGHTTP2_VERSION})"


class _CallState:
    """What a finished call reports: the `grpc.Call` half of results."""

    def __init__(
        self,
        code: StatusCode,
        details: str | None,
        initial: MetadataType | None,
        trailing: MetadataType | None,
    ) -> None:
        self._code = code
        self._details = details
        self._initial = initial
        self._trailing = trailing

    def code(self) -> StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details

    def initial_metadata(self) -> MetadataType | None:
        return self._initial

    def trailing_metadata(self) -> MetadataType | None:
        return self._trailing

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: NullaryCallbackType) -> bool:
        return False

    def debug_error_string(self) -> str:
        return f"{self._code}: {self._details}"


class _CompletedCall(_CallState, _api.Call):
    """The call object returned by ``with_call`` for a successful RPC."""


class _InactiveRpcError(_CallState, _api.RpcError, _api.Call, _api.Future):
    """An RPC that ended with a non-OK status: an error, a Call and a Future."""

    def __init__(
        self,
        code: StatusCode,
        details: str | None,
        initial: MetadataType | None = (),
        trailing: MetadataType | None = (),
    ) -> None:
        _CallState.__init__(self, code, details, initial, trailing)
        _api.RpcError.__init__(self)

    def __str__(self) -> str:
        return (
            "<_InactiveRpcError of RPC that terminated with:\n"
            f"\tstatus = {self._code}\n"
            f'\tdetails = "{self._details}"\n>'
        )

    __repr__ = __str__

    # Future
    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> NoReturn:
        raise self

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self

    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        return self.__traceback__

    def add_done_callback(self, fn: Callable[[_api.Future], None]) -> None:
        fn(self)


def _serialize(serializer: SerializingFunction | None, request: Any) -> Any:
    if serializer is None:
        return request
    try:
        return serializer(request)
    except Exception:  # noqa: BLE001  (the application's serializer: any failure is INTERNAL)
        # What the serializer raised is the context, not the cause, as the
        # engine's unary path has it.
        raise _InactiveRpcError(StatusCode.INTERNAL, "Exception serializing request!")  # noqa: B904


def _logged(fn: Callable[..., object], *args: Any) -> Callable[[], None]:
    """fn(*args) for a done callback: what it raises is logged, as grpcio logs it."""

    def run() -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001  (logged as grpcio logs it)
            _LOGGER.error("Exception in callback %s: %s", repr(fn), repr(e))

    return run


class _MultiCallable:
    """What every multicallable holds: its channel, method and codecs."""

    __slots__ = ("_channel", "_method", "_serializer", "_deserializer")

    def __init__(
        self,
        channel: Channel,
        method: str,
        serializer: SerializingFunction | None,
        deserializer: DeserializingFunction | None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer


class _UnaryUnaryMultiCallable(_core.UnaryUnary, _api.UnaryUnaryMultiCallable):
    """``__call__`` and ``_invoke`` are the engine's (``_core.UnaryUnary``): a stub
    call serializes, runs and deserializes without a Python frame of ours."""

    @staticmethod
    def _fail(
        code: int, details: str, initial: MetadataType, trailing: MetadataType
    ) -> _InactiveRpcError:
        # The RpcError the engine raises for a call that did not end OK.
        return _InactiveRpcError(int_to_status_code(code), details, initial, trailing)

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: _api.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: _api.Compression | None = None,
    ) -> tuple[Any, _CompletedCall]:
        response, initial, trailing = self._invoke(request, timeout, metadata, wait_for_ready)
        return response, _CompletedCall(StatusCode.OK, "", initial, trailing)

    def future(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: _api.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: _api.Compression | None = None,
    ) -> _UnaryFuture:
        return _UnaryFuture(self, request, timeout, metadata, wait_for_ready)


class _Cancelled(BaseException):
    """Thrown into a future's greenlet by ``cancel()``."""


class _UnaryFuture(_api.Future, _api.Call):
    """A unary call running in its own greenlet; ``result()`` parks cooperatively."""

    def __init__(
        self,
        multicallable: _UnaryUnaryMultiCallable,
        request: Any,
        timeout: float | None,
        metadata: MetadataType | None,
        wait_for_ready: bool | None,
    ) -> None:
        self._done = _core.Event()
        self._response: Any = None
        self._state: Any = None  # the Call once done: _CompletedCall or the RpcError
        self._error: _api.RpcError | None = None
        self._cancelled = False
        self._callbacks: list[Callable[[_api.Future], None]] | None = []
        self._deadline = None if timeout is None else _core.monotonic() + timeout
        self._greenlet = _core.spawn_greenlet(
            self._run, multicallable, request, timeout, metadata, wait_for_ready
        )

    def _run(
        self,
        multicallable: _UnaryUnaryMultiCallable,
        request: Any,
        timeout: float | None,
        metadata: MetadataType | None,
        wait_for_ready: bool | None,
    ) -> None:
        try:
            response, initial, trailing = multicallable._invoke(
                request, timeout, metadata, wait_for_ready
            )
            self._finish(response, _CompletedCall(StatusCode.OK, "", initial, trailing), None)
        except _api.RpcError as err:
            self._finish(None, err, err)
        except _Cancelled:
            pass  # cancel() already finished the future

    def _finish(self, response: Any, state: Any, error: _api.RpcError | None) -> None:
        if self._done.is_set():
            return
        self._response, self._state, self._error = response, state, error
        self._done.set()
        callbacks, self._callbacks = self._callbacks, None
        for fn in callbacks or ():
            try:
                fn(self)
            except Exception as e:  # noqa: BLE001  (logged as grpcio logs it; the others run)
                _LOGGER.error("Exception in callback %s: %s", repr(fn), repr(e))

    # Future
    def cancel(self) -> bool:
        """Cancels at once; the call's stream is reset on the hub's next pass."""
        if self._done.is_set():
            return False
        self._cancelled = True
        error = _InactiveRpcError(StatusCode.CANCELLED, "Locally cancelled by application!")
        self._finish(None, error, error)
        _core.kill(self._greenlet, _Cancelled())
        return True

    def cancelled(self) -> bool:
        return self._cancelled

    def running(self) -> bool:
        return not self._done.is_set()

    def done(self) -> bool:
        return self._done.is_set()

    def _wait(self, timeout: float | None) -> None:
        if not self._done.wait(timeout):
            raise _api.FutureTimeoutError()
        if self._cancelled:
            raise _api.FutureCancelledError()

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._response

    def exception(self, timeout: float | None = None) -> Exception | None:
        self._wait(timeout)
        return self._error

    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        self._wait(timeout)
        return None if self._error is None else self._error.__traceback__

    def add_done_callback(self, fn: Callable[[_api.Future], None]) -> None:
        if self._callbacks is None:
            fn(self)
        else:
            self._callbacks.append(fn)

    # Call
    def is_active(self) -> bool:
        return not self._done.is_set()

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - _core.monotonic())

    def add_callback(self, callback: NullaryCallbackType) -> bool:
        if self._callbacks is None:
            return False
        self._callbacks.append(lambda _f: callback())
        return True

    def _call_state(self) -> Any:
        self._done.wait()
        return self._state

    def initial_metadata(self) -> MetadataType | None:
        return self._call_state().initial_metadata()

    def trailing_metadata(self) -> MetadataType | None:
        return self._call_state().trailing_metadata()

    def code(self) -> StatusCode | None:
        return self._call_state().code()

    def details(self) -> str | None:
        return self._call_state().details()


def _start(
    channel: Channel,
    method: str,
    timeout: float | None,
    metadata: MetadataType | None,
    wait_for_ready: bool | None,
    request: Any,
    unary_response: bool,
) -> _core.Call:
    try:
        return channel._core.start(
            method, timeout, metadata, bool(wait_for_ready), request, unary_response
        )
    except _core.InvalidMetadataError as err:
        raise _InactiveRpcError(StatusCode.INTERNAL, "Invalid metadata") from err


class _Rendezvous(_api.RpcError, _api.Call, _api.Future, MessageReader):
    """A call in flight: the response iterator of a streaming call, and the
    future of a ``stream_unary`` call. Like grpcio's, it is an RpcError
    (raised when the call ends badly), a Call and a Future.
    """

    _call: _core.Call
    _logger = _LOGGER
    _deserialize_error = "Exception deserializing response!"

    def __init__(
        self,
        call: _core.Call,
        deserializer: DeserializingFunction | None,
        unary_response: bool,
    ) -> None:
        _api.RpcError.__init__(self)
        self._call = call
        self._deserializer = deserializer
        self._unary_response = unary_response
        self._cancelled = False
        self._response: Any = None
        self._response_taken = False
        self._deserialize_failed = False
        # Set by _StreamMultiCallable: the worker thread pulling the requests.
        self._requests: _requests.ThreadedRequests | None = None

    # iterator (MessageReader)
    def _read_from_other_thread(self) -> bytes | None:
        """The next message for a request iterator's worker thread (a
        generator reading the responses of another call of the caller): read
        on the call's hub, whose thread waits in grpc_green meanwhile (it is
        making the call that consumes the iterator), while this thread
        waits. Any other thread gets the ForeignThreadError: the thread that
        started the call may be blocked outside grpc_green, and the read
        would never come."""
        if not _requests.in_worker():
            raise
        return call_on_hub(self._call.hub(), self._call.read)

    def _reading_ended(self) -> BaseException:
        return StopIteration() if self._call.code == 0 else self

    def _deserialize_error_reported(self) -> BaseException:
        self._call.cancel(INTERNAL, self._deserialize_error)
        return self

    # RpcContext / Call
    def is_active(self) -> bool:
        return self._call.is_active()

    def time_remaining(self) -> float | None:
        return self._call.time_remaining()

    def cancel(self) -> bool:
        self._stop_requests()  # at once: the call's done callbacks run on the next pass
        if self._call.cancel(CANCELLED, "Locally cancelled by application!"):
            self._cancelled = True
            return True
        return False

    def _stop_requests(self) -> None:
        if self._requests is not None:
            self._requests.stop()

    def add_callback(self, callback: NullaryCallbackType) -> bool:
        return self._call.add_done_callback(_logged(callback))

    def initial_metadata(self) -> MetadataType:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> MetadataType | None:
        self._call.wait()
        return self._call.trailing_metadata()

    def code(self) -> StatusCode:
        self._call.wait()
        return int_to_status_code(self._call.code)

    def details(self) -> str | None:
        self._call.wait()
        return self._call.details

    def debug_error_string(self) -> str:
        self._call.wait()
        return f"{self.code()}: {self._call.details}"

    # Future
    def cancelled(self) -> bool:
        return self._cancelled

    def running(self) -> bool:
        return self._call.is_active()

    def done(self) -> bool:
        return not self._call.is_active()

    def _wait(self, timeout: float | None) -> None:
        if not self._call.wait(timeout):
            raise _api.FutureTimeoutError()
        if self._cancelled:
            raise _api.FutureCancelledError()

    def _unary_result(self) -> Any:
        if not self._response_taken:
            self._response_taken = True
            raw = self._call.read() if self._call.code == 0 else None
            if raw is not None:
                if self._deserializer is None:
                    self._response = raw
                else:
                    response = transform(self._deserializer, raw, _LOGGER, self._deserialize_error)
                    if response is FAILED or response is None:  # None: as grpcio reads it
                        self._deserialize_failed = True
                    else:
                        self._response = response
        return self._response

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        if self._call.code != 0:
            raise self
        if not self._unary_response:
            return None
        response = self._unary_result()
        if self._deserialize_failed:
            raise _InactiveRpcError(
                StatusCode.INTERNAL,
                "Exception deserializing response!",
                self._call.initial_metadata(),
                self._call.trailing_metadata(),
            )
        return response

    def exception(self, timeout: float | None = None) -> Exception | None:
        self._wait(timeout)
        return None if self._call.code == 0 else self

    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        self._wait(timeout)
        if self._call.code == 0:
            return None
        try:
            raise self
        except _api.RpcError:
            import sys

            return sys.exc_info()[2]

    def add_done_callback(self, fn: Callable[[_api.Future], None]) -> None:
        if not self._call.add_done_callback(_logged(fn, self)):
            fn(self)

    def __str__(self) -> str:
        if self._call.is_active():
            return f"<{type(self).__name__} object of in-flight RPC>"
        return (
            f"<{type(self).__name__} of RPC that terminated with:\n"
            f"\tstatus = {int_to_status_code(self._call.code)}\n"
            f'\tdetails = "{self._call.details}"\n>'
        )

    __repr__ = __str__


class _MultiThreadedRendezvous(_Rendezvous):
    """grpcio's name for the object a streaming call returns."""


def _blocking_unary_response(rendezvous: _Rendezvous) -> tuple[Any, _CompletedCall]:
    """Parks for the end of a stream_unary call; response and Call or raises."""
    try:
        rendezvous._call.wait()
    except BaseException:
        rendezvous._stop_requests()
        rendezvous._call.cancel(CANCELLED, "Cancelled")
        raise
    call = rendezvous._call
    initial, trailing = call.initial_metadata(), call.trailing_metadata()
    if call.code != 0:
        raise _InactiveRpcError(int_to_status_code(call.code), call.details, initial, trailing)
    return rendezvous.result(), _CompletedCall(StatusCode.OK, "", initial, trailing)


class _UnaryStreamMultiCallable(_MultiCallable, _api.UnaryStreamMultiCallable):
    __slots__ = ()

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: _api.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: _api.Compression | None = None,
    ) -> _MultiThreadedRendezvous:
        payload = _serialize(self._serializer, request)
        call = _start(
            self._channel, self._method, timeout, metadata, wait_for_ready, payload, False
        )
        return _MultiThreadedRendezvous(call, self._deserializer, False)


class _StreamMultiCallable(_MultiCallable):
    __slots__ = ()

    def _start(
        self,
        request_iterator: RequestIterableType,
        timeout: float | None,
        metadata: MetadataType | None,
        wait_for_ready: bool | None,
        unary_response: bool,
    ) -> _MultiThreadedRendezvous:
        call = _start(
            self._channel, self._method, timeout, metadata, wait_for_ready, None, unary_response
        )
        rendezvous = _MultiThreadedRendezvous(call, self._deserializer, unary_response)
        if call.is_active():
            rendezvous._requests = _requests.consume(call, request_iterator, self._serializer)
        return rendezvous


class _StreamUnaryMultiCallable(_StreamMultiCallable, _api.StreamUnaryMultiCallable):
    __slots__ = ()

    def __call__(
        self,
        request_iterator: RequestIterableType,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: _api.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: _api.Compression | None = None,
    ) -> Any:
        rendezvous = self._start(request_iterator, timeout, metadata, wait_for_ready, True)
        return _blocking_unary_response(rendezvous)[0]

    def with_call(
        self,
        request_iterator: RequestIterableType,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: _api.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: _api.Compression | None = None,
    ) -> tuple[Any, _CompletedCall]:
        rendezvous = self._start(request_iterator, timeout, metadata, wait_for_ready, True)
        return _blocking_unary_response(rendezvous)

    def future(
        self,
        request_iterator: RequestIterableType,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: _api.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: _api.Compression | None = None,
    ) -> _MultiThreadedRendezvous:
        return self._start(request_iterator, timeout, metadata, wait_for_ready, True)


class _StreamStreamMultiCallable(_StreamMultiCallable, _api.StreamStreamMultiCallable):
    __slots__ = ()

    def __call__(
        self,
        request_iterator: RequestIterableType,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: _api.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: _api.Compression | None = None,
    ) -> _MultiThreadedRendezvous:
        return self._start(request_iterator, timeout, metadata, wait_for_ready, False)


class Channel(_api.Channel):
    """A channel to one target; calls from any greenlet of this thread."""

    def __init__(
        self,
        target: str,
        options: Sequence[ChannelArgumentType] | None = None,
        compression: _api.Compression | None = None,
    ) -> None:
        self._target = target
        self._core = _core.Channel(target, **core_options(options, CHANNEL_OPTIONS, _USER_AGENT))

    def subscribe(
        self, callback: Callable[[_api.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        raise NotImplementedError("connectivity subscriptions are not available yet")

    def unsubscribe(self, callback: Callable[[_api.ChannelConnectivity], None]) -> None:
        raise NotImplementedError("connectivity subscriptions are not available yet")

    def unary_unary(
        self,
        method: str,
        request_serializer: SerializingFunction | None = None,
        response_deserializer: DeserializingFunction | None = None,
        _registered_method: bool | None = False,
    ) -> _UnaryUnaryMultiCallable:
        return _UnaryUnaryMultiCallable(self, method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: SerializingFunction | None = None,
        response_deserializer: DeserializingFunction | None = None,
        _registered_method: bool | None = False,
    ) -> _UnaryStreamMultiCallable:
        return _UnaryStreamMultiCallable(self, method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str,
        request_serializer: SerializingFunction | None = None,
        response_deserializer: DeserializingFunction | None = None,
        _registered_method: bool | None = False,
    ) -> _StreamUnaryMultiCallable:
        return _StreamUnaryMultiCallable(self, method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: SerializingFunction | None = None,
        response_deserializer: DeserializingFunction | None = None,
        _registered_method: bool | None = False,
    ) -> _StreamStreamMultiCallable:
        return _StreamStreamMultiCallable(self, method, request_serializer, response_deserializer)

    def close(self) -> None:
        self._core.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> Literal[False]:
        self.close()
        return False


def insecure_channel(
    target: str,
    options: Sequence[ChannelArgumentType] | None = None,
    compression: _api.Compression | None = None,
) -> Channel:
    """A plaintext HTTP/2 channel to ``target``, grpcio's signature."""
    return Channel(target, options, compression)


def secure_channel(
    target: str,
    credentials: _api.ChannelCredentials,
    options: Sequence[ChannelArgumentType] | None = None,
    compression: _api.Compression | None = None,
) -> Channel:
    from grpc_green import experimental

    if credentials is experimental.insecure_channel_credentials():
        return Channel(target, options, compression)
    raise NotImplementedError("grpc_green does not support TLS channels yet")
