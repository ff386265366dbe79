"""What the client (``_channel``) and the server (``_server``) share.

Status codes as the engine takes them, the table-driven translation of
grpcio's options into ``_core`` keyword arguments, reading and writing a
call's message stream, and applying a serializer or deserializer (grpcio
keeps the same things in ``grpc/_common.py``).

Reading and writing run once per message: the helpers here do the work
inline, with no Python call beyond those of the code they replaced. Log
records are written to the caller's logger, so they keep its name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from grpc_green import _core
from grpc_green._api import _INT_TO_STATUS, StatusCode

# ------------------------------------------------------------ status codes

# The protocol's ints, which the engine takes (call.cancel, call.respond)
# and gives (call.code).
OK: Final = StatusCode.OK.value[0]
CANCELLED: Final = StatusCode.CANCELLED.value[0]
UNKNOWN: Final = StatusCode.UNKNOWN.value[0]
UNIMPLEMENTED: Final = StatusCode.UNIMPLEMENTED.value[0]
UNAVAILABLE: Final = StatusCode.UNAVAILABLE.value[0]
INTERNAL: Final = StatusCode.INTERNAL.value[0]

# StatusCode -> int. grpcio's rule: a code that is not a StatusCode (a plain
# int, say) counts as UNKNOWN, so read it as STATUS_CODE_TO_INT.get(code,
# UNKNOWN) (inline: the server does so once per call).
STATUS_CODE_TO_INT: Final[dict[object, int]] = {member: member.value[0] for member in StatusCode}


def int_to_status_code(code: int | None) -> StatusCode:
    """The StatusCode of a wire code; UNKNOWN for one that has none."""
    return _INT_TO_STATUS.get(code, StatusCode.UNKNOWN)  # type: ignore[arg-type]


def fully_qualified_method(group: str, method: str) -> str:
    """The path of ``method`` of service ``group``; grpcio's helper of the
    same name (code written for grpcio reaches it as ``grpc._common``)."""
    return f"/{group}/{method}"


# ----------------------------------------------------------------- options

# grpcio option -> (keyword argument of _core.Channel or _core.Server,
# conversion of the value or None). Other options are ignored.
OptionTable = dict[str, tuple[str, Callable[[Any], Any] | None]]


def _milliseconds(option: str, floor: int) -> Callable[[Any], int]:
    """The conversion of a duration option in milliseconds: an int, raised
    to ``floor`` (gRPC core's floor for it); anything else raises TypeError
    (core would ignore it, and keep its default)."""

    def convert(value: Any) -> int:
        if not isinstance(value, int):
            raise TypeError(f"{option} must be an int (milliseconds), not {type(value).__name__}")
        return max(floor, value)

    return convert


_MESSAGE_AND_WINDOW: OptionTable = {
    "grpc.max_receive_message_length": ("max_receive_message_length", None),
    "grpc.max_send_message_length": ("max_send_message_length", None),
    # The per-stream HTTP/2 receive window: grpc core's name for it, and ours.
    "grpc.http2.lookahead_bytes": ("initial_window_size", None),
    "grpc.http2.initial_window_size": ("initial_window_size", None),
}
# Reconnection as gRPC core reads these (floors of 100 ms). Core takes
# min_reconnect_backoff_ms as MIN_CONNECT_TIMEOUT of the connection-backoff
# document: a connection attempt whose server has not sent its SETTINGS
# after max(that, the backoff delay) fails.
_RECONNECT: OptionTable = {
    "grpc.min_reconnect_backoff_ms": (
        "min_connect_timeout_ms",
        _milliseconds("grpc.min_reconnect_backoff_ms", 100),
    ),
    "grpc.initial_reconnect_backoff_ms": (
        "initial_backoff_ms",
        _milliseconds("grpc.initial_reconnect_backoff_ms", 100),
    ),
    "grpc.max_reconnect_backoff_ms": (
        "max_backoff_ms",
        _milliseconds("grpc.max_reconnect_backoff_ms", 100),
    ),
}
CHANNEL_OPTIONS: Final[OptionTable] = {
    **_MESSAGE_AND_WINDOW,
    **_RECONNECT,
    "grpc.default_authority": ("authority", None),
}
SERVER_OPTIONS: Final[OptionTable] = {
    **_MESSAGE_AND_WINDOW,
    "grpc.max_concurrent_streams": ("max_concurrent_streams", None),
    "grpc.so_reuseport": ("so_reuseport", bool),
    # Time a client has to send its preface and SETTINGS (0 or less: none
    # at all, as in grpcio: the connection gets GOAWAY at once).
    "grpc.server_handshake_timeout_ms": (
        "handshake_timeout_ms",
        _milliseconds("grpc.server_handshake_timeout_ms", 0),
    ),
}


def core_options(
    options: Iterable[tuple[str, Any]] | None,
    table: OptionTable,
    user_agent: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments for ``_core`` that ``options`` asks for.

    With ``user_agent`` (the channel's), ``user_agent`` is the library's part
    of the user agent, between the application's ``grpc.primary_user_agent``
    and ``grpc.secondary_user_agent`` (grpcio's order). Without it those two
    options are ignored. A key given twice: the last one counts.
    """
    kwargs: dict[str, Any] = {}
    primary = secondary = None
    for key, value in options or ():
        entry = table.get(key)
        if entry is not None:
            name, convert = entry
            kwargs[name] = value if convert is None else convert(value)
        elif key == "grpc.primary_user_agent":
            primary = value
        elif key == "grpc.secondary_user_agent":
            secondary = value
    if user_agent is not None:
        kwargs["user_agent"] = " ".join(p for p in (primary, user_agent, secondary) if p)
    return kwargs


# ------------------------------------------------------------------ codecs

FAILED: Final = object()
"""What ``transform`` returns when the serializer or deserializer raised."""


def transform(fn: Callable[[Any], Any], value: Any, logger: logging.Logger, error: str) -> Any:
    """``fn(value)``, or FAILED once what it raised is logged as ``error``."""
    try:
        return fn(value)
    except Exception:
        logger.exception(error)
        return FAILED


# --------------------------------------------------------- message streams


class MessageReader:
    """The messages coming in on a call, deserialized: the responses of a
    client's streaming call, the requests a streaming handler iterates.

    Subclasses give ``_call`` (with ``read()``: the next message as bytes,
    parking, or None once no more will come), ``_deserializer``, ``_logger``
    and ``_deserialize_error``, and say what ends the iteration.
    """

    __slots__ = ()

    _call: Any
    _deserializer: Callable[[bytes], Any] | None
    _logger: logging.Logger
    _deserialize_error: str

    def __iter__(self) -> MessageReader:
        return self

    def __next__(self) -> Any:
        try:
            raw = self._call.read()
        except _core.ForeignThreadError:
            raw = self._read_from_other_thread()
        if raw is None:
            raise self._reading_ended()
        if self._deserializer is None:
            return raw
        try:
            message = self._deserializer(raw)
        except Exception:
            self._logger.exception(self._deserialize_error)
            # The deserializer's exception stays the context (not the cause).
            raise self._deserialize_error_reported()  # noqa: B904
        if message is None:  # grpcio reads None as the deserializer's failure
            raise self._deserialize_error_reported()
        return message

    next = __next__

    def _read_from_other_thread(self) -> bytes | None:
        """``read()`` for a thread other than the call's: by default it may
        not (the ForeignThreadError goes on)."""
        raise

    def _reading_ended(self) -> BaseException:
        """What ``next()`` raises once the messages have ended: StopIteration
        for a call that ended well, an RpcError otherwise."""
        raise NotImplementedError()

    def _deserialize_error_reported(self) -> BaseException:
        """Ends the call with INTERNAL ``_deserialize_error``; returns the
        error ``next()`` raises."""
        raise NotImplementedError()


# send_messages' outcomes
SENT: Final = 0  # every message was written
CALL_ENDED: Final = 1  # call.write() turned False: the call has ended
NOT_SERIALIZED: Final = 2  # a message failed to serialize (logged); the call goes on


def send_messages(
    call: Any,
    messages: Iterable[Any] | Iterator[Any],
    serializer: Callable[[Any], Any] | None,
    logger: logging.Logger,
    serialize_error: str,
    bytes_only: bool,
) -> int:
    """Serializes and writes each of ``messages`` (the requests of a client's
    streaming call, the responses of a streaming handler) until they end or
    the call does.

    ``call.write`` parks while the HTTP/2 send window is full and turns False
    once the call has ended. With ``bytes_only`` a message that is not bytes
    once serialized counts as one that failed to serialize (without a log
    record: nothing raised). What iterating ``messages`` or ``call.write``
    raises propagates. Returns SENT, CALL_ENDED or NOT_SERIALIZED.
    """
    for message in messages:
        if serializer is not None:
            try:
                message = serializer(message)
            except Exception:
                logger.exception(serialize_error)
                return NOT_SERIALIZED
        if bytes_only and not isinstance(message, bytes):
            return NOT_SERIALIZED
        if not call.write(message):
            return CALL_ENDED
    return SENT
