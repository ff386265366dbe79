"""Unary RPCs, client and server of the implementation under test in one process.

With grpc_green both ends share this thread's hub: the test body runs on the
main greenlet, every blocking call parks it, and the server's handlers run on
greenlets of the same hub. No threads.
"""

import socket
import threading
import time

import grpc  # grpc_green (patched by conftest) or grpcio in grpcio mode
import helloworld_pb2
import helloworld_pb2_grpc
import pytest
import testing_pb2
import testing_pb2_grpc

Echo = testing_pb2.EchoRequest


def assert_serving(stub, message="still serving"):
    response = stub.Echo(Echo(message=message), timeout=10)
    assert response.message == message


# ------------------------------------------------------------------ basics


def test_grpc_module_is_the_implementation_under_test(grpc_mod, support):
    """`import grpc` and the generated stubs bind to the module under test."""
    assert grpc.insecure_channel is grpc_mod.insecure_channel
    assert grpc.server is grpc_mod.server
    assert testing_pb2_grpc.grpc.insecure_channel is grpc_mod.insecure_channel
    assert grpc.StatusCode.OK.value == (0, "ok")
    assert issubclass(grpc.RpcError, Exception)
    if support.using_green:
        assert grpc_mod.__name__ == "grpc_green"


def test_echo(echo_stub):
    request = Echo(payload=b"\x00\x01binary\xff", message="héllo wörld ☃ 𝄞 😀")
    response = echo_stub.Echo(request)
    assert isinstance(response, testing_pb2.EchoResponse)
    assert response.payload == request.payload
    assert response.message == request.message


def test_raw_bytes_without_serializers(echo_server, make_channel, support):
    channel = make_channel(echo_server.target)
    upper = channel.unary_unary("/%s/Upper" % support.RAW_SERVICE)
    assert upper(b"abc\x00xyz") == b"ABC\x00XYZ"
    identity = channel.unary_unary("/%s/Identity" % support.RAW_SERVICE)
    assert identity(bytes(range(256))) == bytes(range(256))


def _raise_value_error(_):
    raise ValueError("codec failed")


@pytest.mark.parametrize(
    "codec,details",
    [
        ("request_serializer", "Exception serializing request!"),
        ("response_deserializer", "Exception deserializing response!"),
    ],
)
def test_codec_failure_is_internal(codec, details, echo_server, make_channel, support):
    """grpcio: RpcError INTERNAL with these details from every way of calling;
    the channel goes on serving."""
    channel = make_channel(echo_server.target)
    identity = channel.unary_unary(
        "/%s/Identity" % support.RAW_SERVICE, **{codec: _raise_value_error}
    )
    for invoke in (identity, identity.with_call, lambda r, **kw: identity.future(r, **kw).result()):
        error = support.rpc_error(invoke, b"x", timeout=10)
        assert error.code() is grpc.StatusCode.INTERNAL
        assert error.details() == details
        if support.using_green:
            assert isinstance(error.__context__, ValueError)  # what the codec raised
    plain = channel.unary_unary("/%s/Identity" % support.RAW_SERVICE)
    assert plain(b"still serving", timeout=10) == b"still serving"


def test_call_arguments_as_grpcio(echo_server, make_channel, support):
    """Positional and keyword arguments in grpcio's order and names."""
    channel = make_channel(echo_server.target)
    identity = channel.unary_unary("/%s/Identity" % support.RAW_SERVICE)
    assert identity(b"a", 10, None, None, None, None) == b"a"
    assert (
        identity(
            request=b"b",
            timeout=10,
            metadata=(("k", "v"),),
            credentials=None,
            wait_for_ready=False,
            compression=None,
        )
        == b"b"
    )
    with pytest.raises(TypeError):
        identity(b"c", no_such_argument=1)
    with pytest.raises(TypeError):
        identity(b"d", 10, timeout=10)
    with pytest.raises(TypeError):
        identity()


def test_with_call_returns_response_and_call(echo_stub):
    response, call = echo_stub.Echo.with_call(Echo(message="with_call"), timeout=10)
    assert response.message == "with_call"
    assert call.code() is grpc.StatusCode.OK
    assert call.details() == ""
    # Only application metadata is visible: no content-type, grpc-status, ...
    assert tuple(call.initial_metadata()) == ()
    assert tuple(call.trailing_metadata()) == ()
    assert call.is_active() is False


def test_with_call_carries_server_metadata(echo_stub):
    request = Echo(
        message="md",
        initial_metadata=[testing_pb2.Header(key="server-initial", value="one")],
        trailing_metadata=[testing_pb2.Header(key="server-trailing-bin", binary_value=b"\x00\x01")],
    )
    response, call = echo_stub.Echo.with_call(request)
    assert response.message == "md"
    assert tuple(call.initial_metadata()) == (("server-initial", "one"),)
    assert tuple(call.trailing_metadata()) == (("server-trailing-bin", b"\x00\x01"),)


def test_future_result(echo_stub, hub):
    future = echo_stub.Echo.future(Echo(message="future", sleep_seconds=0.05))
    done = []
    future.add_done_callback(done.append)
    response = future.result(timeout=10)
    assert response.message == "future"
    assert future.done()
    assert not future.cancelled()
    assert future.exception() is None
    assert future.code() is grpc.StatusCode.OK
    hub.wait_until(lambda: done == [future], message="done callback never ran")


def test_future_error_is_the_rpc_error(echo_stub):
    future = echo_stub.Echo.future(
        Echo(status_code=grpc.StatusCode.NOT_FOUND.value[0], status_details="nope", use_abort=True)
    )
    error = future.exception(timeout=10)
    assert isinstance(error, grpc.RpcError)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "nope"
    with pytest.raises(grpc.RpcError) as raised:
        future.result()
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    assert future.code() is grpc.StatusCode.NOT_FOUND
    assert future.details() == "nope"


def test_future_result_timeout(echo_stub):
    future = echo_stub.Echo.future(Echo(message="slow", sleep_seconds=0.3))
    started = time.monotonic()
    with pytest.raises(grpc.FutureTimeoutError):
        future.result(timeout=0.05)
    assert time.monotonic() - started < 0.25
    assert not future.done()
    assert future.result(timeout=10).message == "slow"


def test_future_cancel(echo_stub, echo_server, hub):
    future = echo_stub.Echo.future(Echo(message="to cancel", sleep_seconds=5))
    hub.wait_until(lambda: echo_server.servicer.in_flight == 1)
    assert future.cancel() is True
    assert future.cancelled()
    assert future.done()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    assert future.code() is grpc.StatusCode.CANCELLED
    assert future.details() == "Locally cancelled by application!"
    # The server learns about it: the handler's is_active() turns False.
    hub.wait_until(lambda: ("to cancel", "cancelled") in echo_server.servicer.outcomes)
    assert_serving(echo_stub)


def test_empty_message(echo_stub, echo_server, make_channel, support):
    response = echo_stub.Echo(Echo())
    assert response.payload == b""
    assert response.message == ""
    assert testing_pb2.EchoRequest().SerializeToString() == b""  # a zero-length gRPC message
    identity = make_channel(echo_server.target).unary_unary("/%s/Identity" % support.RAW_SERVICE)
    assert identity(b"") == b""


def test_one_mib_payload(echo_stub, echo_server, make_channel, support):
    payload = bytes(range(256)) * 4096
    assert len(payload) == 1 << 20
    response = echo_stub.Echo(Echo(payload=payload, message="big"), timeout=30)
    assert response.payload == payload
    assert response.message == "big"
    identity = make_channel(echo_server.target).unary_unary("/%s/Identity" % support.RAW_SERVICE)
    assert identity(payload, timeout=30) == payload


def test_channel_context_manager(echo_server):
    with grpc.insecure_channel(echo_server.target) as channel:
        stub = testing_pb2_grpc.TestServiceStub(channel)
        assert stub.Echo(Echo(message="ctx")).message == "ctx"


def test_closed_channel_refuses_calls(echo_server):
    channel = grpc.insecure_channel(echo_server.target)
    stub = testing_pb2_grpc.TestServiceStub(channel)
    assert stub.Echo(Echo(message="before close")).message == "before close"
    channel.close()
    with pytest.raises(ValueError, match="Cannot invoke RPC on closed channel!"):
        stub.Echo(Echo())


# ---------------------------------------------------------------- metadata

BINARY = bytes(range(256))


def test_metadata_both_ways(echo_stub, echo_server):
    sent = (
        ("x-echo-text", "plain value"),
        ("x-echo-data-bin", BINARY),
        ("x-echo-empty-bin", b""),
    )
    request = Echo(
        message="metadata",
        echo_metadata=True,
        initial_metadata=[
            testing_pb2.Header(key="server-initial", value="from server"),
            testing_pb2.Header(key="server-initial-bin", binary_value=b"\x00\xffinit"),
        ],
        trailing_metadata=[
            testing_pb2.Header(key="server-trailing", value="trailer value"),
            testing_pb2.Header(key="server-trailing-bin", binary_value=b"\xfe\x00trail"),
        ],
    )
    response, call = echo_stub.Echo.with_call(request, metadata=sent)

    assert tuple(call.initial_metadata()) == (
        ("server-initial", "from server"),
        ("server-initial-bin", b"\x00\xffinit"),
        ("initial-x-echo-text", "plain value"),
        ("initial-x-echo-data-bin", BINARY),
        ("initial-x-echo-empty-bin", b""),
    )
    assert tuple(call.trailing_metadata()) == (
        ("server-trailing", "trailer value"),
        ("server-trailing-bin", b"\xfe\x00trail"),
        ("trailing-x-echo-text", "plain value"),
        ("trailing-x-echo-data-bin", BINARY),
        ("trailing-x-echo-empty-bin", b""),
    )
    for key, value in call.initial_metadata() + call.trailing_metadata():
        assert isinstance(value, bytes if key.endswith("-bin") else str), (key, value)

    # What the handler saw: the application's entries, in order, typed
    # (bytes for -bin keys), plus user-agent; nothing HTTP/2- or grpc-internal.
    _, received, _ = echo_server.servicer.requests[-1]
    custom = tuple((k, v) for k, v in received if k.startswith("x-echo-"))
    assert custom == sent
    keys = [k for k, _ in received]
    assert "user-agent" in keys
    for key in keys:
        assert not key.startswith(":"), key
        assert key not in (
            "content-type",
            "te",
            "grpc-timeout",
            "grpc-encoding",
            "grpc-accept-encoding",
        ), key


def test_metadata_repeated_keys_keep_order(echo_stub, echo_server):
    sent = (("x-echo-multi", "1"), ("x-echo-other", "x"), ("x-echo-multi", "2"))
    _, call = echo_stub.Echo.with_call(Echo(echo_metadata=True), metadata=sent)
    assert [v for k, v in call.initial_metadata() if k == "initial-x-echo-multi"] == ["1", "2"]
    _, received, _ = echo_server.servicer.requests[-1]
    assert [v for k, v in received if k == "x-echo-multi"] == ["1", "2"]


def test_bytes_value_for_text_key_arrives_as_str(echo_stub, echo_server):
    """grpcio accepts bytes for a non -bin key; the handler sees a str."""
    echo_stub.Echo(Echo(), metadata=(("x-echo-bytes", b"ascii bytes"),))
    _, received, _ = echo_server.servicer.requests[-1]
    assert ("x-echo-bytes", "ascii bytes") in tuple(received)


@pytest.mark.parametrize(
    "metadata",
    [
        [("Upper-Case", "v")],
        [("has space", "v")],
        [("", "v")],
        [("k", "héllo")],
        [("k", "line\nbreak")],
    ],
    ids=["uppercase-key", "space-in-key", "empty-key", "non-ascii-value", "newline-value"],
)
def test_invalid_metadata_is_refused_before_sending(echo_stub, echo_server, metadata, support):
    """grpcio fails such a call locally with RpcError INTERNAL 'Invalid metadata'
    (not ValueError). An implementation may append which entry was bad."""
    calls_before = echo_server.servicer.calls
    error = support.rpc_error(echo_stub.Echo, Echo(), metadata=metadata, timeout=10)
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details().startswith("Invalid metadata"), error.details()
    assert echo_server.servicer.calls == calls_before, "the call reached the server"
    assert_serving(echo_stub)


def test_binary_metadata_value_must_be_bytes(echo_stub, echo_server):
    calls_before = echo_server.servicer.calls
    with pytest.raises(TypeError) as raised:
        echo_stub.Echo(Echo(), metadata=[("x-echo-key-bin", "not bytes")])
    # grpcio: 'Binary metadata key="x-echo-key-bin" expected bytes, got <class 'str'>'
    assert "x-echo-key-bin" in str(raised.value)
    assert "bytes" in str(raised.value)
    assert echo_server.servicer.calls == calls_before
    assert_serving(echo_stub)


# --------------------------------------------------------------- deadlines


def test_deadline_exceeded(echo_stub, echo_server, hub, support):
    started = time.monotonic()
    error = support.rpc_error(echo_stub.Echo, Echo(message="slow", sleep_seconds=2), timeout=0.2)
    elapsed = time.monotonic() - started
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == "Deadline Exceeded"
    assert 0.15 <= elapsed < 1.0, elapsed
    # The handler sees the RPC die (is_active() False) long before its 2 s.
    hub.wait_until(lambda: ("slow", "cancelled") in echo_server.servicer.outcomes, timeout=1.5)
    assert_serving(echo_stub)


def test_time_remaining_reflects_client_timeout(echo_stub):
    response = echo_stub.Echo(Echo(message="tr"), timeout=5)
    assert response.has_time_remaining
    assert 0 < response.time_remaining <= 5.0 + 0.05


def test_time_remaining_without_deadline(echo_stub):
    # grpcio reports a huge number (~9.2e18 s) rather than None here.
    response = echo_stub.Echo(Echo(message="no deadline"))
    assert (not response.has_time_remaining) or response.time_remaining > 1e6


# ------------------------------------------------------- status and details

ERROR_CODES = [
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNAUTHENTICATED,
]


@pytest.mark.parametrize("use_abort", [True, False], ids=["abort", "set_code"])
@pytest.mark.parametrize("code", ERROR_CODES, ids=[c.name for c in ERROR_CODES])
def test_status_code_and_details(echo_stub, code, use_abort, support):
    details = "%s details" % code.name
    error = support.rpc_error(
        echo_stub.Echo,
        Echo(status_code=code.value[0], status_details=details, use_abort=use_abort),
    )
    assert error.code() is code
    assert error.details() == details


DETAILS = [
    "  leading and trailing whitespace  ",
    "line one\nline two\r\n\ttabbed",
    "percent %25 %zz 100% %",
    "héllo wörld ☃",
    "𝄞 😀",
    "",
]


@pytest.mark.parametrize(
    "details", DETAILS, ids=["spaces", "newlines", "percent", "bmp", "non-bmp", "empty"]
)
def test_details_round_trip_exactly(echo_stub, details, support):
    error = support.rpc_error(
        echo_stub.Echo,
        Echo(
            status_code=grpc.StatusCode.FAILED_PRECONDITION.value[0],
            status_details=details,
            use_abort=True,
        ),
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == details


def test_abort_mid_handler_keeps_metadata(echo_stub, support):
    """abort() after metadata was sent/set: the client gets code, details and both."""
    error = support.rpc_error(
        echo_stub.Echo,
        Echo(
            initial_metadata=[testing_pb2.Header(key="sent-before-abort", value="yes")],
            trailing_metadata=[testing_pb2.Header(key="trailer-bin", binary_value=b"\x01\x02")],
            status_code=grpc.StatusCode.ABORTED.value[0],
            status_details="aborted midway",
            use_abort=True,
        ),
    )
    assert error.code() is grpc.StatusCode.ABORTED
    assert error.details() == "aborted midway"
    assert tuple(error.initial_metadata()) == (("sent-before-abort", "yes"),)
    assert tuple(error.trailing_metadata()) == (("trailer-bin", b"\x01\x02"),)
    assert_serving(echo_stub)


class _Status(grpc.Status):
    def __init__(self, code, details, trailing_metadata):
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _context_probe_handlers():
    """Handlers that exercise ServicerContext directly."""

    def abort_with_status(request, context):
        context.abort_with_status(
            _Status(grpc.StatusCode.OUT_OF_RANGE, "with status ☃", (("status-extra", "v"),))
        )

    def abort_ok(request, context):
        context.abort(grpc.StatusCode.OK, "ignored")

    def code_and_details(request, context):
        before = (context.code(), context.details())
        context.set_code(grpc.StatusCode.NOT_FOUND)
        context.set_details("looked everywhere")
        after = (context.code(), context.details())
        context.set_trailing_metadata((("before", repr(before)), ("after", repr(after))))

    def after_abort(request, context):
        try:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "denied")
        except Exception:  # noqa: BLE001 -- abort raises; swallowing it must not matter
            pass
        return b"should not be delivered"

    return grpc.method_handlers_generic_handler(
        "grpc_green.testing.Context",
        {
            name: grpc.unary_unary_rpc_method_handler(fn)
            for name, fn in [
                ("AbortWithStatus", abort_with_status),
                ("AbortOk", abort_ok),
                ("CodeAndDetails", code_and_details),
                ("SwallowedAbort", after_abort),
            ]
        },
    )


@pytest.fixture
def context_channel(green_server, make_channel, support):
    server = green_server(support.EchoServicer(), handlers=[_context_probe_handlers()])
    return make_channel(server.target)


def test_abort_with_status(context_channel, support):
    error = support.rpc_error(
        context_channel.unary_unary("/grpc_green.testing.Context/AbortWithStatus"), b""
    )
    assert error.code() is grpc.StatusCode.OUT_OF_RANGE
    assert error.details() == "with status ☃"
    assert tuple(error.trailing_metadata()) == (("status-extra", "v"),)


def test_abort_with_ok_becomes_unknown(context_channel, support):
    error = support.rpc_error(
        context_channel.unary_unary("/grpc_green.testing.Context/AbortOk"), b""
    )
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert error.details() == ""


def test_swallowed_abort_still_fails_the_rpc(context_channel, support):
    error = support.rpc_error(
        context_channel.unary_unary("/grpc_green.testing.Context/SwallowedAbort"), b""
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "denied"


def test_context_code_and_details_accessors(context_channel, support):
    """grpcio: code() is None until set; details() is None, then *bytes*."""
    error = support.rpc_error(
        context_channel.unary_unary("/grpc_green.testing.Context/CodeAndDetails"), b""
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "looked everywhere"
    trailing = dict(error.trailing_metadata())
    assert trailing["before"] == repr((None, None))
    assert trailing["after"] == repr((grpc.StatusCode.NOT_FOUND, b"looked everywhere"))


def test_handler_exception_is_unknown_and_server_keeps_serving(echo_stub, support):
    error = support.rpc_error(
        echo_stub.Echo, Echo(raise_exception=True, exception_message="kaboom ☃")
    )
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert error.details() == "Exception calling application: kaboom ☃"
    assert_serving(echo_stub)


def test_unimplemented_method_in_servicer(echo_stub, support):
    error = support.rpc_error(echo_stub.NotImplementedByServicer, Echo())
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "Method not implemented!"
    assert_serving(echo_stub)


def test_unknown_method(echo_stub, echo_channel, support):
    error = support.rpc_error(
        echo_channel.unary_unary("/grpc_green.testing.TestService/NoSuchMethod"), b""
    )
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "Method not found!"
    assert_serving(echo_stub)


def test_unknown_service(echo_stub, echo_channel, support):
    error = support.rpc_error(testing_pb2_grpc.UnregisteredServiceStub(echo_channel).Echo, Echo())
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "Method not found!"
    assert_serving(echo_stub)


# ------------------------------------------------------------ connectivity


def _closed_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_unavailable_when_nothing_listens(make_channel, support):
    stub = testing_pb2_grpc.TestServiceStub(make_channel("127.0.0.1:%d" % _closed_port()))
    started = time.monotonic()
    error = support.rpc_error(stub.Echo, Echo(), timeout=10)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details()  # grpcio: 'failed to connect to all addresses; ...'
    assert time.monotonic() - started < 5.0, "UNAVAILABLE should not wait for the deadline"


def test_wait_for_ready_waits_for_the_deadline(make_channel, support):
    stub = testing_pb2_grpc.TestServiceStub(make_channel("127.0.0.1:%d" % _closed_port()))
    started = time.monotonic()
    error = support.rpc_error(stub.Echo, Echo(), timeout=0.3, wait_for_ready=True)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started >= 0.25


# -------------------------------------------------------------- concurrency


@pytest.mark.green_only
def test_thousand_greenlets_share_one_channel(echo_stub, echo_server, hub):
    count = 1000

    def call(i):
        request = Echo(
            message="call %d" % i, payload=i.to_bytes(4, "big") * (i % 7 + 1), sleep_seconds=0.02
        )
        return echo_stub.Echo(request, timeout=30)

    started = time.monotonic()
    tasks = [hub.spawn(call, i) for i in range(count)]
    for task in tasks:
        assert task.join(timeout=30)
    elapsed = time.monotonic() - started
    for i, task in enumerate(tasks):
        response = task.get()
        assert response.message == "call %d" % i
        assert response.payload == i.to_bytes(4, "big") * (i % 7 + 1)
    assert echo_server.servicer.calls == count
    # Handlers sleep cooperatively, so the calls must overlap, not run in turn.
    assert echo_server.servicer.max_in_flight >= 100, echo_server.servicer.max_in_flight
    assert elapsed < 15, elapsed


def test_thousand_concurrent_futures_on_one_channel(echo_stub, echo_server):
    count = 1000
    futures = [
        echo_stub.Echo.future(Echo(message=str(i), payload=b"p" * (i % 50)), timeout=60)
        for i in range(count)
    ]
    for i, future in enumerate(futures):
        response = future.result()
        assert response.message == str(i)
        assert response.payload == b"p" * (i % 50)
    assert echo_server.servicer.calls == count


@pytest.mark.green_only
def test_no_threads_are_started(green_server, make_channel, hub, support):
    before = set(threading.enumerate())
    server = green_server(support.EchoServicer(), handlers=[support.raw_handlers()])
    stub = testing_pb2_grpc.TestServiceStub(make_channel(server.target))
    assert stub.Echo(Echo(message="a")).message == "a"
    assert stub.Echo.future(Echo(message="b")).result().message == "b"
    task = hub.spawn(stub.Echo, Echo(message="c"), timeout=0.05)
    assert task.join(timeout=5)
    support.rpc_error(stub.Echo, Echo(sleep_seconds=1), timeout=0.05)
    server.server.stop(None).wait(5)
    assert set(threading.enumerate()) == before


# -------------------------------------------------------- generated stubs


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message="Hello, %s!" % request.name)


def test_generated_helloworld_stub(green_server, make_channel, grpc_mod):
    assert helloworld_pb2_grpc.grpc.server is grpc_mod.server
    server = green_server(
        register=lambda s: helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), s)
    )
    stub = helloworld_pb2_grpc.GreeterStub(make_channel(server.target))
    assert stub.SayHello(helloworld_pb2.HelloRequest(name="you")).message == "Hello, you!"
    reply, call = stub.SayHello.with_call(helloworld_pb2.HelloRequest(name="ünïcode"))
    assert reply.message == "Hello, ünïcode!"
    assert call.code() is grpc.StatusCode.OK


def test_deserializer_returning_none_is_internal(green_server, make_channel, support):
    """grpcio reads a deserializer's None as its failure: the client's call
    ends INTERNAL "Exception deserializing response!", the server's
    "Exception deserializing request!" (before, grpc_green's server sent no
    status at all and the client waited for its deadline)."""
    handler = grpc.unary_unary_rpc_method_handler(
        lambda request, context: request, request_deserializer=lambda raw: None
    )
    server = green_server(
        handlers=[
            grpc.method_handlers_generic_handler(
                "none.Svc",
                {
                    "Strict": handler,
                    "Plain": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
                },
            )
        ]
    )
    channel = make_channel(server.target)
    strict = channel.unary_unary("/none.Svc/Strict")
    error = support.rpc_error(strict, b"x", timeout=5)
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "Exception deserializing request!"
    plain = channel.unary_unary("/none.Svc/Plain", response_deserializer=lambda raw: None)
    for invoke in (plain, plain.with_call, lambda r, **kw: plain.future(r, **kw).result()):
        error = support.rpc_error(invoke, b"x", timeout=5)
        assert error.code() is grpc.StatusCode.INTERNAL
        assert error.details() == "Exception deserializing response!"
