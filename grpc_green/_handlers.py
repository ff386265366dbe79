"""Constructors for RpcMethodHandler and generic handlers (grpcio names)."""

from grpc_green import _utilities

__all__ = (
    "method_handlers_generic_handler",
    "stream_stream_rpc_method_handler",
    "stream_unary_rpc_method_handler",
    "unary_stream_rpc_method_handler",
    "unary_unary_rpc_method_handler",
)


def _method_handler(request_streaming, response_streaming, behavior,
                    request_deserializer, response_serializer):
    kinds = {
        (False, False): "unary_unary",
        (False, True): "unary_stream",
        (True, False): "stream_unary",
        (True, True): "stream_stream",
    }
    behaviors = dict.fromkeys(kinds.values())
    behaviors[kinds[request_streaming, response_streaming]] = behavior
    return _utilities.RpcMethodHandler(
        request_streaming=request_streaming,
        response_streaming=response_streaming,
        request_deserializer=request_deserializer,
        response_serializer=response_serializer,
        **behaviors,
    )


def unary_unary_rpc_method_handler(
    behavior, request_deserializer=None, response_serializer=None
):
    """Handler for a method taking one request and returning one response.

    ``behavior(request, context)`` returns the response.
    """
    return _method_handler(False, False, behavior, request_deserializer, response_serializer)


def unary_stream_rpc_method_handler(
    behavior, request_deserializer=None, response_serializer=None
):
    """Handler for a method taking one request and streaming responses.

    ``behavior(request, context)`` returns an iterator of responses.
    """
    return _method_handler(False, True, behavior, request_deserializer, response_serializer)


def stream_unary_rpc_method_handler(
    behavior, request_deserializer=None, response_serializer=None
):
    """Handler for a method taking a request stream and returning one response.

    ``behavior(request_iterator, context)`` returns the response.
    """
    return _method_handler(True, False, behavior, request_deserializer, response_serializer)


def stream_stream_rpc_method_handler(
    behavior, request_deserializer=None, response_serializer=None
):
    """Handler for a method with request and response streams.

    ``behavior(request_iterator, context)`` returns an iterator of responses.
    """
    return _method_handler(True, True, behavior, request_deserializer, response_serializer)


def method_handlers_generic_handler(service, method_handlers):
    """A GenericRpcHandler serving ``service`` from a dict mapping method
    names (without the service prefix) to RpcMethodHandlers."""
    return _utilities.DictionaryGenericHandler(service, method_handlers)
