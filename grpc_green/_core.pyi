"""grpc_green's engine: hub, HTTP/2 and calls (csrc/PyModule.cpp, PyChannel.cpp,
PyServer.cpp, PyMetadata.cpp).

Parameters before a ``/`` are positional only. Whatever blocks parks the
calling greenlet on this thread's hub; an object made on one thread's hub
raises RuntimeError when used from another thread.
"""

from collections.abc import Callable, Iterable
from typing import Any, Literal, final, overload

from _typeshed import ReadableBuffer
from greenlet import greenlet
from typing_extensions import disjoint_base

# Metadata as the application gives it: (key, value) pairs, values of keys
# ending in "-bin" bytes, others str.
_MetadataIn = Iterable[tuple[str | bytes, str | bytes]] | None
# Metadata as the engine gives it back: a tuple of pairs, "-bin" values bytes.
_MetadataOut = tuple[tuple[str, str | bytes], ...]

NGHTTP2_VERSION: str

class ForeignThreadError(RuntimeError):
    """An object was used from another thread than the one whose hub it belongs to."""

class InvalidMetadataError(ValueError):
    """An illegal metadata key or value (nothing was sent)."""

# --------------------------------------------------------------- the hub

def _set_hub_selector(fn: Callable[[], greenlet | None] | None, /) -> None:
    """``fn()`` -> None (native hub) or the gevent hub, asked once per thread."""

@overload
def hub_kind(create: Literal[True], /) -> Literal["native", "gevent"]: ...
@overload
def hub_kind(create: bool = False, /) -> Literal["native", "gevent"] | None: ...
def _after_fork_in_child() -> None:
    """Orphans the parent's hubs in a forked child."""

def _set_monitored(on: object, /) -> None:
    """While on, hubs keep the greenlet they last switched to."""

def _hub_states() -> list[tuple[int, int, bool, greenlet | None]]:
    """(thread id, steps, polling, greenlet last switched to) of each live native hub."""

def spawn(fn: Callable[..., object], /, *args: Any) -> None:
    """Runs ``fn(*args)`` in a pooled greenlet on this thread's hub."""

def spawn_greenlet(fn: Callable[..., object], /, *args: Any) -> greenlet:
    """A greenlet running ``fn(*args)``, started on the hub's next pass."""

def kill(glet: greenlet, exception: BaseException | type[BaseException], /) -> None:
    """The hub throws ``exception`` into ``glet`` on its next pass."""

def get_hub() -> Hub:
    """This thread's hub (made now if needed), for other threads to hand work to."""

def monotonic() -> float:
    """The clock deadlines are measured on."""

def sleep(seconds: float | None, /) -> None:
    """Parks the calling greenlet; 0 (or None) yields."""

@final
class Hub:
    """A thread's hub, for other threads to hand work to (made by ``get_hub``)."""

    @property
    def kind(self) -> Literal["native", "gevent"]: ...
    @property
    def is_current(self) -> bool:
        """True in the thread this hub belongs to."""

    @property
    def ended(self) -> bool:
        """True once its thread has ended (or in a forked child)."""

    def spawn_threadsafe(self, fn: Callable[..., object], /, *args: Any) -> None:
        """From any thread: runs ``fn(*args)`` in a greenlet on this hub, waking
        it at once. RuntimeError if the hub's thread has ended."""

@final
class Event:
    """A flag that greenlets wait on cooperatively."""

    def set(self) -> None:
        """Sets the flag and wakes every waiter, from any thread."""
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None, /) -> bool:
        """Parks the calling greenlet until set; the flag."""

# ------------------------------------------------------------ the client

@final
class Channel:
    """A connection manager for one target; calls run on the hub."""

    def __init__(
        self,
        target: str,
        max_receive_message_length: int = 4194304,  # negative: no limit
        max_send_message_length: int = -1,  # negative: no limit
        authority: str = "",  # "": the target's host and port
        user_agent: str = "grpc_green",
        initial_window_size: int = 0,  # 0: the engine's (1 MiB)
        # A connection without the server's SETTINGS after
        # max(min_connect_timeout_ms, the backoff delay) fails; reconnection
        # waits initial_backoff_ms, 1.6 times longer each failure, at most
        # max_backoff_ms.
        min_connect_timeout_ms: int = 20000,
        initial_backoff_ms: int = 1000,
        max_backoff_ms: int = 120000,
    ) -> None: ...
    def start(
        self,
        path: str,
        timeout: float | None,
        metadata: _MetadataIn,
        wait_for_ready: bool,
        request: ReadableBuffer | None,
        unary_response: bool,
        /,
    ) -> Call:
        """Starts a call; ``request`` is its one message, or None to write them."""

    def close(self) -> None:
        """Closes the connections; in-flight calls end CANCELLED."""

@final
class Call:
    """A client call whose messages are read and written one at a time
    (made by ``Channel.start``)."""

    @property
    def code(self) -> int | None:
        """Status code, None while active."""

    @property
    def details(self) -> str | None:
        """Status details, None while active."""

    def write(self, data: ReadableBuffer, /) -> bool:
        """Queues one request message; parks while the send window is full.
        False once the call has ended."""

    def done_writing(self) -> None: ...
    def read(self) -> bytes | None:
        """The next response message (parks), or None when no more will come."""

    def wait(self, timeout: float | None = None, /) -> bool:
        """True once the call has its status."""

    def initial_metadata(self) -> _MetadataOut: ...
    def trailing_metadata(self) -> _MetadataOut | None: ...
    def cancel(self, code: int, details: str, /) -> bool:
        """True if this ended the call."""

    def hub(self) -> Hub:
        """The hub the call runs on (another thread hands it work)."""

    def is_active(self) -> bool: ...
    def time_remaining(self) -> float | None: ...
    def add_done_callback(self, fn: Callable[[], object], /) -> bool:
        """``fn()`` runs in a greenlet of its own when the call ends; False if
        it has ended already (``fn`` is not kept)."""

@disjoint_base  # a C struct: no second such base in a subclass
class UnaryUnary:
    """Calling it runs one unary call: serialize, call, deserialize.

    A subclass gives ``_fail(code, details, initial_metadata,
    trailing_metadata)``, which returns the RpcError raised for a call that did
    not end OK. ``channel._core`` must be a ``Channel``.
    """

    def __init__(
        self,
        channel: Any,
        method: str,
        serializer: Callable[[Any], ReadableBuffer] | None = None,
        deserializer: Callable[[bytes], Any] | None = None,
    ) -> None: ...
    def __init_subclass__(cls) -> None: ...
    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: _MetadataIn = None,
        credentials: object = None,
        wait_for_ready: bool | None = None,
        compression: object = None,
    ) -> Any: ...
    def _invoke(
        self,
        request: Any,
        timeout: float | None,
        metadata: _MetadataIn,
        wait_for_ready: bool | None,
        /,
    ) -> tuple[Any, _MetadataOut, _MetadataOut]:
        """(response, initial_metadata, trailing_metadata); raises the RpcError
        of a call that did not end OK."""

    @property
    def _channel(self) -> Any: ...
    @property
    def _method(self) -> str: ...
    @property
    def _serializer(self) -> Callable[[Any], ReadableBuffer] | None: ...
    @property
    def _deserializer(self) -> Callable[[bytes], Any] | None: ...

# ------------------------------------------------------------ the server

@final
class Server:
    """Listening sockets and the connections they accept."""

    def __init__(
        self,
        dispatch: Callable[[ServerCall], object],
        maximum_concurrent_rpcs: int = -1,  # negative: no limit
        max_receive_message_length: int = 4194304,  # negative: no limit
        max_send_message_length: int = -1,  # negative: no limit
        max_concurrent_streams: int = 0,  # 0: nghttp2's default
        initial_window_size: int = 0,  # 0: the engine's (1 MiB)
        so_reuseport: bool = True,
        # A client that has not sent its SETTINGS by then gets GOAWAY.
        handshake_timeout_ms: int = 120000,
    ) -> None: ...
    def add_insecure_port(self, address: str, /) -> int:
        """Binds 'host:port' (port 0 picks one) and returns the port."""

    def start(self) -> None: ...
    def stop(self, grace: float | None, /) -> Event:
        """The Event set when every call and connection has ended."""

    def termination(self) -> Event:
        """The Event set when the server has stopped."""

@final
class ServerCall:
    """One RPC on the server side (given to ``dispatch``)."""

    @property
    def method(self) -> str:
        """The full method path."""

    def read_unary(self) -> bytes | None:
        """The one request message of a unary-request call, or None if it did
        not bring exactly one."""

    def read(self) -> bytes | None:
        """The next request message, or None at the end of the requests."""

    def send_initial_metadata(self, metadata: _MetadataIn, /) -> bool: ...
    def write(self, data: bytes, /) -> bool:
        """Queues one response message; parks while the send window is full."""

    def respond(
        self,
        message: bytes | None,
        code: int,
        details: str | None,
        trailing_metadata: _MetadataIn,
        /,
    ) -> bool:
        """The last message and the status."""

    def is_active(self) -> bool: ...
    def cancel(self) -> None: ...
    def add_callback(self, callback: Callable[[], object], /) -> bool: ...
    def invocation_metadata(self) -> _MetadataOut: ...
    def peer(self) -> str: ...
    def time_remaining(self) -> float | None: ...
