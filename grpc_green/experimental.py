"""grpcio's experimental names that generated code and applications use.

The single-shot functions ``unary_unary``, ``unary_stream``, ``stream_unary``
and ``stream_stream`` are what the static methods of the experimental service
class in a generated ``_pb2_grpc.py`` call. Unlike grpcio, which keeps a
process-wide cache of channels for them, grpc_green opens a channel for each
call and closes it when the call is over (for the response-streaming ones:
when the response iterator is exhausted, fails or is cancelled).

``monkey.patch_grpc()`` installs this module as ``grpc.experimental``.
"""

import functools
import warnings

from grpc_green import _api

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


_warned = set()


def _warn_experimental(name, stacklevel):
    if name in _warned:
        return
    _warned.add(name)
    warnings.warn(
        "'{}' is an experimental API. It may change or be removed in any "
        "minor release.".format(name),
        ExperimentalApiWarning,
        stacklevel=stacklevel + 1,
    )


def experimental_api(function):
    """Decorator: warn with ExperimentalApiWarning on the first call."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        _warn_experimental(function.__name__, 2)
        return function(*args, **kwargs)

    return wrapper


# A singleton: the runtime recognises insecure credentials by identity.
_INSECURE_CHANNEL_CREDENTIALS = _api.ChannelCredentials("insecure")


def insecure_channel_credentials():
    """ChannelCredentials meaning "no transport security"."""
    return _INSECURE_CHANNEL_CREDENTIALS


def wrap_server_method_handler(wrapper, handler):
    """Return a copy of ``handler`` whose behaviour is ``wrapper(behaviour)``.

    ``None`` is passed through unchanged.
    """
    if not handler:
        return None
    if handler.request_streaming:
        slot = "stream_stream" if handler.response_streaming else "stream_unary"
    else:
        slot = "unary_stream" if handler.response_streaming else "unary_unary"
    return handler._replace(**{slot: wrapper(getattr(handler, slot))})


############################ single-shot calls #################################


def _open_channel(target, options, channel_credentials, insecure, compression):
    import grpc_green

    if insecure and channel_credentials is not None:
        raise ValueError(
            "insecure=True and channel_credentials are mutually exclusive; "
            "pass one or the other."
        )
    kwargs = {} if compression is None else {"compression": compression}
    if (
        channel_credentials is None
        or channel_credentials is _INSECURE_CHANNEL_CREDENTIALS
    ):
        # grpcio would default to TLS when neither insecure nor credentials
        # are given; grpc_green speaks plaintext HTTP/2 in that case.
        return grpc_green.insecure_channel(target, options, **kwargs)
    return grpc_green.secure_channel(target, channel_credentials, options, **kwargs)


def _call_options(call_credentials, wait_for_ready, timeout, metadata):
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

    def __init__(self, call, channel):
        self._call = call
        self._channel = channel

    def _close_channel(self):
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._call)
        except BaseException:
            self._close_channel()
            raise

    def cancel(self):
        try:
            return self._call.cancel()
        finally:
            self._close_channel()

    def is_active(self):
        return self._call.is_active()

    def time_remaining(self):
        return self._call.time_remaining()

    def add_callback(self, callback):
        return self._call.add_callback(callback)

    def initial_metadata(self):
        return self._call.initial_metadata()

    def trailing_metadata(self):
        return self._call.trailing_metadata()

    def code(self):
        return self._call.code()

    def details(self):
        return self._call.details()

    def cancelled(self):
        return self._call.cancelled()

    def running(self):
        return self._call.running()

    def done(self):
        return self._call.done()

    def result(self, timeout=None):
        return self._call.result(timeout)

    def exception(self, timeout=None):
        return self._call.exception(timeout)

    def traceback(self, timeout=None):
        return self._call.traceback(timeout)

    def add_done_callback(self, fn):
        return self._call.add_done_callback(lambda _: fn(self))

    def __getattr__(self, name):
        if name in ("_call", "_channel"):
            raise AttributeError(name)
        return getattr(self._call, name)


def _unary_response(
    kind,
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
    registered_method,
):
    channel = _open_channel(
        target, options, channel_credentials, insecure, compression
    )
    try:
        multicallable = getattr(channel, kind)(
            method,
            request_serializer=request_serializer,
            response_deserializer=response_deserializer,
            _registered_method=registered_method,
        )
        return multicallable(
            request,
            **_call_options(call_credentials, wait_for_ready, timeout, metadata)
        )
    finally:
        channel.close()


def _stream_response(
    kind,
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
    registered_method,
):
    channel = _open_channel(
        target, options, channel_credentials, insecure, compression
    )
    try:
        multicallable = getattr(channel, kind)(
            method,
            request_serializer=request_serializer,
            response_deserializer=response_deserializer,
            _registered_method=registered_method,
        )
        call = multicallable(
            request,
            **_call_options(call_credentials, wait_for_ready, timeout, metadata)
        )
    except BaseException:
        channel.close()
        raise
    return _ChannelClosingResponses(call, channel)


@experimental_api
def unary_unary(
    request,
    target,
    method,
    request_serializer=None,
    response_deserializer=None,
    options=(),
    channel_credentials=None,
    insecure=False,
    call_credentials=None,
    compression=None,
    wait_for_ready=None,
    timeout=None,
    metadata=None,
    _registered_method=False,
):
    """Make one unary-unary call to ``target`` without a user-managed channel.

    ``wait_for_ready`` defaults to True; ``timeout=None`` means no deadline.
    Returns the response or raises RpcError.
    """
    return _unary_response(
        "unary_unary", request, target, method, request_serializer,
        response_deserializer, options, channel_credentials, insecure,
        call_credentials, compression, wait_for_ready, timeout, metadata,
        _registered_method,
    )


@experimental_api
def unary_stream(
    request,
    target,
    method,
    request_serializer=None,
    response_deserializer=None,
    options=(),
    channel_credentials=None,
    insecure=False,
    call_credentials=None,
    compression=None,
    wait_for_ready=None,
    timeout=None,
    metadata=None,
    _registered_method=False,
):
    """Make one unary-stream call to ``target``; return a Call that iterates
    over the responses. The channel is closed when the stream ends."""
    return _stream_response(
        "unary_stream", request, target, method, request_serializer,
        response_deserializer, options, channel_credentials, insecure,
        call_credentials, compression, wait_for_ready, timeout, metadata,
        _registered_method,
    )


@experimental_api
def stream_unary(
    request_iterator,
    target,
    method,
    request_serializer=None,
    response_deserializer=None,
    options=(),
    channel_credentials=None,
    insecure=False,
    call_credentials=None,
    compression=None,
    wait_for_ready=None,
    timeout=None,
    metadata=None,
    _registered_method=False,
):
    """Make one stream-unary call to ``target``; return the response."""
    return _unary_response(
        "stream_unary", request_iterator, target, method, request_serializer,
        response_deserializer, options, channel_credentials, insecure,
        call_credentials, compression, wait_for_ready, timeout, metadata,
        _registered_method,
    )


@experimental_api
def stream_stream(
    request_iterator,
    target,
    method,
    request_serializer=None,
    response_deserializer=None,
    options=(),
    channel_credentials=None,
    insecure=False,
    call_credentials=None,
    compression=None,
    wait_for_ready=None,
    timeout=None,
    metadata=None,
    _registered_method=False,
):
    """Make one stream-stream call to ``target``; return a Call that iterates
    over the responses. The channel is closed when the stream ends."""
    return _stream_response(
        "stream_stream", request_iterator, target, method, request_serializer,
        response_deserializer, options, channel_credentials, insecure,
        call_credentials, compression, wait_for_ready, timeout, metadata,
        _registered_method,
    )
