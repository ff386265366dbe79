"""The engine-independent public surface of grpc_green.

Everything here is pure Python: the enums, exceptions and abstract interfaces
of grpcio's synchronous API, with the same names, values and method
signatures, so that code written against ``grpc`` type-checks and
``isinstance``-checks against ``grpc_green`` the same way. Concrete channels,
servers, contexts and futures live in the engine-backed modules and subclass
the interfaces defined here.
"""

from __future__ import annotations

import abc
import enum
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from grpc_green._typing import (
    DeserializingFunction,
    EventType,
    MetadataType,
    NullaryCallbackType,
    RequestIterableType,
    SerializingFunction,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = (
    # enums
    "ChannelConnectivity",
    "Compression",
    "LocalConnectionType",
    "StatusCode",
    # exceptions
    "FutureCancelledError",
    "FutureTimeoutError",
    "RpcError",
    # futures and contexts
    "Call",
    "Future",
    "RpcContext",
    "ServicerContext",
    "Status",
    # client side
    "Channel",
    "ClientCallDetails",
    "StreamStreamClientInterceptor",
    "StreamStreamMultiCallable",
    "StreamUnaryClientInterceptor",
    "StreamUnaryMultiCallable",
    "UnaryStreamClientInterceptor",
    "UnaryStreamMultiCallable",
    "UnaryUnaryClientInterceptor",
    "UnaryUnaryMultiCallable",
    # server side
    "GenericRpcHandler",
    "HandlerCallDetails",
    "RpcMethodHandler",
    "Server",
    "ServerInterceptor",
    "ServiceRpcHandler",
    # credentials and authentication
    "AuthMetadataContext",
    "AuthMetadataPlugin",
    "AuthMetadataPluginCallback",
    "CallCredentials",
    "ChannelCredentials",
    "ServerCertificateConfiguration",
    "ServerCredentials",
)


################################## Enums #######################################


@enum.unique
class ChannelConnectivity(enum.Enum):
    """Connectivity state of a channel; values are ``(int, description)``."""

    IDLE = (0, "idle")
    CONNECTING = (1, "connecting")
    READY = (2, "ready")
    TRANSIENT_FAILURE = (3, "transient failure")
    SHUTDOWN = (4, "shutdown")


@enum.unique
class StatusCode(enum.Enum):
    """gRPC status codes; each value is ``(wire code, description)``.

    The integer is the ``grpc-status`` code of the gRPC protocol.
    """

    OK = (0, "ok")
    CANCELLED = (1, "cancelled")
    UNKNOWN = (2, "unknown")
    INVALID_ARGUMENT = (3, "invalid argument")
    DEADLINE_EXCEEDED = (4, "deadline exceeded")
    NOT_FOUND = (5, "not found")
    ALREADY_EXISTS = (6, "already exists")
    PERMISSION_DENIED = (7, "permission denied")
    RESOURCE_EXHAUSTED = (8, "resource exhausted")
    FAILED_PRECONDITION = (9, "failed precondition")
    ABORTED = (10, "aborted")
    OUT_OF_RANGE = (11, "out of range")
    UNIMPLEMENTED = (12, "unimplemented")
    INTERNAL = (13, "internal")
    UNAVAILABLE = (14, "unavailable")
    DATA_LOSS = (15, "data loss")
    UNAUTHENTICATED = (16, "unauthenticated")


# Wire integer -> StatusCode member (used when decoding ``grpc-status``).
_INT_TO_STATUS = {member.value[0]: member for member in StatusCode}

# Integer connectivity state -> ChannelConnectivity member.
_INT_TO_CONNECTIVITY = {member.value[0]: member for member in ChannelConnectivity}


@enum.unique
class Compression(enum.IntEnum):
    """Message compression algorithm for an RPC or a channel."""

    NoCompression = 0
    Deflate = 1
    Gzip = 2


@enum.unique
class LocalConnectionType(enum.Enum):
    """Kind of local connection for local credentials."""

    UDS = 0
    LOCAL_TCP = 1


############################### Exceptions #####################################


class FutureTimeoutError(Exception):
    """A Future method did not complete within the given timeout."""


class FutureCancelledError(Exception):
    """The computation behind a Future was cancelled."""


class RpcError(Exception):
    """An RPC terminated with a non-OK status.

    Instances raised by the runtime for a client call are also ``Call``
    objects, so ``code()``, ``details()`` and the metadata are available.
    """


################################# Future #######################################


class Future(abc.ABC):
    """A computation that may not have finished yet."""

    @abc.abstractmethod
    def cancel(self) -> bool:
        """Try to cancel; return True if cancelled, False if already done."""
        raise NotImplementedError()

    @abc.abstractmethod
    def cancelled(self) -> bool:
        """Whether the computation was cancelled before it finished."""
        raise NotImplementedError()

    @abc.abstractmethod
    def running(self) -> bool:
        """Whether the computation is still running."""
        raise NotImplementedError()

    @abc.abstractmethod
    def done(self) -> bool:
        """Whether the computation finished or was cancelled."""
        raise NotImplementedError()

    @abc.abstractmethod
    def result(self, timeout: float | None = None) -> Any:
        """Block until done and return the value (or raise its exception).

        Raises FutureTimeoutError after ``timeout`` seconds and
        FutureCancelledError if the computation was cancelled.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    def exception(self, timeout: float | None = None) -> Exception | None:
        """Block until done and return the raised exception, or None."""
        raise NotImplementedError()

    @abc.abstractmethod
    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        """Block until done and return the exception's traceback, or None."""
        raise NotImplementedError()

    @abc.abstractmethod
    def add_done_callback(self, fn: Callable[[Future], None]) -> None:
        """Call ``fn(future)`` when done (immediately if already done)."""
        raise NotImplementedError()


############################## RPC contexts ####################################


class Status(abc.ABC):
    """An RPC status, as passed to ``ServicerContext.abort_with_status``.

    Implementations expose the attributes ``code`` (a StatusCode),
    ``details`` (a str) and ``trailing_metadata`` (metadata pairs).
    """

    code: StatusCode
    details: str
    trailing_metadata: MetadataType | None


class RpcContext(abc.ABC):
    """Information about, and control of, a single RPC."""

    @abc.abstractmethod
    def is_active(self) -> bool:
        """Whether the RPC is still in progress."""
        raise NotImplementedError()

    @abc.abstractmethod
    def time_remaining(self) -> float | None:
        """Seconds left before the deadline, or None without a deadline."""
        raise NotImplementedError()

    @abc.abstractmethod
    def cancel(self) -> bool | None:
        """Cancel the RPC; no effect if it already terminated."""
        raise NotImplementedError()

    @abc.abstractmethod
    def add_callback(self, callback: NullaryCallbackType) -> bool:
        """Run ``callback()`` when the RPC terminates.

        Returns False if the RPC already terminated (callback not registered).
        """
        raise NotImplementedError()


class Call(RpcContext, metaclass=abc.ABCMeta):
    """Client-side view of an RPC."""

    @abc.abstractmethod
    def initial_metadata(self) -> MetadataType | None:
        """Block until the server's initial metadata arrives; return it."""
        raise NotImplementedError()

    @abc.abstractmethod
    def trailing_metadata(self) -> MetadataType | None:
        """Block until the server's trailing metadata arrives; return it."""
        raise NotImplementedError()

    @abc.abstractmethod
    def code(self) -> StatusCode | None:
        """Block until the RPC ends; return its StatusCode."""
        raise NotImplementedError()

    @abc.abstractmethod
    def details(self) -> str | None:
        """Block until the RPC ends; return its status details string."""
        raise NotImplementedError()


class ServicerContext(RpcContext, metaclass=abc.ABCMeta):
    """Server-side context handed to method implementations."""

    @abc.abstractmethod
    def invocation_metadata(self) -> MetadataType | None:
        """The metadata the client sent with the call."""
        raise NotImplementedError()

    @abc.abstractmethod
    def peer(self) -> str:
        """A string identifying the client, e.g. ``ipv4:127.0.0.1:5000``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def peer_identities(self) -> Sequence[bytes] | None:
        """Authenticated identities of the peer, or None if unauthenticated."""
        raise NotImplementedError()

    @abc.abstractmethod
    def peer_identity_key(self) -> str | None:
        """Name of the auth property that identifies the peer, or None."""
        raise NotImplementedError()

    @abc.abstractmethod
    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        """Auth properties of the call as a dict of str -> list of bytes."""
        raise NotImplementedError()

    def set_compression(self, compression: Compression) -> None:
        """Choose the compression algorithm for the whole call."""
        raise NotImplementedError()

    @abc.abstractmethod
    def send_initial_metadata(self, initial_metadata: MetadataType) -> None:
        """Send initial metadata to the client now."""
        raise NotImplementedError()

    @abc.abstractmethod
    def set_trailing_metadata(self, trailing_metadata: MetadataType) -> None:
        """Set the trailing metadata sent when the RPC completes."""
        raise NotImplementedError()

    def trailing_metadata(self) -> MetadataType | None:
        """The trailing metadata currently set for the RPC."""
        raise NotImplementedError()

    @abc.abstractmethod
    def abort(self, code: StatusCode, details: str) -> NoReturn:
        """End the RPC with a non-OK ``code`` and ``details``; always raises."""
        raise NotImplementedError()

    @abc.abstractmethod
    def abort_with_status(self, status: Status) -> NoReturn:
        """End the RPC with a ``Status`` (code, details, trailing metadata).

        Always raises.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    def set_code(self, code: StatusCode) -> None:
        """Set the StatusCode sent when the RPC completes."""
        raise NotImplementedError()

    @abc.abstractmethod
    def set_details(self, details: str) -> None:
        """Set the details string sent when the RPC completes."""
        raise NotImplementedError()

    def code(self) -> StatusCode | None:
        """The StatusCode currently set for the RPC."""
        raise NotImplementedError()

    def details(self) -> bytes | None:
        """The details currently set for the RPC (encoded, as grpcio keeps them)."""
        raise NotImplementedError()

    def disable_next_message_compression(self) -> None:
        """Send the next response message uncompressed."""
        raise NotImplementedError()


########################## Client-side interfaces ##############################


class ClientCallDetails(abc.ABC):
    """What an interceptor sees of an outgoing RPC.

    Implementations expose ``method``, ``timeout``, ``metadata``,
    ``credentials``, ``wait_for_ready`` and ``compression``.
    """

    method: str
    timeout: float | None
    metadata: MetadataType | None
    credentials: CallCredentials | None
    wait_for_ready: bool | None
    compression: Compression | None


class UnaryUnaryClientInterceptor(abc.ABC):
    """Intercepts unary-unary invocations."""

    @abc.abstractmethod
    def intercept_unary_unary(
        self,
        continuation: Callable[[ClientCallDetails, Any], Any],
        client_call_details: ClientCallDetails,
        request: Any,
    ) -> Any:
        """Intercept a call; ``continuation(details, request)`` proceeds.

        Must return an object that is both a Call and a Future.
        """
        raise NotImplementedError()


class UnaryStreamClientInterceptor(abc.ABC):
    """Intercepts unary-stream invocations."""

    @abc.abstractmethod
    def intercept_unary_stream(
        self,
        continuation: Callable[[ClientCallDetails, Any], Any],
        client_call_details: ClientCallDetails,
        request: Any,
    ) -> Any:
        """Intercept a call; ``continuation(details, request)`` proceeds.

        Must return an object that is both a Call and a response iterator.
        """
        raise NotImplementedError()


class StreamUnaryClientInterceptor(abc.ABC):
    """Intercepts stream-unary invocations."""

    @abc.abstractmethod
    def intercept_stream_unary(
        self,
        continuation: Callable[[ClientCallDetails, RequestIterableType], Any],
        client_call_details: ClientCallDetails,
        request_iterator: RequestIterableType,
    ) -> Any:
        """Intercept a call; ``continuation(details, request_iterator)``.

        Must return an object that is both a Call and a Future.
        """
        raise NotImplementedError()


class StreamStreamClientInterceptor(abc.ABC):
    """Intercepts stream-stream invocations."""

    @abc.abstractmethod
    def intercept_stream_stream(
        self,
        continuation: Callable[[ClientCallDetails, RequestIterableType], Any],
        client_call_details: ClientCallDetails,
        request_iterator: RequestIterableType,
    ) -> Any:
        """Intercept a call; ``continuation(details, request_iterator)``.

        Must return an object that is both a Call and a response iterator.
        """
        raise NotImplementedError()


class UnaryUnaryMultiCallable(abc.ABC):
    """Invokes a unary-unary method."""

    @abc.abstractmethod
    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: Compression | None = None,
    ) -> Any:
        """Block until the RPC ends; return the response or raise RpcError."""
        raise NotImplementedError()

    @abc.abstractmethod
    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: Compression | None = None,
    ) -> tuple[Any, Call]:
        """Like ``__call__`` but return ``(response, call)``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def future(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: Compression | None = None,
    ) -> Any:
        """Start the RPC; return an object that is a Call and a Future."""
        raise NotImplementedError()


class UnaryStreamMultiCallable(abc.ABC):
    """Invokes a unary-stream method."""

    @abc.abstractmethod
    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: Compression | None = None,
    ) -> Any:
        """Start the RPC; return a Call that iterates over the responses."""
        raise NotImplementedError()


class StreamUnaryMultiCallable(abc.ABC):
    """Invokes a stream-unary method."""

    @abc.abstractmethod
    def __call__(
        self,
        request_iterator: RequestIterableType,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: Compression | None = None,
    ) -> Any:
        """Block until the RPC ends; return the response or raise RpcError."""
        raise NotImplementedError()

    @abc.abstractmethod
    def with_call(
        self,
        request_iterator: RequestIterableType,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: Compression | None = None,
    ) -> tuple[Any, Call]:
        """Like ``__call__`` but return ``(response, call)``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def future(
        self,
        request_iterator: RequestIterableType,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: Compression | None = None,
    ) -> Any:
        """Start the RPC; return an object that is a Call and a Future."""
        raise NotImplementedError()


class StreamStreamMultiCallable(abc.ABC):
    """Invokes a stream-stream method."""

    @abc.abstractmethod
    def __call__(
        self,
        request_iterator: RequestIterableType,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: Compression | None = None,
    ) -> Any:
        """Start the RPC; return a Call that iterates over the responses."""
        raise NotImplementedError()


class Channel(abc.ABC):
    """A client connection to a target; makes multi-callables.

    Usable as a context manager (closed on exit).
    """

    @abc.abstractmethod
    def subscribe(
        self, callback: Callable[[ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        """Call ``callback(ChannelConnectivity)`` now and on every change."""
        raise NotImplementedError()

    @abc.abstractmethod
    def unsubscribe(self, callback: Callable[[ChannelConnectivity], None]) -> None:
        """Stop calling a callback registered with ``subscribe``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def unary_unary(
        self,
        method: str,
        request_serializer: SerializingFunction | None = None,
        response_deserializer: DeserializingFunction | None = None,
        _registered_method: bool | None = False,
    ) -> UnaryUnaryMultiCallable:
        """Return a UnaryUnaryMultiCallable for ``method`` ('/pkg.Svc/M')."""
        raise NotImplementedError()

    @abc.abstractmethod
    def unary_stream(
        self,
        method: str,
        request_serializer: SerializingFunction | None = None,
        response_deserializer: DeserializingFunction | None = None,
        _registered_method: bool | None = False,
    ) -> UnaryStreamMultiCallable:
        """Return a UnaryStreamMultiCallable for ``method``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def stream_unary(
        self,
        method: str,
        request_serializer: SerializingFunction | None = None,
        response_deserializer: DeserializingFunction | None = None,
        _registered_method: bool | None = False,
    ) -> StreamUnaryMultiCallable:
        """Return a StreamUnaryMultiCallable for ``method``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def stream_stream(
        self,
        method: str,
        request_serializer: SerializingFunction | None = None,
        response_deserializer: DeserializingFunction | None = None,
        _registered_method: bool | None = False,
    ) -> StreamStreamMultiCallable:
        """Return a StreamStreamMultiCallable for ``method``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def close(self) -> None:
        """Close the channel, terminating its active RPCs. Idempotent."""
        raise NotImplementedError()

    def __enter__(self) -> Self:
        raise NotImplementedError()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        raise NotImplementedError()


########################## Server-side interfaces ##############################


class RpcMethodHandler(abc.ABC):
    """The implementation of one RPC method.

    Implementations expose ``request_streaming``, ``response_streaming``,
    ``request_deserializer``, ``response_serializer`` and the four behaviour
    slots ``unary_unary``, ``unary_stream``, ``stream_unary`` and
    ``stream_stream``, exactly one of which is set (the one matching the
    streaming flags).
    """

    request_streaming: bool
    response_streaming: bool
    request_deserializer: DeserializingFunction | None
    response_serializer: SerializingFunction | None
    unary_unary: Callable[[Any, ServicerContext], Any] | None
    unary_stream: Callable[[Any, ServicerContext], Iterable[Any]] | None
    stream_unary: Callable[[Iterator[Any], ServicerContext], Any] | None
    stream_stream: Callable[[Iterator[Any], ServicerContext], Iterable[Any]] | None


@typing.runtime_checkable
class HandlerCallDetails(Protocol):
    """What handler lookup sees of an incoming RPC."""

    method: str
    invocation_metadata: Any


class GenericRpcHandler(abc.ABC):
    """Serves any number of RPC methods."""

    @abc.abstractmethod
    def service(self, handler_call_details: HandlerCallDetails) -> RpcMethodHandler | None:
        """Return the RpcMethodHandler for the call, or None to decline."""
        raise NotImplementedError()


class ServiceRpcHandler(GenericRpcHandler, metaclass=abc.ABCMeta):
    """Serves the methods ``/<service_name()>/<Method>`` of one service."""

    @abc.abstractmethod
    def service_name(self) -> str:
        """The fully qualified service name, e.g. ``pkg.Service``."""
        raise NotImplementedError()


class ServerInterceptor(abc.ABC):
    """Intercepts incoming RPCs before a handler is chosen."""

    @abc.abstractmethod
    def intercept_service(
        self,
        continuation: Callable[[HandlerCallDetails], RpcMethodHandler | None],
        handler_call_details: HandlerCallDetails,
    ) -> RpcMethodHandler | None:
        """Return an RpcMethodHandler (or None to decline).

        ``continuation(handler_call_details)`` runs the rest of the chain and
        the handler lookup.
        """
        raise NotImplementedError()


class Server(abc.ABC):
    """Serves RPCs."""

    @abc.abstractmethod
    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[GenericRpcHandler]) -> None:
        """Register an iterable of GenericRpcHandlers (before ``start``)."""
        raise NotImplementedError()

    def add_registered_method_handlers(  # noqa: B027
        self, service_name: str, method_handlers: Mapping[str, RpcMethodHandler]
    ) -> None:
        """Register a ``{method name: RpcMethodHandler}`` dict for a service.

        Registered handlers take precedence over generic handlers for the
        same method. Only valid before ``start``.
        """

    @abc.abstractmethod
    def add_insecure_port(self, address: str) -> int:
        """Listen on ``address`` without TLS; return the bound port."""
        raise NotImplementedError()

    @abc.abstractmethod
    def add_secure_port(self, address: str, server_credentials: ServerCredentials) -> int:
        """Listen on ``address`` with ``server_credentials``; return the port."""
        raise NotImplementedError()

    @abc.abstractmethod
    def start(self) -> None:
        """Start serving. Call once."""
        raise NotImplementedError()

    @abc.abstractmethod
    def stop(self, grace: float | None) -> EventType:
        """Stop accepting RPCs; let running ones finish for ``grace`` seconds.

        ``grace=None`` aborts running RPCs at once. Returns an event that is
        set once the server has fully stopped. Idempotent; the most
        restrictive grace wins.
        """
        raise NotImplementedError()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until the server stops or ``timeout`` elapses.

        Returns True if it timed out.
        """
        raise NotImplementedError()


##################### Credentials and authentication ##########################


class ChannelCredentials:
    """Opaque credentials for a secure channel."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials


class CallCredentials:
    """Opaque per-call credentials (only sent over secure channels)."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials


class ServerCredentials:
    """Opaque credentials for a secure server port."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials


class ServerCertificateConfiguration:
    """Opaque certificate configuration for a TLS server."""

    def __init__(self, certificate_configuration: Any) -> None:
        self._certificate_configuration = certificate_configuration


class AuthMetadataContext(abc.ABC):
    """What an AuthMetadataPlugin is told about the RPC.

    Implementations expose ``service_url`` and ``method_name``.
    """

    service_url: str
    method_name: str


class AuthMetadataPluginCallback(abc.ABC):  # noqa: B024  (grpcio's: no abstract method)
    """Callback an AuthMetadataPlugin uses to hand back its result."""

    def __call__(self, metadata: MetadataType, error: Exception | None) -> None:
        """Deliver ``metadata`` on success, or an exception as ``error``."""
        raise NotImplementedError()


class AuthMetadataPlugin(abc.ABC):  # noqa: B024  (grpcio's: no abstract method)
    """User-supplied producer of authentication metadata."""

    def __call__(self, context: AuthMetadataContext, callback: AuthMetadataPluginCallback) -> None:
        """Compute metadata for ``context`` and pass it to ``callback``."""
        raise NotImplementedError()
