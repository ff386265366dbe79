"""grpc.testing.TestService for the interop suite (tests/test_interop_cases.py).

One servicer, two homes: in-process on the implementation under test
(grpc_green, or grpcio in GRPC_GREEN_TEST_IMPL=grpcio mode) and in the real
grpcio peer tests/peers/interop_server.py. It is written against the ``grpc``
module API only; ``import grpc`` below resolves to whichever module the
process serves with (conftest patches it to grpc_green before this module is
imported).

Server features, as the interop test descriptions define them:

- EmptyCall returns Empty.
- UnaryCall returns ``response_size`` zero bytes.
- StreamingOutputCall / FullDuplexCall send one response per
  ResponseParameters (``size`` zero bytes, after ``interval_us``);
  FullDuplexCall answers each request as it arrives, HalfDuplexCall only
  after the client half-closes.
- StreamingInputCall returns the sum of the request payload sizes.
- Echo Status: a request with ``response_status`` ends the call with that
  code and message (UnaryCall via ``context.abort``, the streaming methods
  via ``set_code``/``set_details``); no further requests are processed.
- Echo Metadata: ``x-grpc-test-echo-initial`` from the invocation metadata is
  sent back as initial metadata, ``x-grpc-test-echo-trailing-bin`` as
  trailing metadata.
- A ``response_type`` other than COMPRESSABLE fails with INVALID_ARGUMENT.
- UnimplementedCall is left to the generated base class (UNIMPLEMENTED).

Sleeping: ``sleep`` is injected. The grpcio peer passes ``time.sleep``; the
in-process server on grpc_green passes ``grpc_green.hub.sleep`` so a sleeping
handler parks only its own greenlet. Sleeps go in small steps and stop as
soon as the RPC is no longer active (cancelled or past its deadline).
"""

import time

import grpc
import interop_empty_pb2
import interop_messages_pb2
import interop_test_pb2_grpc

ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"

_US_PER_SECOND = 1_000_000


def _status_code(number):
    """grpc.StatusCode for a numeric code (UNKNOWN for numbers gRPC lacks)."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


def _payload(size):
    return interop_messages_pb2.Payload(type=interop_messages_pb2.COMPRESSABLE, body=b"\x00" * size)


class InteropServicer(interop_test_pb2_grpc.TestServiceServicer):
    def __init__(self, sleep=time.sleep):
        self._sleep = sleep

    # ------------------------------------------------------------ helpers

    def _nap(self, seconds, context):
        """Sleeps `seconds` in small steps; False if the RPC ended meanwhile."""
        end = time.monotonic() + seconds
        while context.is_active():
            left = end - time.monotonic()
            if left <= 0:
                return True
            self._sleep(min(left, 0.01))
        return False

    @staticmethod
    def _echo_metadata(context):
        """Echo Metadata: sends the two x-grpc-test-echo-* keys back."""
        received = dict(context.invocation_metadata())
        if ECHO_INITIAL_KEY in received:
            context.send_initial_metadata(((ECHO_INITIAL_KEY, received[ECHO_INITIAL_KEY]),))
        if ECHO_TRAILING_KEY in received:
            context.set_trailing_metadata(((ECHO_TRAILING_KEY, received[ECHO_TRAILING_KEY]),))

    @staticmethod
    def _requested_status(request):
        """(StatusCode, message) the request asks to end with, or None."""
        if request.HasField("response_status") and request.response_status.code != 0:
            return (_status_code(request.response_status.code), request.response_status.message)
        return None

    @staticmethod
    def _check_response_type(request, context):
        if request.response_type != interop_messages_pb2.COMPRESSABLE:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "unsupported response_type %d" % request.response_type,
            )

    def _responses(self, request, context):
        """Yields the responses for one StreamingOutputCallRequest.

        Returns True when the caller should stop (the request carried a
        response_status, now set on the context, or the RPC ended).
        """
        status = self._requested_status(request)
        if status is not None:
            context.set_code(status[0])
            context.set_details(status[1])
            return True
        self._check_response_type(request, context)
        for parameters in request.response_parameters:
            if parameters.interval_us > 0:
                if not self._nap(parameters.interval_us / _US_PER_SECOND, context):
                    return True
            yield interop_messages_pb2.StreamingOutputCallResponse(
                payload=_payload(parameters.size)
            )
        return False

    # ------------------------------------------------------------ methods

    def EmptyCall(self, request, context):
        self._echo_metadata(context)
        return interop_empty_pb2.Empty()

    def UnaryCall(self, request, context):
        self._echo_metadata(context)
        status = self._requested_status(request)
        if status is not None:
            context.abort(*status)
        self._check_response_type(request, context)
        return interop_messages_pb2.SimpleResponse(payload=_payload(request.response_size))

    def StreamingOutputCall(self, request, context):
        self._echo_metadata(context)
        yield from self._responses(request, context)

    def StreamingInputCall(self, request_iterator, context):
        self._echo_metadata(context)
        total = 0
        for request in request_iterator:
            total += len(request.payload.body)
        return interop_messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    def FullDuplexCall(self, request_iterator, context):
        self._echo_metadata(context)
        for request in request_iterator:
            stop = yield from self._responses(request, context)
            if stop:
                return

    def HalfDuplexCall(self, request_iterator, context):
        self._echo_metadata(context)
        requests = list(request_iterator)
        for request in requests:
            stop = yield from self._responses(request, context)
            if stop:
                return
