"""The servicer of grpc_green.streaming.Streaming (protos/streaming.proto).

Shared by the in-process servers of tests/test_streaming.py (grpc_green, or
grpcio in GRPC_GREEN_TEST_IMPL=grpcio mode) and the subprocess peer
tests/peers/stream_peer.py. ``grpc`` (the module serving) and ``sleep`` (a
cooperative sleep on grpc_green, time.sleep with grpcio's threads) are passed
in, so this module imports neither grpc_green nor grpcio.
"""

import os
import sys

import streaming_pb2
import streaming_pb2_grpc

SERVICE = "grpc_green.streaming.Streaming"
# The same methods registered through grpc.*_rpc_method_handler and
# grpc.method_handlers_generic_handler instead of the generated code.
GENERIC_SERVICE = "grpc_green.streaming.GenericStreaming"


def headers_to_metadata(headers):
    return tuple((h.key, h.binary_value if h.key.endswith("-bin") else h.value) for h in headers)


def payload_for(index, size):
    """The payload ServerStream sends as response `index`."""
    return bytes((index % 251,)) * size


def _fails(request):
    return bool(request.status_code or request.raise_exception or request.die)


class StreamingServicer(streaming_pb2_grpc.StreamingServicer):
    """Streaming, driven by the fields of each call's (first) request.

    ``observations`` maps a Block key to the Observations its handler
    recorded (the message is updated in place while the handler runs).
    """

    def __init__(self, grpc, sleep):
        self._grpc = grpc
        self._sleep = sleep
        self.observations = {}
        self.calls = 0
        self.blocked = 0  # Block handlers running right now

    # ------------------------------------------------------------ helpers

    def _fail(self, request, context):
        """Ends the RPC as `request` says; the handler returns right after."""
        trailing = headers_to_metadata(request.trailing_metadata)
        if trailing:
            context.set_trailing_metadata(trailing)
        if request.die:
            sys.stdout.flush()
            os._exit(1)
        if request.raise_exception:
            raise RuntimeError(request.status_details)
        code = next(c for c in self._grpc.StatusCode if c.value[0] == request.status_code)
        if request.use_set_code:
            context.set_code(code)
            context.set_details(request.status_details)
            return
        context.abort(code, request.status_details)

    def _finish(self, request, context):
        """After the last message: trailing metadata, or the requested failure."""
        if _fails(request):
            self._fail(request, context)
            return
        trailing = headers_to_metadata(request.trailing_metadata)
        if trailing:
            context.set_trailing_metadata(trailing)

    @staticmethod
    def _send_initial(request, context):
        initial = headers_to_metadata(request.initial_metadata)
        if initial:
            context.send_initial_metadata(initial)

    # ------------------------------------------------------------ methods

    def ServerStream(self, request, context):
        self.calls += 1
        self._send_initial(request, context)
        fails = _fails(request)
        for index in range(request.response_count):
            if index:
                if request.sleep_seconds > 0:
                    self._sleep(request.sleep_seconds)
                if request.pause_every and index % request.pause_every == 0:
                    self._sleep(request.pause_seconds)
            if fails and index == request.fail_after:
                self._fail(request, context)
                return
            yield streaming_pb2.StreamResponse(
                index=index, payload=payload_for(index, request.response_size)
            )
        self._finish(request, context)

    def ClientStream(self, request_iterator, context):
        self.calls += 1
        first = None
        count = 0
        total = 0
        messages = []
        for request in request_iterator:
            if first is None:
                first = request
                self._send_initial(first, context)
            count += 1
            total += len(request.payload)
            if request.message:
                messages.append(request.message)
            if _fails(first) and count == max(first.fail_after, 1):
                self._fail(first, context)
                return streaming_pb2.Summary(count=count, total_bytes=total, messages=messages)
            if first.pause_every and count % first.pause_every == 0:
                self._sleep(first.pause_seconds)
        if first is not None:
            self._finish(first, context)
        return streaming_pb2.Summary(count=count, total_bytes=total, messages=messages)

    def Bidi(self, request_iterator, context):
        self.calls += 1
        first = None
        index = 0
        for request in request_iterator:
            if first is None:
                first = request
                self._send_initial(first, context)
            if _fails(first) and index == first.fail_after:
                self._fail(first, context)
                return
            yield streaming_pb2.StreamResponse(
                index=index, payload=request.payload, message=request.message
            )
            index += 1
            if request.finish:
                break
        if first is not None:
            self._finish(first, context)

    def Block(self, request_iterator, context):
        self.calls += 1
        self.blocked += 1
        try:
            yield from self._block(request_iterator, context)
        finally:
            self.blocked -= 1

    def _block(self, request_iterator, context):
        first = next(request_iterator)
        obs = streaming_pb2.Observations(
            key=first.key, started=True, active_at_start=context.is_active()
        )
        remaining = context.time_remaining()
        if remaining is not None:
            obs.has_time_remaining = True
            obs.time_remaining = remaining
        self.observations[first.key] = obs

        def on_done():
            obs.callback_saw_inactive = not context.is_active()
            obs.callback_ran = True

        context.add_callback(on_done)
        Mode = streaming_pb2.BlockRequest
        try:
            if first.mode == Mode.WRITE:
                payload = b"w" * first.response_size
                for index in range(first.max_responses):
                    yield streaming_pb2.StreamResponse(index=index, payload=payload)
                    obs.responses_yielded = index + 1
                obs.active_after_wait = context.is_active()
                return
            yield streaming_pb2.StreamResponse(index=0, message="ready")
            obs.responses_yielded = 1
            if first.mode == Mode.READ:
                try:
                    for _ in request_iterator:
                        pass
                    obs.request_iterator_outcome = "StopIteration"
                except self._grpc.RpcError:
                    obs.request_iterator_outcome = "RpcError"
                except Exception as error:  # noqa: BLE001 -- recorded for the test
                    obs.request_iterator_outcome = type(error).__name__
            else:  # POLL
                while context.is_active():
                    self._sleep(0.005)
            obs.active_after_wait = context.is_active()
            obs.wait_ended = True
            yield streaming_pb2.StreamResponse(index=1, message="after")
            obs.responses_yielded = 2
        except GeneratorExit:
            obs.generator_exit = True
            raise
        except BaseException as error:
            obs.error = repr(error)
            raise
        finally:
            obs.finally_ran = True

    def GetObservations(self, request, context):
        found = streaming_pb2.Observations(key=request.key)
        if request.key in self.observations:
            found.CopyFrom(self.observations[request.key])
        return found


def generic_handler(grpc, servicer, service=GENERIC_SERVICE):
    """`servicer`'s methods as a generic handler built with grpc.*_rpc_method_handler."""
    request = streaming_pb2.StreamRequest.FromString
    block = streaming_pb2.BlockRequest.FromString
    response = streaming_pb2.StreamResponse.SerializeToString
    return grpc.method_handlers_generic_handler(
        service,
        {
            "ServerStream": grpc.unary_stream_rpc_method_handler(
                servicer.ServerStream, request_deserializer=request, response_serializer=response
            ),
            "ClientStream": grpc.stream_unary_rpc_method_handler(
                servicer.ClientStream,
                request_deserializer=request,
                response_serializer=streaming_pb2.Summary.SerializeToString,
            ),
            "Bidi": grpc.stream_stream_rpc_method_handler(
                servicer.Bidi, request_deserializer=request, response_serializer=response
            ),
            "Block": grpc.stream_stream_rpc_method_handler(
                servicer.Block, request_deserializer=block, response_serializer=response
            ),
            "GetObservations": grpc.unary_unary_rpc_method_handler(
                servicer.GetObservations,
                request_deserializer=streaming_pb2.ObservationsRequest.FromString,
                response_serializer=streaming_pb2.Observations.SerializeToString,
            ),
        },
    )
