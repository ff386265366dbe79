"""The engine-independent public surface of grpc_green.

Everything here is pure Python: the enums, exceptions and abstract interfaces
of grpcio's synchronous API, with the same names, values and method
signatures, so that code written against ``grpc`` type-checks and
``isinstance``-checks against ``grpc_green`` the same way. Concrete channels,
servers, contexts and futures live in the engine-backed modules and subclass
the interfaces defined here.
"""

import abc
import enum
import typing
from typing import Any, Protocol

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
    def cancel(self):
        """Try to cancel; return True if cancelled, False if already done."""
        raise NotImplementedError()

    @abc.abstractmethod
    def cancelled(self):
        """Whether the computation was cancelled before it finished."""
        raise NotImplementedError()

    @abc.abstractmethod
    def running(self):
        """Whether the computation is still running."""
        raise NotImplementedError()

    @abc.abstractmethod
    def done(self):
        """Whether the computation finished or was cancelled."""
        raise NotImplementedError()

    @abc.abstractmethod
    def result(self, timeout=None):
        """Block until done and return the value (or raise its exception).

        Raises FutureTimeoutError after ``timeout`` seconds and
        FutureCancelledError if the computation was cancelled.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    def exception(self, timeout=None):
        """Block until done and return the raised exception, or None."""
        raise NotImplementedError()

    @abc.abstractmethod
    def traceback(self, timeout=None):
        """Block until done and return the exception's traceback, or None."""
        raise NotImplementedError()

    @abc.abstractmethod
    def add_done_callback(self, fn):
        """Call ``fn(future)`` when done (immediately if already done)."""
        raise NotImplementedError()


############################## RPC contexts ####################################


class Status(abc.ABC):
    """An RPC status, as passed to ``ServicerContext.abort_with_status``.

    Implementations expose the attributes ``code`` (a StatusCode),
    ``details`` (a str) and ``trailing_metadata`` (metadata pairs).
    """


class RpcContext(abc.ABC):
    """Information about, and control of, a single RPC."""

    @abc.abstractmethod
    def is_active(self):
        """Whether the RPC is still in progress."""
        raise NotImplementedError()

    @abc.abstractmethod
    def time_remaining(self):
        """Seconds left before the deadline, or None without a deadline."""
        raise NotImplementedError()

    @abc.abstractmethod
    def cancel(self):
        """Cancel the RPC; no effect if it already terminated."""
        raise NotImplementedError()

    @abc.abstractmethod
    def add_callback(self, callback):
        """Run ``callback()`` when the RPC terminates.

        Returns False if the RPC already terminated (callback not registered).
        """
        raise NotImplementedError()


class Call(RpcContext, metaclass=abc.ABCMeta):
    """Client-side view of an RPC."""

    @abc.abstractmethod
    def initial_metadata(self):
        """Block until the server's initial metadata arrives; return it."""
        raise NotImplementedError()

    @abc.abstractmethod
    def trailing_metadata(self):
        """Block until the server's trailing metadata arrives; return it."""
        raise NotImplementedError()

    @abc.abstractmethod
    def code(self):
        """Block until the RPC ends; return its StatusCode."""
        raise NotImplementedError()

    @abc.abstractmethod
    def details(self):
        """Block until the RPC ends; return its status details string."""
        raise NotImplementedError()


class ServicerContext(RpcContext, metaclass=abc.ABCMeta):
    """Server-side context handed to method implementations."""

    @abc.abstractmethod
    def invocation_metadata(self):
        """The metadata the client sent with the call."""
        raise NotImplementedError()

    @abc.abstractmethod
    def peer(self):
        """A string identifying the client, e.g. ``ipv4:127.0.0.1:5000``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def peer_identities(self):
        """Authenticated identities of the peer, or None if unauthenticated."""
        raise NotImplementedError()

    @abc.abstractmethod
    def peer_identity_key(self):
        """Name of the auth property that identifies the peer, or None."""
        raise NotImplementedError()

    @abc.abstractmethod
    def auth_context(self):
        """Auth properties of the call as a dict of str -> list of bytes."""
        raise NotImplementedError()

    def set_compression(self, compression):
        """Choose the compression algorithm for the whole call."""
        raise NotImplementedError()

    @abc.abstractmethod
    def send_initial_metadata(self, initial_metadata):
        """Send initial metadata to the client now."""
        raise NotImplementedError()

    @abc.abstractmethod
    def set_trailing_metadata(self, trailing_metadata):
        """Set the trailing metadata sent when the RPC completes."""
        raise NotImplementedError()

    def trailing_metadata(self):
        """The trailing metadata currently set for the RPC."""
        raise NotImplementedError()

    @abc.abstractmethod
    def abort(self, code, details):
        """End the RPC with a non-OK ``code`` and ``details``; always raises."""
        raise NotImplementedError()

    @abc.abstractmethod
    def abort_with_status(self, status):
        """End the RPC with a ``Status`` (code, details, trailing metadata).

        Always raises.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    def set_code(self, code):
        """Set the StatusCode sent when the RPC completes."""
        raise NotImplementedError()

    @abc.abstractmethod
    def set_details(self, details):
        """Set the details string sent when the RPC completes."""
        raise NotImplementedError()

    def code(self):
        """The StatusCode currently set for the RPC."""
        raise NotImplementedError()

    def details(self):
        """The details string currently set for the RPC."""
        raise NotImplementedError()

    def disable_next_message_compression(self):
        """Send the next response message uncompressed."""
        raise NotImplementedError()


########################## Client-side interfaces ##############################


class ClientCallDetails(abc.ABC):
    """What an interceptor sees of an outgoing RPC.

    Implementations expose ``method``, ``timeout``, ``metadata``,
    ``credentials``, ``wait_for_ready`` and ``compression``.
    """


class UnaryUnaryClientInterceptor(abc.ABC):
    """Intercepts unary-unary invocations."""

    @abc.abstractmethod
    def intercept_unary_unary(self, continuation, client_call_details, request):
        """Intercept a call; ``continuation(details, request)`` proceeds.

        Must return an object that is both a Call and a Future.
        """
        raise NotImplementedError()


class UnaryStreamClientInterceptor(abc.ABC):
    """Intercepts unary-stream invocations."""

    @abc.abstractmethod
    def intercept_unary_stream(self, continuation, client_call_details, request):
        """Intercept a call; ``continuation(details, request)`` proceeds.

        Must return an object that is both a Call and a response iterator.
        """
        raise NotImplementedError()


class StreamUnaryClientInterceptor(abc.ABC):
    """Intercepts stream-unary invocations."""

    @abc.abstractmethod
    def intercept_stream_unary(
        self, continuation, client_call_details, request_iterator
    ):
        """Intercept a call; ``continuation(details, request_iterator)``.

        Must return an object that is both a Call and a Future.
        """
        raise NotImplementedError()


class StreamStreamClientInterceptor(abc.ABC):
    """Intercepts stream-stream invocations."""

    @abc.abstractmethod
    def intercept_stream_stream(
        self, continuation, client_call_details, request_iterator
    ):
        """Intercept a call; ``continuation(details, request_iterator)``.

        Must return an object that is both a Call and a response iterator.
        """
        raise NotImplementedError()


class UnaryUnaryMultiCallable(abc.ABC):
    """Invokes a unary-unary method."""

    @abc.abstractmethod
    def __call__(
        self,
        request,
        timeout=None,
        metadata=None,
        credentials=None,
        wait_for_ready=None,
        compression=None,
    ):
        """Block until the RPC ends; return the response or raise RpcError."""
        raise NotImplementedError()

    @abc.abstractmethod
    def with_call(
        self,
        request,
        timeout=None,
        metadata=None,
        credentials=None,
        wait_for_ready=None,
        compression=None,
    ):
        """Like ``__call__`` but return ``(response, call)``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def future(
        self,
        request,
        timeout=None,
        metadata=None,
        credentials=None,
        wait_for_ready=None,
        compression=None,
    ):
        """Start the RPC; return an object that is a Call and a Future."""
        raise NotImplementedError()


class UnaryStreamMultiCallable(abc.ABC):
    """Invokes a unary-stream method."""

    @abc.abstractmethod
    def __call__(
        self,
        request,
        timeout=None,
        metadata=None,
        credentials=None,
        wait_for_ready=None,
        compression=None,
    ):
        """Start the RPC; return a Call that iterates over the responses."""
        raise NotImplementedError()


class StreamUnaryMultiCallable(abc.ABC):
    """Invokes a stream-unary method."""

    @abc.abstractmethod
    def __call__(
        self,
        request_iterator,
        timeout=None,
        metadata=None,
        credentials=None,
        wait_for_ready=None,
        compression=None,
    ):
        """Block until the RPC ends; return the response or raise RpcError."""
        raise NotImplementedError()

    @abc.abstractmethod
    def with_call(
        self,
        request_iterator,
        timeout=None,
        metadata=None,
        credentials=None,
        wait_for_ready=None,
        compression=None,
    ):
        """Like ``__call__`` but return ``(response, call)``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def future(
        self,
        request_iterator,
        timeout=None,
        metadata=None,
        credentials=None,
        wait_for_ready=None,
        compression=None,
    ):
        """Start the RPC; return an object that is a Call and a Future."""
        raise NotImplementedError()


class StreamStreamMultiCallable(abc.ABC):
    """Invokes a stream-stream method."""

    @abc.abstractmethod
    def __call__(
        self,
        request_iterator,
        timeout=None,
        metadata=None,
        credentials=None,
        wait_for_ready=None,
        compression=None,
    ):
        """Start the RPC; return a Call that iterates over the responses."""
        raise NotImplementedError()


class Channel(abc.ABC):
    """A client connection to a target; makes multi-callables.

    Usable as a context manager (closed on exit).
    """

    @abc.abstractmethod
    def subscribe(self, callback, try_to_connect=False):
        """Call ``callback(ChannelConnectivity)`` now and on every change."""
        raise NotImplementedError()

    @abc.abstractmethod
    def unsubscribe(self, callback):
        """Stop calling a callback registered with ``subscribe``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def unary_unary(
        self,
        method,
        request_serializer=None,
        response_deserializer=None,
        _registered_method=False,
    ):
        """Return a UnaryUnaryMultiCallable for ``method`` ('/pkg.Svc/M')."""
        raise NotImplementedError()

    @abc.abstractmethod
    def unary_stream(
        self,
        method,
        request_serializer=None,
        response_deserializer=None,
        _registered_method=False,
    ):
        """Return a UnaryStreamMultiCallable for ``method``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def stream_unary(
        self,
        method,
        request_serializer=None,
        response_deserializer=None,
        _registered_method=False,
    ):
        """Return a StreamUnaryMultiCallable for ``method``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def stream_stream(
        self,
        method,
        request_serializer=None,
        response_deserializer=None,
        _registered_method=False,
    ):
        """Return a StreamStreamMultiCallable for ``method``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def close(self):
        """Close the channel, terminating its active RPCs. Idempotent."""
        raise NotImplementedError()

    def __enter__(self):
        raise NotImplementedError()

    def __exit__(self, exc_type, exc_val, exc_tb):
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


@typing.runtime_checkable
class HandlerCallDetails(Protocol):
    """What handler lookup sees of an incoming RPC."""

    method: str
    invocation_metadata: Any


class GenericRpcHandler(abc.ABC):
    """Serves any number of RPC methods."""

    @abc.abstractmethod
    def service(self, handler_call_details):
        """Return the RpcMethodHandler for the call, or None to decline."""
        raise NotImplementedError()


class ServiceRpcHandler(GenericRpcHandler, metaclass=abc.ABCMeta):
    """Serves the methods ``/<service_name()>/<Method>`` of one service."""

    @abc.abstractmethod
    def service_name(self):
        """The fully qualified service name, e.g. ``pkg.Service``."""
        raise NotImplementedError()


class ServerInterceptor(abc.ABC):
    """Intercepts incoming RPCs before a handler is chosen."""

    @abc.abstractmethod
    def intercept_service(self, continuation, handler_call_details):
        """Return an RpcMethodHandler (or None to decline).

        ``continuation(handler_call_details)`` runs the rest of the chain and
        the handler lookup.
        """
        raise NotImplementedError()


class Server(abc.ABC):
    """Serves RPCs."""

    @abc.abstractmethod
    def add_generic_rpc_handlers(self, generic_rpc_handlers):
        """Register an iterable of GenericRpcHandlers (before ``start``)."""
        raise NotImplementedError()

    def add_registered_method_handlers(  # noqa: B027
        self, service_name, method_handlers
    ):
        """Register a ``{method name: RpcMethodHandler}`` dict for a service.

        Registered handlers take precedence over generic handlers for the
        same method. Only valid before ``start``.
        """

    @abc.abstractmethod
    def add_insecure_port(self, address):
        """Listen on ``address`` without TLS; return the bound port."""
        raise NotImplementedError()

    @abc.abstractmethod
    def add_secure_port(self, address, server_credentials):
        """Listen on ``address`` with ``server_credentials``; return the port."""
        raise NotImplementedError()

    @abc.abstractmethod
    def start(self):
        """Start serving. Call once."""
        raise NotImplementedError()

    @abc.abstractmethod
    def stop(self, grace):
        """Stop accepting RPCs; let running ones finish for ``grace`` seconds.

        ``grace=None`` aborts running RPCs at once. Returns an event that is
        set once the server has fully stopped. Idempotent; the most
        restrictive grace wins.
        """
        raise NotImplementedError()

    def wait_for_termination(self, timeout=None):
        """Block until the server stops or ``timeout`` elapses.

        Returns True if it timed out.
        """
        raise NotImplementedError()


##################### Credentials and authentication ##########################


class ChannelCredentials:
    """Opaque credentials for a secure channel."""

    def __init__(self, credentials):
        self._credentials = credentials


class CallCredentials:
    """Opaque per-call credentials (only sent over secure channels)."""

    def __init__(self, credentials):
        self._credentials = credentials


class ServerCredentials:
    """Opaque credentials for a secure server port."""

    def __init__(self, credentials):
        self._credentials = credentials


class ServerCertificateConfiguration:
    """Opaque certificate configuration for a TLS server."""

    def __init__(self, certificate_configuration):
        self._certificate_configuration = certificate_configuration


class AuthMetadataContext(abc.ABC):
    """What an AuthMetadataPlugin is told about the RPC.

    Implementations expose ``service_url`` and ``method_name``.
    """


class AuthMetadataPluginCallback(abc.ABC):
    """Callback an AuthMetadataPlugin uses to hand back its result."""

    def __call__(self, metadata, error):
        """Deliver ``metadata`` on success, or an exception as ``error``."""
        raise NotImplementedError()


class AuthMetadataPlugin(abc.ABC):
    """User-supplied producer of authentication metadata."""

    def __call__(self, context, callback):
        """Compute metadata for ``context`` and pass it to ``callback``."""
        raise NotImplementedError()
