"""Server-side behaviour: limits, shutdown, raw HTTP/2, ServicerContext."""

import re
import shutil
import socket
import time

import grpc  # grpc_green (patched by conftest) or grpcio in grpcio mode
import pytest
import testing_pb2
import testing_pb2_grpc

Echo = testing_pb2.EchoRequest
PEER_RE = re.compile(r"^ipv4:127\.0\.0\.1:(\d+)$")


def assert_serving(target, make_channel, message="still serving"):
    """A fresh channel to `target` gets an answer."""
    stub = testing_pb2_grpc.TestServiceStub(make_channel(target))
    assert stub.Echo(Echo(message=message), timeout=10).message == message


def stub_for(server, make_channel):
    return testing_pb2_grpc.TestServiceStub(make_channel(server.target))


# ----------------------------------------------------------------- limits


def test_maximum_concurrent_rpcs(green_server, make_channel, hub, support):
    server = green_server(support.EchoServicer(), maximum_concurrent_rpcs=2)
    stub = stub_for(server, make_channel)
    first = stub.Echo.future(Echo(message="first", sleep_seconds=0.5), timeout=10)
    second = stub.Echo.future(Echo(message="second", sleep_seconds=0.5), timeout=10)
    hub.wait_until(lambda: server.servicer.in_flight == 2, message="two calls never in flight")

    error = support.rpc_error(stub.Echo, Echo(message="third"), timeout=10)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "Concurrent RPC limit exceeded!"

    assert first.result().message == "first"
    assert second.result().message == "second"
    assert server.servicer.calls == 2  # the third never reached the handler
    # Slots are released when calls end.
    hub.wait_until(lambda: server.servicer.in_flight == 0)
    assert stub.Echo(Echo(message="fourth"), timeout=10).message == "fourth"


# --------------------------------------------------------------- shutdown


def test_stop_with_grace_finishes_in_flight_and_refuses_new(
    green_server, make_channel, hub, support
):
    server = green_server(support.EchoServicer())
    stub = stub_for(server, make_channel)
    assert stub.Echo(Echo(message="warm")).message == "warm"
    in_flight = stub.Echo.future(Echo(message="in flight", sleep_seconds=0.4), timeout=10)
    hub.wait_until(lambda: server.servicer.in_flight == 1)

    started = time.monotonic()
    event = server.server.stop(5.0)
    assert time.monotonic() - started < 0.2, "stop(grace) must not block"

    # New calls are refused (the listener is closed): UNAVAILABLE.
    late = testing_pb2_grpc.TestServiceStub(make_channel(server.target))
    error = support.rpc_error(late.Echo, Echo(message="too late"), timeout=5)
    assert error.code() is grpc.StatusCode.UNAVAILABLE

    # The call already running completes normally.
    assert in_flight.result().message == "in flight"
    assert ("in flight", "completed") in server.servicer.outcomes
    assert event.wait(5) is True
    assert time.monotonic() - started < 3.0, "shutdown should end with the last call"
    assert server.server.wait_for_termination(timeout=0.1) is False
    assert "too late" not in [m for m, _, _ in server.servicer.requests]


def test_stop_none_cancels_in_flight(green_server, make_channel, hub, support):
    server = green_server(support.EchoServicer())
    stub = stub_for(server, make_channel)
    in_flight = stub.Echo.future(Echo(message="doomed", sleep_seconds=5), timeout=10)
    hub.wait_until(lambda: server.servicer.in_flight == 1)

    started = time.monotonic()
    event = server.server.stop(None)
    assert event.wait(5) is True
    error = in_flight.exception(timeout=5)
    assert isinstance(error, grpc.RpcError)
    # grpcio's client reports UNAVAILABLE 'Cancelling all calls' here.
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 2.0
    # The handler saw its RPC end and its add_callback ran.
    hub.wait_until(lambda: ("doomed", "cancelled") in server.servicer.outcomes)
    hub.wait_until(lambda: "doomed" in server.servicer.callbacks)
    assert server.server.wait_for_termination(timeout=0.1) is False


def test_grace_expiry_cancels_calls(green_server, make_channel, hub, support):
    server = green_server(support.EchoServicer())
    stub = stub_for(server, make_channel)
    in_flight = stub.Echo.future(Echo(message="outlives grace", sleep_seconds=5), timeout=10)
    hub.wait_until(lambda: server.servicer.in_flight == 1)
    started = time.monotonic()
    event = server.server.stop(0.2)
    error = in_flight.exception(timeout=5)
    elapsed = time.monotonic() - started
    assert isinstance(error, grpc.RpcError)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert 0.15 <= elapsed < 2.0, elapsed
    assert event.wait(5) is True


def test_stop_twice_and_stop_unstarted(green_server, support):
    server = green_server()
    assert server.server.stop(None).wait(5) is True
    assert server.server.stop(None).wait(1) is True  # already stopped: set at once
    assert support.new_server().stop(None).wait(1) is True


def test_start_twice_raises(green_server):
    server = green_server()
    with pytest.raises(ValueError, match="Cannot start already-started server!"):
        server.server.start()


def test_wait_for_termination(green_server, hub):
    server = green_server()
    started = time.monotonic()
    assert server.server.wait_for_termination(timeout=0.1) is True  # timed out
    assert 0.09 <= time.monotonic() - started < 1.0

    def stop_soon():
        hub.sleep(0.1)
        server.server.stop(None)

    stopper = hub.spawn(stop_soon)
    started = time.monotonic()
    assert server.server.wait_for_termination() is False  # terminated, no timeout
    assert time.monotonic() - started < 2.0
    assert stopper.join(timeout=5)
    stopper.get()
    assert server.server.wait_for_termination(timeout=0.1) is False


# ---------------------------------------------------------- raw HTTP/2

needs_nghttp = pytest.mark.skipif(
    shutil.which("nghttp") is None, reason="nghttp (Debian nghttp2-client) not installed"
)


def nghttp(hub, tmp_path, target, path, content_type, body):
    body_file = tmp_path / "body"
    body_file.write_bytes(body)
    result = hub.run_process(
        [
            "nghttp",
            "-v",
            "-n",
            "-t",
            "10",
            "-H",
            "content-type: %s" % content_type,
            "-H",
            "te: trailers",
            "-d",
            str(body_file),
            "http://%s%s" % (target, path),
        ],
        timeout=20,
    )
    return result.stdout + result.stderr


@needs_nghttp
def test_raw_http2_grpc_request(echo_server, make_channel, hub, tmp_path, support):
    """A hand-made gRPC request (nghttp) is answered: the server speaks plain h2c."""
    body = b"\x00" + len(b"hello").to_bytes(4, "big") + b"hello"
    out = nghttp(
        hub,
        tmp_path,
        echo_server.target,
        "/%s/Upper" % support.RAW_SERVICE,
        "application/grpc",
        body,
    )
    assert ":status: 200" in out, out
    assert "content-type: application/grpc" in out, out
    assert "grpc-status: 0" in out, out
    assert_serving(echo_server.target, make_channel)


@needs_nghttp
@pytest.mark.green_only  # grpcio resets the stream (RST_STREAM INTERNAL_ERROR) instead
def test_non_grpc_content_type_gets_415(echo_server, make_channel, hub, tmp_path, support):
    out = nghttp(
        hub,
        tmp_path,
        echo_server.target,
        "/grpc_green.testing.TestService/Echo",
        "text/plain",
        b"hello",
    )
    assert ":status: 415" in out, out
    assert echo_server.servicer.calls == 0
    assert_serving(echo_server.target, make_channel)


# ------------------------------------------------------- ServicerContext


def test_peer_format(echo_stub, echo_server):
    response = echo_stub.Echo(Echo(message="peer"))
    match = PEER_RE.match(response.peer)
    assert match, response.peer
    assert 0 < int(match.group(1)) < 65536
    assert int(match.group(1)) != echo_server.port  # the client's port, not ours


def test_add_callback_runs_when_the_rpc_ends(echo_stub, echo_server, hub, support):
    echo_stub.Echo(Echo(message="ok call"))
    hub.wait_until(lambda: "ok call" in echo_server.servicer.callbacks)

    support.rpc_error(
        echo_stub.Echo,
        Echo(message="aborted call", status_code=5, status_details="x", use_abort=True),
    )
    hub.wait_until(lambda: "aborted call" in echo_server.servicer.callbacks)

    support.rpc_error(echo_stub.Echo, Echo(message="raising call", raise_exception=True))
    hub.wait_until(lambda: "raising call" in echo_server.servicer.callbacks)

    support.rpc_error(echo_stub.Echo, Echo(message="expired call", sleep_seconds=2), timeout=0.1)
    hub.wait_until(lambda: "expired call" in echo_server.servicer.callbacks, timeout=2)

    assert echo_stub.Echo(Echo(message="after")).message == "after"


def _context_handlers(log):
    def during(request, context):
        log.append(("active", context.is_active()))
        log.append(("add_callback", context.add_callback(lambda: log.append("callback"))))
        return b""

    def metadata_twice(request, context):
        context.send_initial_metadata((("first", "1"),))
        try:
            context.send_initial_metadata((("second", "2"),))
        except ValueError as error:
            log.append(("second send", str(error)))
        return b"done"

    def cancel(request, context):
        context.cancel()
        return b"never delivered"

    return grpc.method_handlers_generic_handler(
        "grpc_green.testing.Ctx",
        {
            "During": grpc.unary_unary_rpc_method_handler(during),
            "MetadataTwice": grpc.unary_unary_rpc_method_handler(metadata_twice),
            "Cancel": grpc.unary_unary_rpc_method_handler(cancel),
        },
    )


def test_context_is_active_and_add_callback(green_server, make_channel, hub):
    log = []
    server = green_server(handlers=[_context_handlers(log)])
    channel = make_channel(server.target)
    assert channel.unary_unary("/grpc_green.testing.Ctx/During")(b"") == b""
    hub.wait_until(lambda: "callback" in log)
    assert log == [("active", True), ("add_callback", True), "callback"]


def test_initial_metadata_only_once(green_server, make_channel):
    log = []
    server = green_server(handlers=[_context_handlers(log)])
    channel = make_channel(server.target)
    response, call = channel.unary_unary("/grpc_green.testing.Ctx/MetadataTwice").with_call(b"")
    assert response == b"done"
    assert tuple(call.initial_metadata()) == (("first", "1"),)
    assert log == [("second send", "Initial metadata no longer allowed!")]


def test_context_cancel(green_server, make_channel, support):
    server = green_server(handlers=[_context_handlers([])])
    channel = make_channel(server.target)
    error = support.rpc_error(channel.unary_unary("/grpc_green.testing.Ctx/Cancel"), b"", timeout=5)
    assert error.code() is grpc.StatusCode.CANCELLED
    assert channel.unary_unary("/grpc_green.testing.Ctx/During")(b"", timeout=5) == b""


# --------------------------------------------------------- construction


def test_handlers_passed_to_constructor(make_channel, support):
    server = support.new_server(handlers=[support.raw_handlers()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        channel = make_channel("127.0.0.1:%d" % port)
        assert channel.unary_unary("/%s/Upper" % support.RAW_SERVICE)(b"x") == b"X"
    finally:
        server.stop(None).wait(5)


def test_ipv6_any_address_accepts_ipv4_and_ipv6(green_server, make_channel, support):
    handle = green_server(support.EchoServicer(), address="[::]:0")
    for host in ("127.0.0.1", "[::1]", "localhost"):
        stub = testing_pb2_grpc.TestServiceStub(make_channel("%s:%d" % (host, handle.port)))
        assert stub.Echo(Echo(message=host), timeout=10).message == host


def test_port_already_in_use(support):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        server = support.new_server()
        # grpcio: RuntimeError('Failed to bind to address 127.0.0.1:N; ...')
        with pytest.raises(RuntimeError, match="Failed to bind to address"):
            server.add_insecure_port("127.0.0.1:%d" % sock.getsockname()[1])
    finally:
        sock.close()


def test_invalid_trailing_metadata_from_a_handler_ends_the_call(
    green_server, make_channel, support
):
    """grpcio refuses it on the way out: INTERNAL "Invalid metadata" (before,
    grpc_green's handler greenlet died with the error and the client waited
    for its deadline)."""

    def handler(request, context):
        context.set_trailing_metadata((("Bad Key", "v"),))
        return request

    server = green_server(
        handlers=[
            grpc.method_handlers_generic_handler(
                "bad.Trailers", {"M": grpc.unary_unary_rpc_method_handler(handler)}
            )
        ]
    )
    channel = make_channel(server.target)
    started = time.monotonic()
    error = support.rpc_error(channel.unary_unary("/bad.Trailers/M"), b"x", timeout=10)
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "Invalid metadata"
    assert time.monotonic() - started < 5
