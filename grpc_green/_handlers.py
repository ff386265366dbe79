"""Constructors for RpcMethodHandler and generic handlers (grpcio names)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from grpc_green import _api, _utilities
from grpc_green._typing import DeserializingFunction, SerializingFunction

__all__ = (
    "method_handlers_generic_handler",
    "stream_stream_rpc_method_handler",
    "stream_unary_rpc_method_handler",
    "unary_stream_rpc_method_handler",
    "unary_unary_rpc_method_handler",
)


def _method_handler(
    request_streaming: bool,
    response_streaming: bool,
    behavior: Callable[..., Any],
    request_deserializer: DeserializingFunction | None,
    response_serializer: SerializingFunction | None,
) -> _utilities.RpcMethodHandler:
    kinds = {
        (False, False): "unary_unary",
        (False, True): "unary_stream",
        (True, False): "stream_unary",
        (True, True): "stream_stream",
    }
    behaviors: dict[str, Callable[..., Any] | None] = dict.fromkeys(kinds.values())
    behaviors[kinds[request_streaming, response_streaming]] = behavior
    return _utilities.RpcMethodHandler(
        request_streaming=request_streaming,
        response_streaming=response_streaming,
        request_deserializer=request_deserializer,
        response_serializer=response_serializer,
        **behaviors,
    )


def unary_unary_rpc_method_handler(
    behavior: Callable[[Any, _api.ServicerContext], Any],
    request_deserializer: DeserializingFunction | None = None,
    response_serializer: SerializingFunction | None = None,
) -> _utilities.RpcMethodHandler:
    """Handler for a method taking one request and returning one response.

    ``behavior(request, context)`` returns the response.
    """
    return _method_handler(False, False, behavior, request_deserializer, response_serializer)


def unary_stream_rpc_method_handler(
    behavior: Callable[[Any, _api.ServicerContext], Iterable[Any]],
    request_deserializer: DeserializingFunction | None = None,
    response_serializer: SerializingFunction | None = None,
) -> _utilities.RpcMethodHandler:
    """Handler for a method taking one request and streaming responses.

    ``behavior(request, context)`` returns an iterator of responses.
    """
    return _method_handler(False, True, behavior, request_deserializer, response_serializer)


def stream_unary_rpc_method_handler(
    behavior: Callable[[Iterator[Any], _api.ServicerContext], Any],
    request_deserializer: DeserializingFunction | None = None,
    response_serializer: SerializingFunction | None = None,
) -> _utilities.RpcMethodHandler:
    """Handler for a method taking a request stream and returning one response.

    ``behavior(request_iterator, context)`` returns the response.
    """
    return _method_handler(True, False, behavior, request_deserializer, response_serializer)


def stream_stream_rpc_method_handler(
    behavior: Callable[[Iterator[Any], _api.ServicerContext], Iterable[Any]],
    request_deserializer: DeserializingFunction | None = None,
    response_serializer: SerializingFunction | None = None,
) -> _utilities.RpcMethodHandler:
    """Handler for a method with request and response streams.

    ``behavior(request_iterator, context)`` returns an iterator of responses.
    """
    return _method_handler(True, True, behavior, request_deserializer, response_serializer)


def method_handlers_generic_handler(
    service: str, method_handlers: Mapping[str, _api.RpcMethodHandler]
) -> _utilities.DictionaryGenericHandler:
    """A GenericRpcHandler serving ``service`` from a dict mapping method
    names (without the service prefix) to RpcMethodHandlers."""
    return _utilities.DictionaryGenericHandler(service, method_handlers)
