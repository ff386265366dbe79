"""Type aliases of grpc_green's API, with grpcio's names (grpc/_typing.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeAlias

MetadataType: TypeAlias = Sequence[tuple[str, str | bytes]]
SerializingFunction: TypeAlias = Callable[[Any], bytes]
DeserializingFunction: TypeAlias = Callable[[bytes], Any]
ChannelArgumentType: TypeAlias = tuple[str, Any]
NullaryCallbackType: TypeAlias = Callable[[], None]
RequestIterableType: TypeAlias = Iterable[Any]
ResponseIterableType: TypeAlias = Iterable[Any]


class EventType(Protocol):
    """What ``Server.stop()`` returns: grpcio's is a threading.Event,
    grpc_green's a ``grpc_green.hub.Event`` (waiting parks the greenlet)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def wait(self, timeout: float | None = None, /) -> bool: ...
