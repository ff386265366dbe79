"""Streaming RPCs (unary-stream, stream-unary, stream-stream) through a real
server and client on loopback.

The server is the implementation under test, in this process (the
green_server fixture), serving grpc_green.streaming.Streaming twice: through
the generated servicer code and through grpc.*_rpc_method_handler +
grpc.method_handlers_generic_handler (GenericStreaming). Its behaviour is
tests/streaming_behaviour.py, steered by the fields of each request (see
protos/streaming.proto). A few tests use a subprocess peer running the same
implementation (tests/peers/stream_peer.py): a server process that dies, a
client process that is killed.

With grpc_green everything in this process runs on one hub: the test body
on the main greenlet, handlers and request iterators on greenlets of the
same hub. In GRPC_GREEN_TEST_IMPL=grpcio mode threads stand in for greenlets.
"""

import inspect
import itertools
import os
import sys
import threading

import grpc  # grpc_green (patched by conftest) or grpcio in grpcio mode
import pytest
import streaming_pb2
import streaming_pb2_grpc
from streaming_behaviour import (
    GENERIC_SERVICE,
    SERVICE,
    StreamingServicer,
    generic_handler,
    payload_for,
)
from test_leaks import check_no_growth, scaled

Req = streaming_pb2.StreamRequest
Resp = streaming_pb2.StreamResponse
Block = streaming_pb2.BlockRequest
Header = streaming_pb2.Header
OK = grpc.StatusCode.OK

CANCELLED_DETAILS = "Locally cancelled by application!"
# grpcio's client reports either of these on streaming calls.
DEADLINE_DETAILS = ("Deadline Exceeded", "Stream removed (Deadline Exceeded)")

_keys = itertools.count()


def new_key(prefix="k"):
    return "%s-%d" % (prefix, next(_keys))


def drain(call):
    """Reads `call` to its end: (responses, the RpcError it raised or None)."""
    responses = []
    try:
        for response in call:
            responses.append(response)
    except grpc.RpcError as error:
        return responses, error
    return responses, None


# --------------------------------------------------------------- fixtures


class Mailbox:
    """A queue between greenlets (threads in grpcio mode) built on hub.Event."""

    def __init__(self, hub):
        self._items = []
        self._event = hub.Event()

    def put(self, item):
        self._items.append(item)
        self._event.set()

    def get(self, timeout=10):
        while True:
            self._event.clear()
            if self._items:
                return self._items.pop(0)
            if not self._event.wait(timeout):
                raise AssertionError("nothing arrived within %ss" % timeout)


class Gates:
    """grpc_green.streaming.Gate/Stream, a bytes unary-stream method that sends
    its initial metadata (("gate", name) plus every "x-echo-" entry of the
    invocation metadata), then waits until the test opens the gate named by
    the request, then yields b"first" and b"second"."""

    SERVICE = "grpc_green.streaming.Gate"

    def __init__(self, hub):
        self._hub = hub
        self._events = {}
        self.entered = set()

    def event(self, name):
        if name not in self._events:
            self._events[name] = self._hub.Event()
        return self._events[name]

    def open(self, name):
        self.event(name).set()

    def open_all(self):
        for event in self._events.values():
            event.set()

    def _stream(self, request, context):
        name = request.decode()
        echoed = tuple((k, v) for k, v in context.invocation_metadata() if k.startswith("x-echo-"))
        self.entered.add(name)
        context.send_initial_metadata((("gate", name),) + echoed)
        if not self.event(name).wait(10):
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "gate %s never opened" % name)
        yield b"first"
        yield b"second"

    def handler(self):
        return grpc.method_handlers_generic_handler(
            self.SERVICE, {"Stream": grpc.unary_stream_rpc_method_handler(self._stream)}
        )


@pytest.fixture
def streaming(green_server, hub):
    """A started server with StreamingServicer (generated and generic) and Gates."""
    servicer = StreamingServicer(grpc, hub.sleep)
    gates = Gates(hub)
    handle = green_server(
        handlers=[generic_handler(grpc, servicer), gates.handler()],
        register=lambda server: streaming_pb2_grpc.add_StreamingServicer_to_server(
            servicer, server
        ),
    )
    handle.servicer = servicer
    handle.gates = gates
    yield handle
    gates.open_all()


@pytest.fixture
def channel(streaming, make_channel):
    return make_channel(streaming.target)


@pytest.fixture
def stub(channel):
    return streaming_pb2_grpc.StreamingStub(channel)


@pytest.fixture
def releases(hub):
    """Factory for events that park request iterators; all set at teardown
    so no iterator stays parked after its test."""
    events = []

    def new():
        event = hub.Event()
        events.append(event)
        return event

    yield new
    for event in events:
        event.set()


def held(first, release, then=()):
    """A request iterator: `first`, then parks until `release` is set, then `then`."""
    yield first
    release.wait(30)
    yield from then


class Api:
    """The Streaming methods as client multicallables.

    generated: the generated stub (channel.*(..., _registered_method=True)).
    generic:   channel.unary_stream/stream_unary/stream_stream built by hand
               (keyword arguments, _registered_method left at its default),
               calling GenericStreaming, which the server registers through
               grpc.*_rpc_method_handler + method_handlers_generic_handler.
    """

    def __init__(self, channel, kind):
        self.kind = kind
        if kind == "generated":
            stub = streaming_pb2_grpc.StreamingStub(channel)
            self.server_stream = stub.ServerStream
            self.client_stream = stub.ClientStream
            self.bidi = stub.Bidi
        else:
            prefix = "/%s/" % GENERIC_SERVICE
            self.server_stream = channel.unary_stream(
                prefix + "ServerStream",
                request_serializer=Req.SerializeToString,
                response_deserializer=Resp.FromString,
            )
            self.client_stream = channel.stream_unary(
                prefix + "ClientStream",
                request_serializer=Req.SerializeToString,
                response_deserializer=streaming_pb2.Summary.FromString,
            )
            self.bidi = channel.stream_stream(
                prefix + "Bidi",
                request_serializer=Req.SerializeToString,
                response_deserializer=Resp.FromString,
            )


@pytest.fixture(params=["generated", "generic"])
def api(request, channel):
    return Api(channel, request.param)


def wait_for_handler_end(hub, servicer, key, timeout=10):
    """Waits until Block(key)'s handler has finished and its callback ran."""

    def ended():
        obs = servicer.observations.get(key)
        return obs is not None and obs.finally_ran and obs.callback_ran

    try:
        hub.wait_until(ended, timeout=timeout)
    except AssertionError:
        raise AssertionError(
            "Block handler %s did not end within %ss; it observed: %s"
            % (key, timeout, servicer.observations.get(key))
        ) from None
    return servicer.observations[key]


# ------------------------------------------------------- client API shape

STREAMING_KINDS = {
    "unary_stream": ("request", grpc.UnaryStreamMultiCallable),
    "stream_unary": ("request_iterator", grpc.StreamUnaryMultiCallable),
    "stream_stream": ("request_iterator", grpc.StreamStreamMultiCallable),
}
CALL_PARAMETERS = ["timeout", "metadata", "credentials", "wait_for_ready", "compression"]


@pytest.mark.parametrize("kind", sorted(STREAMING_KINDS))
def test_channel_streaming_multicallables(channel, kind):
    """grpcio's signatures; built positionally and with _registered_method,
    each kind can call Bidi (which echoes whatever it gets)."""
    factory = getattr(channel, kind)
    parameters = inspect.signature(factory).parameters
    assert list(parameters) == [
        "method",
        "request_serializer",
        "response_deserializer",
        "_registered_method",
    ]
    assert [p.default for p in list(parameters.values())[1:]] == [None, None, False]

    first, base = STREAMING_KINDS[kind]
    multicallable = factory("/%s/Bidi" % SERVICE, Req.SerializeToString, Resp.FromString, True)
    assert isinstance(multicallable, base)
    methods = ["__call__"] + (["with_call", "future"] if kind == "stream_unary" else [])
    for name in methods:
        assert list(inspect.signature(getattr(multicallable, name)).parameters) == (
            [first] + CALL_PARAMETERS
        ), name

    request = Req(message="via %s" % kind, payload=b"\x00\xff")
    if kind == "unary_stream":
        responses = list(
            multicallable(
                request,
                timeout=10,
                metadata=(("x-k", "v"),),
                credentials=None,
                wait_for_ready=None,
                compression=None,
            )
        )
        assert [(r.index, r.message, r.payload) for r in responses] == [
            (0, request.message, request.payload)
        ]
    elif kind == "stream_unary":
        response = multicallable(iter([request]), timeout=10, metadata=(("x-k", "v"),))
        assert (response.index, response.message, response.payload) == (
            0,
            request.message,
            request.payload,
        )
    else:
        responses = list(multicallable(iter([request, request]), timeout=10))
        assert [(r.index, r.message) for r in responses] == [
            (0, request.message),
            (1, request.message),
        ]


def test_response_iterator_is_a_call_and_a_future(stub, streaming, releases):
    key = new_key("shape")
    call = stub.Block(held(Block(key=key, mode=Block.POLL), releases()), timeout=30)
    assert isinstance(call, grpc.Call)
    assert isinstance(call, grpc.Future)
    assert iter(call) is call
    assert next(call).message == "ready"
    # The handler now polls is_active() until the call ends.
    assert call.is_active() is True
    assert call.done() is False
    assert call.running() is True
    assert call.cancelled() is False
    assert 0 < call.time_remaining() <= 30
    with pytest.raises(grpc.FutureTimeoutError):
        call.result(timeout=0.05)
    with pytest.raises(grpc.FutureTimeoutError):
        call.exception(timeout=0.05)
    with pytest.raises(grpc.FutureTimeoutError):
        call.traceback(timeout=0.05)
    assert call.cancel() is True


def test_time_remaining_without_deadline_is_none(stub, releases):
    call = stub.Block(held(Block(key=new_key(), mode=Block.POLL), releases()))
    assert next(call).message == "ready"
    assert call.time_remaining() is None
    call.cancel()


def test_completed_stream_as_call_and_future(api, hub):
    call = api.server_stream(Req(response_count=3, response_size=10), timeout=10)
    done = []
    assert call.add_callback(lambda: done.append("callback")) is True
    call.add_done_callback(lambda future: done.append(future is call))
    assert [r.index for r in call] == [0, 1, 2]
    assert call.code() is OK
    assert call.details() == ""
    assert call.is_active() is False
    assert call.done() is True
    assert call.running() is False
    assert call.cancelled() is False
    # grpcio: a streaming call's "result" is None once it completed OK.
    assert call.result() is None
    assert call.result(timeout=1) is None
    assert call.exception() is None
    assert call.traceback() is None
    hub.wait_until(lambda: len(done) == 2)
    assert set(done) == {"callback", True}
    # Once it is over: add_callback refuses, add_done_callback runs at once.
    assert call.add_callback(lambda: done.append("late")) is False
    late = []
    call.add_done_callback(late.append)
    assert late == [call]
    assert call.cancel() is False
    with pytest.raises(StopIteration):
        next(call)


# -------------------------------------------------------- unary-stream


def test_server_stream(api):
    call = api.server_stream(Req(response_count=5, response_size=1000), timeout=10)
    responses = list(call)
    assert [r.index for r in responses] == [0, 1, 2, 3, 4]
    for response in responses:
        assert response.payload == payload_for(response.index, 1000)
    assert call.code() is OK
    assert tuple(call.initial_metadata()) == ()
    assert tuple(call.trailing_metadata()) == ()


def test_server_stream_of_zero_messages(api):
    call = api.server_stream(Req(response_count=0), timeout=10)
    assert list(call) == []
    assert call.code() is OK


def test_server_stream_large_messages(api):
    size = 1 << 20
    call = api.server_stream(Req(response_count=4, response_size=size), timeout=30)
    responses = list(call)
    assert [r.payload == payload_for(r.index, size) for r in responses] == [True] * 4


def test_server_stream_metadata(api):
    request = Req(
        response_count=3,
        response_size=1,
        initial_metadata=[
            Header(key="server-initial", value="one"),
            Header(key="server-initial-bin", binary_value=b"\x00\xff"),
        ],
        trailing_metadata=[
            Header(key="server-trailing", value="two"),
            Header(key="server-trailing-bin", binary_value=b"\xfe\x00"),
        ],
    )
    call = api.server_stream(request, timeout=10)
    # Initial metadata is there before any message is read.
    assert tuple(call.initial_metadata()) == (
        ("server-initial", "one"),
        ("server-initial-bin", b"\x00\xff"),
    )
    assert [r.index for r in call] == [0, 1, 2]
    assert tuple(call.trailing_metadata()) == (
        ("server-trailing", "two"),
        ("server-trailing-bin", b"\xfe\x00"),
    )
    assert call.code() is OK


def test_initial_metadata_arrives_before_the_first_message(channel, streaming):
    """The handler sends initial metadata and then waits for the test: the
    client must see the metadata while no message exists yet."""
    gate = channel.unary_stream("/%s/Stream" % Gates.SERVICE)
    call = gate(b"g1", timeout=20, metadata=(("x-echo-one", "1"), ("x-echo-two-bin", b"\x02")))
    assert tuple(call.initial_metadata()) == (
        ("gate", "g1"),
        ("x-echo-one", "1"),
        ("x-echo-two-bin", b"\x02"),
    )
    assert "g1" in streaming.gates.entered
    assert call.is_active() is True
    streaming.gates.open("g1")
    assert list(call) == [b"first", b"second"]
    assert call.code() is OK


@pytest.mark.parametrize("use_set_code", [False, True], ids=["abort", "set_code"])
@pytest.mark.parametrize("details", ["gone after 3", "héllo ☃ 😀"])
def test_server_stream_fails_after_messages(api, details, use_set_code):
    request = Req(
        response_count=10,
        response_size=8,
        fail_after=3,
        use_set_code=use_set_code,
        status_code=grpc.StatusCode.NOT_FOUND.value[0],
        status_details=details,
        initial_metadata=[Header(key="early", value="yes")],
        trailing_metadata=[Header(key="late-bin", binary_value=b"\x01\x02")],
    )
    call = api.server_stream(request, timeout=10)
    responses, error = drain(call)
    assert [r.index for r in responses] == [0, 1, 2]
    assert error is not None
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == details
    assert tuple(error.initial_metadata()) == (("early", "yes"),)
    assert tuple(error.trailing_metadata()) == (("late-bin", b"\x01\x02"),)
    # The call object tells the same story, and stays failed.
    assert call.code() is grpc.StatusCode.NOT_FOUND
    assert call.details() == details
    assert call.done() is True
    assert call.cancelled() is False
    with pytest.raises(grpc.RpcError) as again:
        next(call)
    assert again.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        call.result()
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    exception = call.exception()
    assert isinstance(exception, grpc.RpcError)
    assert exception.code() is grpc.StatusCode.NOT_FOUND
    assert exception.details() == details
    assert call.traceback() is not None


def test_server_stream_exception_after_messages(api):
    call = api.server_stream(
        Req(response_count=10, fail_after=2, raise_exception=True, status_details="kaboom ☃"),
        timeout=10,
    )
    responses, error = drain(call)
    assert [r.index for r in responses] == [0, 1]
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert error.details() == "Exception iterating responses: kaboom ☃"


def test_server_stream_exception_before_first_message(api):
    call = api.server_stream(
        Req(response_count=10, fail_after=0, raise_exception=True, status_details="early"),
        timeout=10,
    )
    responses, error = drain(call)
    assert responses == []
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert error.details() == "Exception iterating responses: early"
    assert tuple(error.initial_metadata()) == ()


def test_many_concurrent_server_streams_interleave(stub):
    """200 streams on one channel, read round-robin one message at a time."""
    calls = [
        stub.ServerStream(Req(response_count=10, response_size=i), timeout=30) for i in range(200)
    ]
    for index in range(10):
        for size, call in enumerate(calls):
            response = next(call)
            assert (response.index, response.payload) == (index, payload_for(index, size))
    for call in calls:
        with pytest.raises(StopIteration):
            next(call)
        assert call.code() is OK


# -------------------------------------------------------- stream-unary


def _requests(n):
    return [Req(payload=b"p" * i, message="m%d" % i) for i in range(n)]


def test_client_stream(api):
    summary = api.client_stream(iter(_requests(6)), timeout=10)
    assert summary.count == 6
    assert summary.total_bytes == 0 + 1 + 2 + 3 + 4 + 5
    assert list(summary.messages) == ["m0", "m1", "m2", "m3", "m4", "m5"]


def test_client_stream_from_a_generator_and_of_zero_requests(api):
    summary = api.client_stream((r for r in _requests(3)), timeout=10)
    assert summary.count == 3
    empty = api.client_stream(iter(()), timeout=10)
    assert (empty.count, empty.total_bytes) == (0, 0)


def test_client_stream_with_call(api):
    first = Req(
        message="first",
        initial_metadata=[Header(key="server-initial", value="i")],
        trailing_metadata=[Header(key="server-trailing-bin", binary_value=b"\x00t")],
    )
    summary, call = api.client_stream.with_call(iter([first] + _requests(2)), timeout=10)
    assert summary.count == 3
    assert list(summary.messages) == ["first", "m0", "m1"]
    assert isinstance(call, grpc.Call)
    assert call.code() is OK
    assert call.details() == ""
    assert tuple(call.initial_metadata()) == (("server-initial", "i"),)
    assert tuple(call.trailing_metadata()) == (("server-trailing-bin", b"\x00t"),)
    assert call.is_active() is False


def test_client_stream_future(api, hub):
    future = api.client_stream.future(iter(_requests(4)), timeout=10)
    assert isinstance(future, grpc.Future)
    assert isinstance(future, grpc.Call)
    done = []
    future.add_done_callback(done.append)
    summary = future.result(timeout=10)
    assert summary.count == 4
    assert future.done() is True
    assert future.cancelled() is False
    assert future.exception() is None
    assert future.code() is OK
    hub.wait_until(lambda: done == [future], message="done callback never ran")


def test_client_stream_future_result_timeout(stub, releases):
    release = releases()
    future = stub.ClientStream.future(
        held(Req(message="a"), release, [Req(message="b")]), timeout=30
    )
    with pytest.raises(grpc.FutureTimeoutError):
        future.result(timeout=0.05)
    assert future.done() is False
    assert future.running() is True
    release.set()
    assert list(future.result(timeout=10).messages) == ["a", "b"]


@pytest.mark.parametrize("use_set_code", [False, True], ids=["abort", "set_code"])
def test_client_stream_fails_after_requests(api, use_set_code):
    first = Req(
        fail_after=3,
        status_code=grpc.StatusCode.FAILED_PRECONDITION.value[0],
        status_details="three is enough",
        use_set_code=use_set_code,
        trailing_metadata=[Header(key="why", value="limit")],
    )
    with pytest.raises(grpc.RpcError) as raised:
        api.client_stream(iter([first] + _requests(5)), timeout=10)
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details() == "three is enough"
    assert tuple(raised.value.trailing_metadata()) == (("why", "limit"),)

    future = api.client_stream.future(iter([first] + _requests(5)), timeout=10)
    error = future.exception(timeout=10)
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "three is enough"
    with pytest.raises(grpc.RpcError):
        future.result()


def test_client_stream_handler_exception(api):
    first = Req(fail_after=2, raise_exception=True, status_details="boom")
    with pytest.raises(grpc.RpcError) as raised:
        api.client_stream(iter([first] + _requests(5)), timeout=10)
    assert raised.value.code() is grpc.StatusCode.UNKNOWN
    assert raised.value.details() == "Exception calling application: boom"


# -------------------------------------------------------- stream-stream


def test_bidi_echo(api):
    requests = [Req(message="r%d" % i, payload=bytes([i]) * (i * 1000)) for i in range(5)]
    call = api.bidi(iter(requests), timeout=10)
    responses = list(call)
    assert [(r.index, r.message, r.payload) for r in responses] == [
        (i, q.message, q.payload) for i, q in enumerate(requests)
    ]
    assert call.code() is OK


def test_bidi_ping_pong(api, hub):
    """Each request is produced only after the previous answer arrived: the
    request and response streams really interleave."""
    mailbox = Mailbox(hub)

    def requests():
        while True:
            message = mailbox.get()
            if message is None:
                return
            yield Req(message=message)

    call = api.bidi(requests(), timeout=20)
    for i in range(10):
        mailbox.put("ping %d" % i)
        response = next(call)
        assert (response.index, response.message) == (i, "ping %d" % i)
    mailbox.put(None)
    with pytest.raises(StopIteration):
        next(call)
    assert call.code() is OK


def test_bidi_server_ends_early(api, releases):
    """The handler returns after the request marked `finish` while the
    client's request stream is still open: the call ends OK all the same."""
    release = releases()

    def requests():
        yield Req(message="a")
        yield Req(message="b", finish=True)
        release.wait(30)
        yield Req(message="never read")

    call = api.bidi(requests(), timeout=10)
    assert [r.message for r in call] == ["a", "b"]
    assert call.code() is OK


@pytest.mark.parametrize("use_set_code", [False, True], ids=["abort", "set_code"])
def test_bidi_fails_after_responses(api, use_set_code):
    requests = [
        Req(
            message="x",
            fail_after=2,
            use_set_code=use_set_code,
            status_code=grpc.StatusCode.PERMISSION_DENIED.value[0],
            status_details="no more",
        )
    ] + [Req(message="y")] * 4
    call = api.bidi(iter(requests), timeout=10)
    responses, error = drain(call)
    assert [r.message for r in responses] == ["x", "y"]
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "no more"


def test_bidi_handler_exception(api):
    requests = [Req(message="x", fail_after=1, raise_exception=True, status_details="bad")] + [
        Req(message="y")
    ] * 3
    responses, error = drain(api.bidi(iter(requests), timeout=10))
    assert [r.message for r in responses] == ["x"]
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert error.details() == "Exception iterating responses: bad"


def test_bidi_metadata(api):
    first = Req(
        message="m",
        initial_metadata=[Header(key="bidi-initial", value="i")],
        trailing_metadata=[Header(key="bidi-trailing", value="t")],
    )
    call = api.bidi(iter([first, Req(message="n")]), timeout=10)
    assert tuple(call.initial_metadata()) == (("bidi-initial", "i"),)
    assert [r.message for r in call] == ["m", "n"]
    assert tuple(call.trailing_metadata()) == (("bidi-trailing", "t"),)


# ------------------------------------------------------ client cancel()


def test_cancel_then_next_raises_cancelled(stub, streaming, hub, releases):
    key = new_key("cancel")
    call = stub.Block(held(Block(key=key, mode=Block.POLL), releases()), timeout=30)
    assert next(call).message == "ready"
    events = []
    assert call.add_callback(lambda: events.append("callback")) is True
    call.add_done_callback(lambda future: events.append(future is call))

    assert call.cancel() is True
    assert call.cancel() is False
    assert call.cancelled() is True
    assert call.done() is True
    assert call.is_active() is False
    assert call.code() is grpc.StatusCode.CANCELLED
    assert call.details() == CANCELLED_DETAILS
    with pytest.raises(grpc.RpcError) as raised:
        next(call)
    assert raised.value.code() is grpc.StatusCode.CANCELLED
    assert raised.value.details() == CANCELLED_DETAILS
    with pytest.raises(grpc.RpcError):
        next(call)
    with pytest.raises(grpc.FutureCancelledError):
        call.result()
    with pytest.raises(grpc.FutureCancelledError):
        call.exception()
    hub.wait_until(lambda: len(events) == 2)
    assert set(events) == {"callback", True}
    wait_for_handler_end(hub, streaming.servicer, key)


def test_cancel_before_any_message(stub, streaming, hub, releases):
    key = new_key("early-cancel")
    call = stub.Block(held(Block(key=key, mode=Block.POLL), releases()), timeout=30)
    hub.wait_until(lambda: key in streaming.servicer.observations)
    assert call.cancel() is True
    responses, error = drain(call)
    # Even if "ready" has arrived by now, nothing is delivered after cancel().
    assert responses == []
    assert error.code() is grpc.StatusCode.CANCELLED
    assert error.details() == CANCELLED_DETAILS
    wait_for_handler_end(hub, streaming.servicer, key)


def _start_block(channel, kind, key, mode, release, timeout=None, max_responses=10_000):
    request = Block(key=key, mode=mode, response_size=16 * 1024, max_responses=max_responses)
    path = "/%s/Block" % SERVICE
    if kind == "unary_stream":
        return channel.unary_stream(path, Block.SerializeToString, Resp.FromString)(
            request, timeout=timeout
        )
    if kind == "stream_stream":
        return channel.stream_stream(path, Block.SerializeToString, Resp.FromString)(
            held(request, release), timeout=timeout
        )
    return channel.stream_unary(path, Block.SerializeToString, Resp.FromString).future(
        held(request, release), timeout=timeout
    )


# (client kind, Block mode): where the handler is parked when the call ends.
#   READ:  reading the request iterator;  POLL: polling is_active();
#   WRITE: yielding responses the client does not read (flow control).
PARKED = [
    ("unary_stream", Block.POLL),
    ("unary_stream", Block.WRITE),
    ("stream_stream", Block.READ),
    ("stream_stream", Block.POLL),
    ("stream_unary", Block.READ),
]
PARKED_IDS = ["%s-%s" % (kind, Block.Mode.Name(mode)) for kind, mode in PARKED]


def _assert_handler_saw_the_end(obs, mode, max_responses=10_000):
    assert obs.error == "", obs
    assert obs.callback_ran and obs.callback_saw_inactive, obs  # add_callback ran, inactive
    assert obs.generator_exit, obs  # the response generator was closed at a yield
    if mode == Block.READ:
        # The request iterator raises (grpcio: usually RpcError) or ends.
        assert obs.wait_ended, obs
        assert obs.request_iterator_outcome in ("RpcError", "StopIteration"), obs
        assert obs.responses_yielded == 1, obs  # the yield after the wait never returned
    elif mode == Block.POLL:
        assert obs.wait_ended and obs.active_after_wait is False, obs
        assert obs.responses_yielded == 1, obs
    else:
        assert 1 <= obs.responses_yielded < max_responses, obs


def _wait_until_parked(call, kind, mode, servicer, key, hub):
    """Reads the first response (unless the call is stream-unary), then
    waits until the handler is past its first yield, i.e. in its wait."""
    if kind != "stream_unary":
        first = next(call)
        assert first.index == 0
        if mode != Block.WRITE:
            assert first.message == "ready"

    def parked():
        obs = servicer.observations.get(key)
        return obs is not None and obs.responses_yielded >= 1

    hub.wait_until(parked, message="handler %s never got past its first yield" % key)


@pytest.mark.parametrize("kind, mode", PARKED, ids=PARKED_IDS)
def test_client_cancel_ends_the_server_handler(kind, mode, channel, streaming, hub, releases):
    key = new_key("cancelled")
    call = _start_block(channel, kind, key, mode, releases())
    _wait_until_parked(call, kind, mode, streaming.servicer, key, hub)
    assert call.cancel() is True
    assert call.code() is grpc.StatusCode.CANCELLED
    assert call.details() == CANCELLED_DETAILS
    with pytest.raises(grpc.FutureCancelledError):
        call.result(timeout=5)
    obs = wait_for_handler_end(hub, streaming.servicer, key)
    assert obs.active_at_start is True
    _assert_handler_saw_the_end(obs, mode)
    assert streaming.servicer.blocked == 0


@pytest.mark.parametrize("kind, mode", PARKED, ids=PARKED_IDS)
def test_deadline_mid_stream(kind, mode, channel, streaming, hub, releases):
    key = new_key("deadline")
    call = _start_block(channel, kind, key, mode, releases(), timeout=0.5)
    _wait_until_parked(call, kind, mode, streaming.servicer, key, hub)
    if kind == "stream_unary" or mode == Block.WRITE:
        error = call.exception(timeout=5)  # without reading what is buffered
    else:
        responses, error = drain(call)
        assert responses == []
    assert isinstance(error, grpc.RpcError)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() in DEADLINE_DETAILS
    assert call.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    obs = wait_for_handler_end(hub, streaming.servicer, key)
    assert obs.has_time_remaining and 0 < obs.time_remaining <= 0.6, obs
    _assert_handler_saw_the_end(obs, mode)


def test_deadline_mid_server_stream_after_messages(stub):
    call = stub.ServerStream(
        Req(response_count=1000, response_size=10, sleep_seconds=0.05), timeout=0.5
    )
    responses, error = drain(call)
    assert 1 <= len(responses) < 1000
    assert [r.index for r in responses] == list(range(len(responses)))
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() in DEADLINE_DETAILS


def test_channel_close_ends_active_streams(streaming, make_channel, hub):
    channel = make_channel(streaming.target)
    stub = streaming_pb2_grpc.StreamingStub(channel)
    key = new_key("channel-close")
    call = stub.Block(iter([Block(key=key, mode=Block.POLL)]), timeout=30)
    assert next(call).message == "ready"
    hub.wait_until(lambda: streaming.servicer.observations[key].responses_yielded == 1)
    channel.close()
    responses, error = drain(call)
    assert responses == []
    assert error.code() is grpc.StatusCode.CANCELLED
    # grpcio: "Channel closed!" on unary calls, with this prefix on streams.
    assert error.details() in ("Channel closed!", "Stream removed (Channel closed!)")
    _assert_handler_saw_the_end(wait_for_handler_end(hub, streaming.servicer, key), Block.POLL)


def test_server_stop_ends_active_streams(green_server, make_channel, hub):
    servicer = StreamingServicer(grpc, hub.sleep)
    server = green_server(
        register=lambda s: streaming_pb2_grpc.add_StreamingServicer_to_server(servicer, s)
    )
    stub = streaming_pb2_grpc.StreamingStub(make_channel(server.target))
    key = new_key("server-stop")
    call = stub.Block(iter([Block(key=key, mode=Block.POLL)]), timeout=30)
    assert next(call).message == "ready"
    hub.wait_until(lambda: servicer.observations[key].responses_yielded == 1)
    assert server.server.stop(None).wait(5) is True
    responses, error = drain(call)
    assert responses == []
    # grpcio's client reports UNAVAILABLE 'Cancelling all calls' here.
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    _assert_handler_saw_the_end(wait_for_handler_end(hub, servicer, key), Block.POLL)


def test_server_stop_with_grace_lets_streams_finish(green_server, make_channel, hub):
    servicer = StreamingServicer(grpc, hub.sleep)
    server = green_server(
        register=lambda s: streaming_pb2_grpc.add_StreamingServicer_to_server(servicer, s)
    )
    stub = streaming_pb2_grpc.StreamingStub(make_channel(server.target))
    call = stub.ServerStream(Req(response_count=5, response_size=10, sleep_seconds=0.1), timeout=30)
    assert next(call).index == 0
    stopped = server.server.stop(5)
    assert [r.index for r in call] == [1, 2, 3, 4]
    assert call.code() is OK
    assert stopped.wait(5) is True


# --------------------------------------------- request iterator failures


class IteratorBoom(Exception):
    pass


def _failing_requests(n):
    yield from _requests(n)
    raise IteratorBoom("request iterator broke")


def test_request_iterator_raising_stream_unary(stub):
    with pytest.raises(grpc.RpcError) as raised:
        stub.ClientStream(_failing_requests(2), timeout=10)
    assert raised.value.code() is grpc.StatusCode.UNKNOWN
    assert raised.value.details() == "Exception iterating requests!"

    with pytest.raises(grpc.RpcError) as raised:
        stub.ClientStream.with_call(_failing_requests(0), timeout=10)
    assert raised.value.code() is grpc.StatusCode.UNKNOWN
    assert raised.value.details() == "Exception iterating requests!"

    error = stub.ClientStream.future(_failing_requests(3), timeout=10).exception(timeout=10)
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert error.details() == "Exception iterating requests!"


def test_request_iterator_raising_stream_stream_cancels_the_call(stub, streaming, hub, releases):
    key = new_key("iterator-raised")
    release = releases()

    def requests():
        yield Block(key=key, mode=Block.READ)
        release.wait(30)
        raise IteratorBoom("after the first request")

    call = stub.Block(requests(), timeout=30)
    assert next(call).message == "ready"
    hub.wait_until(lambda: streaming.servicer.observations[key].responses_yielded == 1)
    release.set()
    responses, error = drain(call)
    assert responses == []
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert error.details() == "Exception iterating requests!"
    obs = wait_for_handler_end(hub, streaming.servicer, key)
    _assert_handler_saw_the_end(obs, Block.READ)


# ------------------------------------------------------------ cooperation


def test_next_parks_only_the_calling_greenlet(channel, stub, streaming, hub):
    """One greenlet (a thread in grpcio mode) waits in next() for a message
    the server holds back; meanwhile this one makes other streaming calls."""
    gate = channel.unary_stream("/%s/Stream" % Gates.SERVICE)
    call = gate(b"parked", timeout=30)
    started = []

    def reader():
        started.append(True)
        return list(call)

    task = hub.spawn(reader)
    hub.wait_until(lambda: started and "parked" in streaming.gates.entered)
    for i in range(5):
        assert [r.index for r in stub.ServerStream(Req(response_count=3), timeout=10)] == [0, 1, 2]
        assert stub.ClientStream(iter(_requests(i)), timeout=10).count == i
        assert not task.dead
    streaming.gates.open("parked")
    assert task.get(timeout=10) == [b"first", b"second"]


def test_request_iterator_parked_on_an_event_does_not_stall_other_calls(stub, hub):
    release = hub.Event()
    released = []

    def requests():
        yield Req(message="before")
        released.append(release.wait(10))  # True only if the test set it
        yield Req(message="after")

    call = stub.Bidi(requests(), timeout=30)
    assert next(call).message == "before"
    # The request iterator is parked now; other calls go on.
    for _ in range(5):
        assert [r.index for r in stub.ServerStream(Req(response_count=2), timeout=10)] == [0, 1]
        assert stub.ClientStream(iter(_requests(3)), timeout=10).count == 3
    assert released == []
    release.set()
    assert next(call).message == "after"
    assert released == [True]
    with pytest.raises(StopIteration):
        next(call)


def test_request_iterators_that_sleep_are_consumed_concurrently(stub, hub):
    """Four client streams whose iterators sleep between requests: their
    requests interleave instead of one iterator being drained after another."""
    order = []

    def requests(tag):
        for i in range(6):
            hub.sleep(0.02)
            order.append(tag)
            yield Req(message="%s%d" % (tag, i))

    futures = [stub.ClientStream.future(requests(tag), timeout=30) for tag in "abcd"]
    for tag, future in zip("abcd", futures, strict=True):
        assert list(future.result(timeout=30).messages) == ["%s%d" % (tag, i) for i in range(6)]
    assert sorted(order) == sorted("abcd" * 6)
    assert order != sorted(order), order  # not a, a, ..., b, b, ...


@pytest.mark.green_only
def test_streaming_starts_no_threads(green_server, make_channel, hub):
    before = set(threading.enumerate())
    servicer = StreamingServicer(grpc, hub.sleep)
    server = green_server(
        register=lambda s: streaming_pb2_grpc.add_StreamingServicer_to_server(servicer, s)
    )
    stub = streaming_pb2_grpc.StreamingStub(make_channel(server.target))
    assert len(list(stub.ServerStream(Req(response_count=3), timeout=10))) == 3
    assert stub.ClientStream(iter(_requests(3)), timeout=10).count == 3
    assert stub.ClientStream.future(iter(_requests(2)), timeout=10).result().count == 2
    assert len(list(stub.Bidi(iter(_requests(3)), timeout=10))) == 3
    call = stub.Block(iter([Block(key="threads", mode=Block.POLL)]), timeout=10)
    assert next(call).message == "ready"
    call.cancel()
    wait_for_handler_end(hub, servicer, "threads")
    server.server.stop(None).wait(5)
    assert set(threading.enumerate()) == before


# -------------------------------------------------- cardinality violations
#
# gRPC's status-code table (doc/statuscodes.md): "Request cardinality
# violation (method requires exactly one request but client sent some other
# number of requests) | UNIMPLEMENTED | Server" and "Response cardinality
# violation (method requires exactly one response but server sent some other
# number of responses) | UNIMPLEMENTED | Client". grpc_green is held to the
# table. grpcio follows it only for a missing request; where it does not, the
# grpcio-mode branch pins what grpcio does so the harness is still checked.

UNARY_REQUEST_METHODS = {
    "ServerStream": (Req(response_count=0), Resp.FromString),
    "GetObservations": (
        streaming_pb2.ObservationsRequest(key="none"),
        streaming_pb2.Observations.FromString,
    ),
}


@pytest.mark.parametrize("method", sorted(UNARY_REQUEST_METHODS))
def test_unary_request_method_given_no_request(method, channel, streaming):
    request, deserializer = UNARY_REQUEST_METHODS[method]
    raw = channel.stream_stream(
        "/%s/%s" % (SERVICE, method), type(request).SerializeToString, deserializer
    )
    responses, error = drain(raw(iter(()), timeout=10))
    assert responses == []
    assert error is not None
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    # grpcio: '"<method>" requires exactly one request message.'
    assert error.details().endswith(" requires exactly one request message."), error.details()
    assert streaming.servicer.calls == 0


@pytest.mark.parametrize("method", sorted(UNARY_REQUEST_METHODS))
def test_unary_request_method_given_two_requests(method, channel, streaming, support):
    request, deserializer = UNARY_REQUEST_METHODS[method]
    raw = channel.stream_stream(
        "/%s/%s" % (SERVICE, method), type(request).SerializeToString, deserializer
    )
    responses, error = drain(raw(iter([request, request]), timeout=10))
    if not support.using_green:
        # grpcio reads the first request and ignores the second.
        assert error is None
        assert len(responses) == (1 if method == "GetObservations" else 0)
        return
    assert error is not None, responses
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    assert responses == []
    assert streaming.servicer.calls == 0


@pytest.mark.parametrize("count", [0, 2])
@pytest.mark.parametrize("kind", ["unary_unary", "stream_unary"])
def test_single_response_call_given_other_than_one_response(kind, count, channel, support):
    """A unary-response multicallable pointed at the server-streaming method."""
    path = "/%s/ServerStream" % SERVICE
    request = Req(response_count=count, response_size=3)
    multicallable = getattr(channel, kind)(path, Req.SerializeToString, Resp.FromString)
    argument = request if kind == "unary_unary" else iter([request])
    if not support.using_green:
        # grpcio: no response at all gives None; a second response is never
        # read, so the call only ends at its deadline.
        if count == 0:
            assert multicallable(argument, timeout=10) is None
        else:
            error = support.rpc_error(multicallable, argument, timeout=1)
            assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        return
    error = support.rpc_error(multicallable, argument, timeout=5)
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED, (error.code(), error.details())


# --------------------------------------------------- peers in processes

STREAM_PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "stream_peer.py")


def _stream_peer_env(impl):
    env = dict(os.environ)
    env.pop("GRPC_GREEN_TEST_IMPL", None)
    if impl == "grpcio":
        env.pop("LD_PRELOAD", None)  # kept for grpc_green under `make asan`
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture
def stream_peer(hub, support):
    """Factory: stream_peer(*args) -> conftest Process running
    tests/peers/stream_peer.py on the implementation under test."""
    processes = []

    def start(*args):
        process = hub.start_process(
            [sys.executable, STREAM_PEER, "--impl", support.impl, *args],
            env=_stream_peer_env(support.impl),
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.close()


def test_server_process_dies_mid_bidi_stream(stream_peer, make_channel, hub):
    """The peer answers two requests, then exits on reading the third. The
    client reads each answer before it sends the next request, so both
    answers were out of the socket before the peer died."""
    peer = stream_peer("serve")
    port = int(peer.wait_for_output(r"^PORT (\d+)$", timeout=30).group(1))
    stub = streaming_pb2_grpc.StreamingStub(make_channel("127.0.0.1:%d" % port))
    mailbox = Mailbox(hub)

    def requests():
        yield Req(message="m0", fail_after=2, die=True)
        while True:
            message = mailbox.get(timeout=30)
            if message is None:
                return
            yield Req(message=message)

    call = stub.Bidi(requests(), timeout=20)
    try:
        assert next(call).message == "m0"
        mailbox.put("m1")
        assert next(call).message == "m1"
        mailbox.put("m2")  # the peer exits when it reads this one
        responses, error = drain(call)
    finally:
        mailbox.put(None)
    assert responses == []
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    hub.wait_until(lambda: peer.poll() is not None, message="peer did not exit")
    assert peer.poll() == 1


def test_server_process_dies_mid_client_stream(stream_peer, make_channel, hub, releases):
    peer = stream_peer("serve")
    port = int(peer.wait_for_output(r"^PORT (\d+)$", timeout=30).group(1))
    stub = streaming_pb2_grpc.StreamingStub(make_channel("127.0.0.1:%d" % port))
    release = releases()

    def requests():
        yield Req(message="one", fail_after=2, die=True)
        yield Req(message="two")  # the peer exits once it has read this one
        release.wait(30)
        yield Req(message="three")

    future = stub.ClientStream.future(requests(), timeout=20)
    error = future.exception(timeout=20)
    assert isinstance(error, grpc.RpcError)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    hub.wait_until(lambda: peer.poll() is not None, message="peer did not exit")
    assert peer.poll() == 1


@pytest.mark.parametrize("mode", ["READ", "POLL"])
def test_client_process_killed_mid_stream(mode, stream_peer, streaming, make_channel, hub):
    key = new_key("killed-client")
    client = stream_peer("block-client", streaming.target, key, mode)
    client.wait_for_output(r"^READY ready$", timeout=30)
    # Asked over the wire, from a fresh channel: what does the handler see?
    stub = streaming_pb2_grpc.StreamingStub(make_channel(streaming.target))
    request = streaming_pb2.ObservationsRequest(key=key)
    hub.wait_until(lambda: stub.GetObservations(request, timeout=5).responses_yielded == 1)
    client.kill()
    assert client.poll() is not None

    def ended():
        obs = stub.GetObservations(request, timeout=5)
        return obs.finally_ran and obs.callback_ran

    hub.wait_until(ended, timeout=10, message="the handler never saw its client go")
    obs = stub.GetObservations(request, timeout=5)
    assert obs.key == key and obs.started and obs.active_at_start
    _assert_handler_saw_the_end(obs, Block.Mode.Value(mode))


# ---------------------------------------------------------------- memory


def test_no_leak_streaming_calls(green_server, make_channel, hub, support):
    servicer = StreamingServicer(grpc, hub.sleep)
    server = green_server(
        register=lambda s: streaming_pb2_grpc.add_StreamingServicer_to_server(servicer, s),
        grpcio_workers=4,
    )
    stub = streaming_pb2_grpc.StreamingStub(make_channel(server.target))
    aborting = Req(
        response_count=5,
        fail_after=2,
        status_code=grpc.StatusCode.NOT_FOUND.value[0],
        status_details="gone",
    )
    requests = _requests(5)

    def run(n):
        for i in range(n):
            kind = i % 5
            if kind == 0:
                call = stub.ServerStream(Req(response_count=5, response_size=64), timeout=10)
                assert [r.index for r in call] == [0, 1, 2, 3, 4]
            elif kind == 1:
                assert stub.ClientStream(iter(requests), timeout=10).count == 5
            elif kind == 2:
                assert len(list(stub.Bidi(iter(requests), timeout=10))) == 5
            elif kind == 3:
                responses, error = drain(stub.ServerStream(aborting, timeout=10))
                assert len(responses) == 2 and error.code() is grpc.StatusCode.NOT_FOUND
            else:
                call = stub.Block(iter([Block(key="leak", mode=Block.POLL)]), timeout=10)
                assert next(call).message == "ready"
                assert call.cancel() is True
        # Cancelled handlers notice (is_active() -> False) and finish.
        hub.wait_until(lambda: servicer.blocked == 0, timeout=10)

    check_no_growth(run, warmup=300, count=scaled(2_000, support))
