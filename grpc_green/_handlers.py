"""Constructors for RpcMethodHandler and generic handlers (grpcio names)."""

from grpc_green import _utilities

__all__ = (
    "method_handlers_generic_handler",
    "stream_stream_rpc_method_handler",
    "stream_unary_rpc_method_handler",
    "unary_stream_rpc_method_handler",
    "unary_unary_rpc_method_handler",
)


def unary_unary_rpc_method_handler(
    behavior, request_deserializer=None, response_serializer=None
):
    """Handler for a method taking one request and returning one response.

    ``behavior(request, context)`` returns the response.
    """
    return _utilities.RpcMethodHandler(
        request_streaming=False,
        response_streaming=False,
        request_deserializer=request_deserializer,
        response_serializer=response_serializer,
        unary_unary=behavior,
        unary_stream=None,
        stream_unary=None,
        stream_stream=None,
    )


def unary_stream_rpc_method_handler(
    behavior, request_deserializer=None, response_serializer=None
):
    """Handler for a method taking one request and streaming responses.

    ``behavior(request, context)`` returns an iterator of responses.
    """
    return _utilities.RpcMethodHandler(
        request_streaming=False,
        response_streaming=True,
        request_deserializer=request_deserializer,
        response_serializer=response_serializer,
        unary_unary=None,
        unary_stream=behavior,
        stream_unary=None,
        stream_stream=None,
    )


def stream_unary_rpc_method_handler(
    behavior, request_deserializer=None, response_serializer=None
):
    """Handler for a method taking a request stream and returning one response.

    ``behavior(request_iterator, context)`` returns the response.
    """
    return _utilities.RpcMethodHandler(
        request_streaming=True,
        response_streaming=False,
        request_deserializer=request_deserializer,
        response_serializer=response_serializer,
        unary_unary=None,
        unary_stream=None,
        stream_unary=behavior,
        stream_stream=None,
    )


def stream_stream_rpc_method_handler(
    behavior, request_deserializer=None, response_serializer=None
):
    """Handler for a method with request and response streams.

    ``behavior(request_iterator, context)`` returns an iterator of responses.
    """
    return _utilities.RpcMethodHandler(
        request_streaming=True,
        response_streaming=True,
        request_deserializer=request_deserializer,
        response_serializer=response_serializer,
        unary_unary=None,
        unary_stream=None,
        stream_unary=None,
        stream_stream=behavior,
    )


def method_handlers_generic_handler(service, method_handlers):
    """A GenericRpcHandler serving ``service`` from a dict mapping method
    names (without the service prefix) to RpcMethodHandlers."""
    return _utilities.DictionaryGenericHandler(service, method_handlers)
