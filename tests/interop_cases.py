"""The standard gRPC interop client test cases, as plain functions.

Each case is ``case(channel, new_event)`` and follows the procedure of the
public interop test descriptions (grpc/grpc doc/interop-test-descriptions.md),
asserting what the description requires (plus, where it allows, that payloads
are all zeros). A case returns None when it passes and raises
``AssertionError`` (or the unexpected ``grpc.RpcError``) when it does not.

The same functions run in three places:

- in-process, on the implementation under test (grpc_green, or grpcio in
  GRPC_GREEN_TEST_IMPL=grpcio mode), from tests/test_interop_cases.py;
- in tests/peers/interop_client.py, on real grpcio.

``import grpc`` resolves to the module the process runs with. ``new_event``
makes the event that request pipes wait on: ``threading.Event`` on grpcio,
``grpc_green.hub.Event`` on grpc_green (a pipe waiting on a threading.Event
would block the whole hub).

Each case builds just the multicallables it uses straight from the channel
(see ``_rpc``), rather than a generated stub that creates all seven of
TestService's at once, so a case needs only the RPC kinds it exercises.
"""

import collections

import grpc
import interop_empty_pb2
import interop_messages_pb2

Empty = interop_empty_pb2.Empty
SimpleRequest = interop_messages_pb2.SimpleRequest
SimpleResponse = interop_messages_pb2.SimpleResponse
StreamingInputCallRequest = interop_messages_pb2.StreamingInputCallRequest
StreamingInputCallResponse = interop_messages_pb2.StreamingInputCallResponse
StreamingOutputCallRequest = interop_messages_pb2.StreamingOutputCallRequest
StreamingOutputCallResponse = interop_messages_pb2.StreamingOutputCallResponse
ResponseParameters = interop_messages_pb2.ResponseParameters
Payload = interop_messages_pb2.Payload
EchoStatus = interop_messages_pb2.EchoStatus
COMPRESSABLE = interop_messages_pb2.COMPRESSABLE

ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_INITIAL_VALUE = "test_initial_metadata_value"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"
ECHO_TRAILING_VALUE = b"\xab\xab\xab"

SPECIAL_STATUS_MESSAGE = (
    "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
)

# (kind, request class, response class) of every method the cases call.
_METHODS = {
    ("TestService", "EmptyCall"): ("unary_unary", Empty, Empty),
    ("TestService", "UnaryCall"): ("unary_unary", SimpleRequest, SimpleResponse),
    ("TestService", "StreamingOutputCall"): (
        "unary_stream",
        StreamingOutputCallRequest,
        StreamingOutputCallResponse,
    ),
    ("TestService", "StreamingInputCall"): (
        "stream_unary",
        StreamingInputCallRequest,
        StreamingInputCallResponse,
    ),
    ("TestService", "FullDuplexCall"): (
        "stream_stream",
        StreamingOutputCallRequest,
        StreamingOutputCallResponse,
    ),
    ("TestService", "HalfDuplexCall"): (
        "stream_stream",
        StreamingOutputCallRequest,
        StreamingOutputCallResponse,
    ),
    ("TestService", "UnimplementedCall"): ("unary_unary", Empty, Empty),
    ("UnimplementedService", "UnimplementedCall"): ("unary_unary", Empty, Empty),
}


def _rpc(channel, service, method):
    """The multicallable for /grpc.testing.<service>/<method> on `channel`."""
    kind, request_class, response_class = _METHODS[(service, method)]
    return getattr(channel, kind)(
        "/grpc.testing.%s/%s" % (service, method),
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )


class Pipe:
    """A request iterator the case feeds while the call is in progress.

    ``add`` appends a request, ``close`` half-closes (the iterator ends once
    drained). The consumer waits on an event from ``new_event``; it clears
    the event only after waking and re-checks the queue, so no wake-up is
    lost whichever side runs first.
    """

    def __init__(self, new_event):
        self._requests = collections.deque()
        self._closed = False
        self._event = new_event()

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._requests:
                return self._requests.popleft()
            if self._closed:
                raise StopIteration
            self._event.wait()
            self._event.clear()

    def add(self, request):
        self._requests.append(request)
        self._event.set()

    def close(self):
        self._closed = True
        self._event.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _zeros(size):
    return b"\x00" * size


def _check_payload(payload, size, what):
    assert payload.type == COMPRESSABLE, "%s: payload type %r" % (what, payload.type)
    assert len(payload.body) == size, "%s: payload body is %d bytes, expected %d" % (
        what,
        len(payload.body),
        size,
    )
    assert payload.body == _zeros(size), "%s: payload body is not all zeros" % what


def _check_status(error, code, details=None, what="call"):
    """Checks code() and, unless None, details() of an RpcError or a call."""
    assert error.code() is code, "%s: status %s, expected %s (details %r)" % (
        what,
        error.code(),
        code,
        error.details(),
    )
    if details is not None:
        assert error.details() == details, "%s: details %r, expected %r" % (
            what,
            error.details(),
            details,
        )


def _expect_rpc_error(fn, *args, **kwargs):
    """Calls fn; returns the grpc.RpcError it raises, fails if it returns."""
    try:
        result = fn(*args, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError("expected a grpc.RpcError, the call returned %r" % (result,))


def _metadata_values(metadata, key):
    return [value for k, value in (metadata or ()) if k == key]


def _streaming_request(response_size, payload_size=None):
    request = StreamingOutputCallRequest(
        response_type=COMPRESSABLE,
        response_parameters=[ResponseParameters(size=response_size)],
    )
    if payload_size is not None:
        request.payload.CopyFrom(Payload(type=COMPRESSABLE, body=_zeros(payload_size)))
    return request


# ------------------------------------------------------------------ cases


def empty_unary(channel, new_event):
    response, call = _rpc(channel, "TestService", "EmptyCall").with_call(Empty())
    assert call.code() is grpc.StatusCode.OK, "status %s" % call.code()
    assert isinstance(response, Empty), "response %r is not an Empty" % (response,)


def large_unary(channel, new_event):
    request = SimpleRequest(
        response_type=COMPRESSABLE,
        response_size=314159,
        payload=Payload(type=COMPRESSABLE, body=_zeros(271828)),
    )
    response, call = _rpc(channel, "TestService", "UnaryCall").with_call(request)
    assert call.code() is grpc.StatusCode.OK, "status %s" % call.code()
    _check_payload(response.payload, 314159, "response")


def client_streaming(channel, new_event):
    sizes = (27182, 8, 1828, 45904)
    requests = [
        StreamingInputCallRequest(payload=Payload(type=COMPRESSABLE, body=_zeros(size)))
        for size in sizes
    ]
    response, call = _rpc(channel, "TestService", "StreamingInputCall").with_call(iter(requests))
    assert call.code() is grpc.StatusCode.OK, "status %s" % call.code()
    assert response.aggregated_payload_size == 74922, (
        "aggregated_payload_size %d, expected 74922" % response.aggregated_payload_size
    )


def server_streaming(channel, new_event):
    sizes = (31415, 9, 2653, 58979)
    request = StreamingOutputCallRequest(
        response_type=COMPRESSABLE,
        response_parameters=[ResponseParameters(size=size) for size in sizes],
    )
    call = _rpc(channel, "TestService", "StreamingOutputCall")(request)
    responses = list(call)
    assert call.code() is grpc.StatusCode.OK, "status %s" % call.code()
    assert len(responses) == len(sizes), "%d responses, expected %d" % (len(responses), len(sizes))
    for index, (response, size) in enumerate(zip(responses, sizes, strict=True)):
        _check_payload(response.payload, size, "response %d" % index)


def ping_pong(channel, new_event):
    response_sizes = (31415, 9, 2653, 58979)
    payload_sizes = (27182, 8, 1828, 45904)
    with Pipe(new_event) as pipe:
        call = _rpc(channel, "TestService", "FullDuplexCall")(pipe)
        for index, (response_size, payload_size) in enumerate(
            zip(response_sizes, payload_sizes, strict=True)
        ):
            pipe.add(_streaming_request(response_size, payload_size))
            response = next(call)
            _check_payload(response.payload, response_size, "response %d" % index)
        pipe.close()
        extra = list(call)
    assert extra == [], "%d responses after the fourth" % len(extra)
    assert call.code() is grpc.StatusCode.OK, "status %s" % call.code()


def empty_stream(channel, new_event):
    call = _rpc(channel, "TestService", "FullDuplexCall")(iter(()))
    responses = list(call)
    assert call.code() is grpc.StatusCode.OK, "status %s" % call.code()
    assert responses == [], "%d responses, expected none" % len(responses)


def custom_metadata(channel, new_event):
    metadata = ((ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE), (ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE))

    def check(call, what):
        initial = _metadata_values(call.initial_metadata(), ECHO_INITIAL_KEY)
        assert initial == [ECHO_INITIAL_VALUE], "%s: initial metadata %r has %s=%r" % (
            what,
            call.initial_metadata(),
            ECHO_INITIAL_KEY,
            initial,
        )
        trailing = _metadata_values(call.trailing_metadata(), ECHO_TRAILING_KEY)
        assert trailing == [ECHO_TRAILING_VALUE], "%s: trailing metadata %r has %s=%r" % (
            what,
            call.trailing_metadata(),
            ECHO_TRAILING_KEY,
            trailing,
        )

    # Step 1: UnaryCall.
    request = SimpleRequest(
        response_type=COMPRESSABLE,
        response_size=314159,
        payload=Payload(type=COMPRESSABLE, body=_zeros(271828)),
    )
    response, call = _rpc(channel, "TestService", "UnaryCall").with_call(request, metadata=metadata)
    assert call.code() is grpc.StatusCode.OK, "UnaryCall: status %s" % call.code()
    _check_payload(response.payload, 314159, "UnaryCall response")
    check(call, "UnaryCall")

    # Step 2: FullDuplexCall, one request, then half-close.
    call = _rpc(channel, "TestService", "FullDuplexCall")(
        iter([_streaming_request(314159, 271828)]), metadata=metadata
    )
    responses = list(call)
    assert call.code() is grpc.StatusCode.OK, "FullDuplexCall: status %s" % call.code()
    assert len(responses) == 1, "FullDuplexCall: %d responses, expected 1" % len(responses)
    _check_payload(responses[0].payload, 314159, "FullDuplexCall response")
    check(call, "FullDuplexCall")


def _status_case(channel, code_number, message, streaming):
    unary = _rpc(channel, "TestService", "UnaryCall")
    error = _expect_rpc_error(
        unary, SimpleRequest(response_status=EchoStatus(code=code_number, message=message))
    )
    _check_status(error, grpc.StatusCode.UNKNOWN, message, "UnaryCall")
    if not streaming:
        return
    call = _rpc(channel, "TestService", "FullDuplexCall")(
        iter(
            [
                StreamingOutputCallRequest(
                    response_status=EchoStatus(code=code_number, message=message)
                ),
            ]
        )
    )
    error = _expect_rpc_error(list, call)
    _check_status(error, grpc.StatusCode.UNKNOWN, message, "FullDuplexCall")
    _check_status(call, grpc.StatusCode.UNKNOWN, message, "FullDuplexCall (call)")


def status_code_and_message(channel, new_event):
    # Code 2 is UNKNOWN.
    _status_case(channel, 2, "test status message", streaming=True)


def special_status_message(channel, new_event):
    _status_case(channel, 2, SPECIAL_STATUS_MESSAGE, streaming=False)


def unimplemented_method(channel, new_event):
    error = _expect_rpc_error(_rpc(channel, "TestService", "UnimplementedCall"), Empty())
    _check_status(error, grpc.StatusCode.UNIMPLEMENTED)


def unimplemented_service(channel, new_event):
    error = _expect_rpc_error(_rpc(channel, "UnimplementedService", "UnimplementedCall"), Empty())
    _check_status(error, grpc.StatusCode.UNIMPLEMENTED)


def cancel_after_begin(channel, new_event):
    with Pipe(new_event) as pipe:
        future = _rpc(channel, "TestService", "StreamingInputCall").future(pipe)
        assert future.cancel(), "cancel() returned False"
        assert future.cancelled(), "cancelled() is False after cancel()"
        assert future.code() is grpc.StatusCode.CANCELLED, "status %s" % future.code()


def cancel_after_first_response(channel, new_event):
    with Pipe(new_event) as pipe:
        call = _rpc(channel, "TestService", "FullDuplexCall")(pipe)
        pipe.add(_streaming_request(31415, 27182))
        next(call)
        call.cancel()
        error = _expect_rpc_error(next, call)
        _check_status(error, grpc.StatusCode.CANCELLED, what="next() after cancel()")
        assert call.code() is grpc.StatusCode.CANCELLED, "status %s" % call.code()


def timeout_on_sleeping_server(channel, new_event):
    with Pipe(new_event) as pipe:
        call = _rpc(channel, "TestService", "FullDuplexCall")(pipe, timeout=0.001)
        pipe.add(StreamingOutputCallRequest(payload=Payload(type=COMPRESSABLE, body=_zeros(27182))))
        error = _expect_rpc_error(next, call)
        _check_status(error, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert call.code() is grpc.StatusCode.DEADLINE_EXCEEDED, "status %s" % call.code()


CASES = {
    fn.__name__: fn
    for fn in (
        empty_unary,
        large_unary,
        client_streaming,
        server_streaming,
        ping_pong,
        empty_stream,
        custom_metadata,
        status_code_and_message,
        special_status_message,
        unimplemented_method,
        unimplemented_service,
        cancel_after_begin,
        cancel_after_first_response,
        timeout_on_sleeping_server,
    )
}
