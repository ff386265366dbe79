"""grpcio's experimental names that generated code and applications use.

The single-shot functions ``unary_unary``, ``unary_stream``, ``stream_unary``
and ``stream_stream`` are what the static methods of the experimental service
class in a generated ``_pb2_grpc.py`` call. Unlike grpcio, which keeps a
process-wide cache of channels for them, grpc_green opens a channel for each
call and closes it when the call is over (for the response-streaming ones:
when the response iterator is exhausted, fails or is cancelled).

``monkey.patch_grpc()`` installs this module as ``grpc.experimental``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from grpc_green import _api
from grpc_green._typing import (
    ChannelArgumentType,
    DeserializingFunction,
    MetadataType,
    RequestIterableType,
    SerializingFunction,
)

if TYPE_CHECKING:
    from grpc_green._channel import Channel

_P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = (
    "ChannelOptions",
    "ExperimentalApiWarning",
    "UsageError",
    "experimental_api",
    "insecure_channel_credentials",
    "stream_stream",
    "stream_unary",
    "unary_stream",
    "unary_unary",
    "wrap_server_method_handler",
)


class ChannelOptions:
    """Channel option names specific to the Python runtime (experimental)."""

    SingleThreadedUnaryStream = "SingleThreadedUnaryStream"


class UsageError(Exception):
    """The API was used in a way it does not allow."""


class ExperimentalApiWarning(Warning):
    """Issued (once per API) when an experimental API is first used."""


_warned: set[str] = set()


def _warn_experimental(name: str, stacklevel: int) -> None:
    if name in _warned:
        return
    _warned.add(name)
    warnings.warn(
        f"'{name}' is an experimental API. It may change or be removed in any minor release.",
        ExperimentalApiWarning,
        stacklevel=stacklevel + 1,
    )


def experimental_api(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator: warn with ExperimentalApiWarning on the first call."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        _warn_experimental(function.__name__, 2)
        return function(*args, **kwargs)

    return wrapper


# A singleton: the runtime recognises insecure credentials by identity.
_INSECURE_CHANNEL_CREDENTIALS = _api.ChannelCredentials("insecure")


def insecure_channel_credentials() -> _api.ChannelCredentials:
    """ChannelCredentials meaning "no transport security"."""
    return _INSECURE_CHANNEL_CREDENTIALS


def wrap_server_method_handler(
    wrapper: Callable[[Callable[..., Any]], Callable[..., Any]],
    handler: _api.RpcMethodHandler | None,
) -> _api.RpcMethodHandler | None:
    """Return a copy of ``handler`` whose behaviour is ``wrapper(behaviour)``.

    ``None`` is passed through unchanged.
    """
    if not handler:
        return None
    if handler.request_streaming:
        slot = "stream_stream" if handler.response_streaming else "stream_unary"
    else:
        slot = "unary_stream" if handler.response_streaming else "unary_unary"
    # The handlers grpc_green makes are named tuples (as grpcio's are).
    replaced: _api.RpcMethodHandler = cast(Any, handler)._replace(
        **{slot: wrapper(getattr(handler, slot))}
    )
    return replaced


############################ single-shot calls #################################


def _open_channel(
    target: str,
    options: Sequence[ChannelArgumentType],
    channel_credentials: _api.ChannelCredentials | None,
    insecure: bool,
    compression: _api.Compression | None,
) -> Channel:
    import grpc_green

    if insecure and channel_credentials is not None:
        raise ValueError(
            "insecure=True and channel_credentials are mutually exclusive; pass one or the other."
        )
    kwargs: dict[str, Any] = {} if compression is None else {"compression": compression}
    if channel_credentials is None or channel_credentials is _INSECURE_CHANNEL_CREDENTIALS:
        # grpcio would default to TLS when neither insecure nor credentials
        # are given; grpc_green speaks plaintext HTTP/2 in that case.
        return grpc_green.insecure_channel(target, options, **kwargs)
    return grpc_green.secure_channel(target, channel_credentials, options, **kwargs)


def _call_options(
    call_credentials: _api.CallCredentials | None,
    wait_for_ready: bool | None,
    timeout: float | None,
    metadata: MetadataType | None,
) -> dict[str, Any]:
    return {
        "timeout": timeout,
        "metadata": metadata,
        "credentials": call_credentials,
        "wait_for_ready": True if wait_for_ready is None else wait_for_ready,
    }


class _ChannelClosingResponses(_api.Call, _api.Future):
    """A response-streaming call that closes its private channel once the
    stream ends (exhausted, failed or cancelled). Everything else is
    delegated to the underlying call object."""

    def __init__(self, call: Any, channel: Channel) -> None:
        self._call = call
        self._channel: Channel | None = channel

    def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def __iter__(self) -> _ChannelClosingResponses:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except BaseException:
            self._close_channel()
            raise

    def cancel(self) -> bool:
        try:
            return self._call.cancel()
        finally:
            self._close_channel()

    def is_active(self) -> bool:
        return self._call.is_active()

    def time_remaining(self) -> float | None:
        return self._call.time_remaining()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return self._call.add_callback(callback)

    def initial_metadata(self) -> MetadataType | None:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> MetadataType | None:
        return self._call.trailing_metadata()

    def code(self) -> _api.StatusCode | None:
        return self._call.code()

    def details(self) -> str | None:
        return self._call.details()

    def cancelled(self) -> bool:
        return self._call.cancelled()

    def running(self) -> bool:
        return self._call.running()

    def done(self) -> bool:
        return self._call.done()

    def result(self, timeout: float | None = None) -> Any:
        return self._call.result(timeout)

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self._call.exception(timeout)

    def traceback(self, timeout: float | None = None) -> Any:
        return self._call.traceback(timeout)

    def add_done_callback(self, fn: Callable[[_api.Future], None]) -> None:
        return self._call.add_done_callback(lambda _: fn(self))

    def __getattr__(self, name: str) -> Any:
        if name in ("_call", "_channel"):
            raise AttributeError(name)
        return getattr(self._call, name)


def _unary_response(
    kind: str,
    request: Any,
    target: str,
    method: str,
    request_serializer: SerializingFunction | None,
    response_deserializer: DeserializingFunction | None,
    options: Sequence[ChannelArgumentType],
    channel_credentials: _api.ChannelCredentials | None,
    insecure: bool,
    call_credentials: _api.CallCredentials | None,
    compression: _api.Compression | None,
    wait_for_ready: bool | None,
    timeout: float | None,
    metadata: MetadataType | None,
    registered_method: bool | None,
) -> Any:
    channel = _open_channel(target, options, channel_credentials, insecure, compression)
    try:
        multicallable = getattr(channel, kind)(
            method,
            request_serializer=request_serializer,
            response_deserializer=response_deserializer,
            _registered_method=registered_method,
        )
        return multicallable(
            request, **_call_options(call_credentials, wait_for_ready, timeout, metadata)
        )
    finally:
        channel.close()


def _stream_response(
    kind: str,
    request: Any,
    target: str,
    method: str,
    request_serializer: SerializingFunction | None,
    response_deserializer: DeserializingFunction | None,
    options: Sequence[ChannelArgumentType],
    channel_credentials: _api.ChannelCredentials | None,
    insecure: bool,
    call_credentials: _api.CallCredentials | None,
    compression: _api.Compression | None,
    wait_for_ready: bool | None,
    timeout: float | None,
    metadata: MetadataType | None,
    registered_method: bool | None,
) -> _ChannelClosingResponses:
    channel = _open_channel(target, options, channel_credentials, insecure, compression)
    try:
        multicallable = getattr(channel, kind)(
            method,
            request_serializer=request_serializer,
            response_deserializer=response_deserializer,
            _registered_method=registered_method,
        )
        call = multicallable(
            request, **_call_options(call_credentials, wait_for_ready, timeout, metadata)
        )
    except BaseException:
        channel.close()
        raise
    return _ChannelClosingResponses(call, channel)


@experimental_api
def unary_unary(
    request: Any,
    target: str,
    method: str,
    request_serializer: SerializingFunction | None = None,
    response_deserializer: DeserializingFunction | None = None,
    options: Sequence[ChannelArgumentType] = (),
    channel_credentials: _api.ChannelCredentials | None = None,
    insecure: bool = False,
    call_credentials: _api.CallCredentials | None = None,
    compression: _api.Compression | None = None,
    wait_for_ready: bool | None = None,
    timeout: float | None = None,
    metadata: MetadataType | None = None,
    _registered_method: bool | None = False,
) -> Any:
    """Make one unary-unary call to ``target`` without a user-managed channel.

    ``wait_for_ready`` defaults to True; ``timeout=None`` means no deadline.
    Returns the response or raises RpcError.
    """
    return _unary_response(
        "unary_unary",
        request,
        target,
        method,
        request_serializer,
        response_deserializer,
        options,
        channel_credentials,
        insecure,
        call_credentials,
        compression,
        wait_for_ready,
        timeout,
        metadata,
        _registered_method,
    )


@experimental_api
def unary_stream(
    request: Any,
    target: str,
    method: str,
    request_serializer: SerializingFunction | None = None,
    response_deserializer: DeserializingFunction | None = None,
    options: Sequence[ChannelArgumentType] = (),
    channel_credentials: _api.ChannelCredentials | None = None,
    insecure: bool = False,
    call_credentials: _api.CallCredentials | None = None,
    compression: _api.Compression | None = None,
    wait_for_ready: bool | None = None,
    timeout: float | None = None,
    metadata: MetadataType | None = None,
    _registered_method: bool | None = False,
) -> Iterator[Any]:
    """Make one unary-stream call to ``target``; return a Call that iterates
    over the responses. The channel is closed when the stream ends."""
    return _stream_response(
        "unary_stream",
        request,
        target,
        method,
        request_serializer,
        response_deserializer,
        options,
        channel_credentials,
        insecure,
        call_credentials,
        compression,
        wait_for_ready,
        timeout,
        metadata,
        _registered_method,
    )


@experimental_api
def stream_unary(
    request_iterator: RequestIterableType,
    target: str,
    method: str,
    request_serializer: SerializingFunction | None = None,
    response_deserializer: DeserializingFunction | None = None,
    options: Sequence[ChannelArgumentType] = (),
    channel_credentials: _api.ChannelCredentials | None = None,
    insecure: bool = False,
    call_credentials: _api.CallCredentials | None = None,
    compression: _api.Compression | None = None,
    wait_for_ready: bool | None = None,
    timeout: float | None = None,
    metadata: MetadataType | None = None,
    _registered_method: bool | None = False,
) -> Any:
    """Make one stream-unary call to ``target``; return the response."""
    return _unary_response(
        "stream_unary",
        request_iterator,
        target,
        method,
        request_serializer,
        response_deserializer,
        options,
        channel_credentials,
        insecure,
        call_credentials,
        compression,
        wait_for_ready,
        timeout,
        metadata,
        _registered_method,
    )


@experimental_api
def stream_stream(
    request_iterator: RequestIterableType,
    target: str,
    method: str,
    request_serializer: SerializingFunction | None = None,
    response_deserializer: DeserializingFunction | None = None,
    options: Sequence[ChannelArgumentType] = (),
    channel_credentials: _api.ChannelCredentials | None = None,
    insecure: bool = False,
    call_credentials: _api.CallCredentials | None = None,
    compression: _api.Compression | None = None,
    wait_for_ready: bool | None = None,
    timeout: float | None = None,
    metadata: MetadataType | None = None,
    _registered_method: bool | None = False,
) -> Iterator[Any]:
    """Make one stream-stream call to ``target``; return a Call that iterates
    over the responses. The channel is closed when the stream ends."""
    return _stream_response(
        "stream_stream",
        request_iterator,
        target,
        method,
        request_serializer,
        response_deserializer,
        options,
        channel_credentials,
        insecure,
        call_credentials,
        compression,
        wait_for_ready,
        timeout,
        metadata,
        _registered_method,
    )
