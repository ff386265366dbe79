"""Interop with real grpcio, which always runs in a subprocess.

Part 1: the client under test -> tests/peers/grpcio_server.py.
Part 2: tests/peers/grpcio_client.py -> the server under test, which runs on
this thread's hub: while the subprocess runs this process keeps serving
because the conftest helpers wait for it cooperatively (poll + hub.sleep).
"""

import base64
import re
import time

import grpc  # grpc_green (patched by conftest) or grpcio in grpcio mode
import pytest
import testing_pb2
import testing_pb2_grpc

Echo = testing_pb2.EchoRequest
BINARY = bytes(range(256))
PEER_RE = re.compile(r"^ipv4:127\.0\.0\.1:\d+$")


def from_json(value):
    """Undoes grpcio_client.py's {"b64": ...} encoding of bytes."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def md(json_metadata):
    return tuple((key, from_json(value)) for key, value in json_metadata)


# ============================================ client under test -> grpcio


@pytest.fixture
def peer_stub(grpcio_server, make_channel):
    return testing_pb2_grpc.TestServiceStub(make_channel(grpcio_server.target))


def test_echo_to_grpcio(peer_stub):
    request = Echo(payload=b"\x00\x01green\xff", message="héllo wörld ☃ 𝄞 😀")
    response, call = peer_stub.Echo.with_call(request, timeout=10)
    assert response.payload == request.payload
    assert response.message == request.message
    assert call.code() is grpc.StatusCode.OK
    assert tuple(call.initial_metadata()) == ()
    assert tuple(call.trailing_metadata()) == ()


def test_empty_and_large_messages_to_grpcio(peer_stub, grpcio_server, make_channel):
    empty = peer_stub.Echo(Echo())
    assert (empty.payload, empty.message) == (b"", "")
    payload = BINARY * 4096
    assert peer_stub.Echo(Echo(payload=payload), timeout=30).payload == payload
    raw = make_channel(grpcio_server.target).unary_unary("/grpc_green.testing.Raw/Identity")
    assert raw(b"") == b""
    assert raw(payload, timeout=30) == payload


def test_grpcio_server_sees_client_peer_and_user_agent(peer_stub):
    response = peer_stub.Echo(Echo(message="who am i"))
    assert PEER_RE.match(response.peer), response.peer
    keys = [h.key for h in response.received_metadata]
    assert "user-agent" in keys
    assert all(not k.startswith(":") and k not in ("content-type", "te") for k in keys), keys


def test_metadata_both_ways_with_grpcio(peer_stub):
    sent = (
        ("x-echo-text", "plain value"),
        ("x-echo-data-bin", BINARY),
        ("x-echo-empty-bin", b""),
    )
    request = Echo(
        echo_metadata=True,
        initial_metadata=[testing_pb2.Header(key="server-initial-bin", binary_value=b"\x00\xff")],
        trailing_metadata=[testing_pb2.Header(key="server-trailing", value="t")],
    )
    response, call = peer_stub.Echo.with_call(request, metadata=sent)
    assert tuple(call.initial_metadata()) == (
        ("server-initial-bin", b"\x00\xff"),
        ("initial-x-echo-text", "plain value"),
        ("initial-x-echo-data-bin", BINARY),
        ("initial-x-echo-empty-bin", b""),
    )
    assert tuple(call.trailing_metadata()) == (
        ("server-trailing", "t"),
        ("trailing-x-echo-text", "plain value"),
        ("trailing-x-echo-data-bin", BINARY),
        ("trailing-x-echo-empty-bin", b""),
    )
    received = tuple(
        (h.key, h.binary_value if h.key.endswith("-bin") else h.value)
        for h in response.received_metadata
        if h.key.startswith("x-echo-")
    )
    assert received == sent


STATUS_CASES = [
    (grpc.StatusCode.INVALID_ARGUMENT, "bad argument", True),
    (grpc.StatusCode.NOT_FOUND, "set via set_code", False),
    (grpc.StatusCode.PERMISSION_DENIED, "héllo wörld ☃", True),
    (grpc.StatusCode.FAILED_PRECONDITION, "𝄞 😀", True),
    (grpc.StatusCode.INTERNAL, "line one\nline two\ttab  ", False),
    (grpc.StatusCode.UNAVAILABLE, "percent %25 %zz 100%", True),
]


@pytest.mark.parametrize(
    "code, details, use_abort", STATUS_CASES, ids=[c[0].name for c in STATUS_CASES]
)
def test_status_and_details_from_grpcio(peer_stub, code, details, use_abort, support):
    error = support.rpc_error(
        peer_stub.Echo, Echo(status_code=code.value[0], status_details=details, use_abort=use_abort)
    )
    assert error.code() is code
    assert error.details() == details


def test_abort_keeps_metadata_from_grpcio(peer_stub, support):
    error = support.rpc_error(
        peer_stub.Echo,
        Echo(
            initial_metadata=[testing_pb2.Header(key="early", value="yes")],
            trailing_metadata=[testing_pb2.Header(key="late-bin", binary_value=b"\x01")],
            status_code=grpc.StatusCode.ABORTED.value[0],
            status_details="stop",
            use_abort=True,
        ),
    )
    assert error.code() is grpc.StatusCode.ABORTED
    assert error.details() == "stop"
    assert tuple(error.initial_metadata()) == (("early", "yes"),)
    assert tuple(error.trailing_metadata()) == (("late-bin", b"\x01"),)


def test_grpcio_handler_exception(peer_stub, support):
    error = support.rpc_error(
        peer_stub.Echo, Echo(raise_exception=True, exception_message="kaboom ☃")
    )
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert error.details() == "Exception calling application: kaboom ☃"


def test_deadline_against_grpcio(peer_stub, support):
    started = time.monotonic()
    error = support.rpc_error(peer_stub.Echo, Echo(sleep_seconds=2), timeout=0.2)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == "Deadline Exceeded"
    assert time.monotonic() - started < 1.0
    response = peer_stub.Echo(Echo(message="tr"), timeout=5)
    assert 0 < response.time_remaining <= 5.05  # grpc-timeout reached grpcio


def test_unimplemented_on_grpcio(peer_stub, grpcio_server, make_channel, support):
    channel = make_channel(grpcio_server.target)
    error = support.rpc_error(
        channel.unary_unary("/grpc_green.testing.TestService/NoSuchMethod"), b""
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    error = support.rpc_error(testing_pb2_grpc.UnregisteredServiceStub(channel).Echo, Echo())
    assert (error.code(), error.details()) == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    error = support.rpc_error(peer_stub.NotImplementedByServicer, Echo())
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "Method not implemented!",
    )


def test_concurrent_calls_to_grpcio(peer_stub):
    futures = [
        peer_stub.Echo.future(Echo(message=str(i), sleep_seconds=0.05), timeout=30)
        for i in range(200)
    ]
    assert [f.result().message for f in futures] == [str(i) for i in range(200)]


def test_grpcio_server_dying_mid_call(grpcio_server_factory, make_channel, hub, support):
    """The server process exits during the call: UNAVAILABLE, and life goes on."""
    doomed = grpcio_server_factory()
    stub = testing_pb2_grpc.TestServiceStub(make_channel(doomed.target))
    assert stub.Echo(Echo(message="alive")).message == "alive"
    started = time.monotonic()
    error = support.rpc_error(stub.Echo, Echo(die=True), timeout=10)
    # What grpcio's own client reports: UNAVAILABLE 'Stream removed (Socket closed)'
    # (details are implementation-specific).
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 5.0
    hub.wait_until(lambda: not doomed.alive(), message="peer did not exit")
    assert doomed.process.poll() == 1

    survivor = grpcio_server_factory()
    other = testing_pb2_grpc.TestServiceStub(make_channel(survivor.target))
    assert other.Echo(Echo(message="next server")).message == "next server"
    # The broken channel does not recover by itself (nothing listens there).
    assert support.rpc_error(stub.Echo, Echo(), timeout=5).code() is grpc.StatusCode.UNAVAILABLE


# ============================================ grpcio client -> server under test


def test_grpcio_client_echo(echo_server, grpcio_client):
    result = grpcio_client("echo", echo_server.target)["results"]["echo"]
    assert "crashed" not in result, result.get("crashed")
    basic = result["basic"]
    assert basic["ok"], basic
    assert from_json(basic["response"]["payload"]) == b"\x00\x01grpcio\xff"
    assert basic["response"]["message"] == "héllo 😀"
    assert basic["initial_metadata"] == [] and basic["trailing_metadata"] == []
    assert result["empty"]["ok"] and from_json(result["empty"]["response"]["payload"]) == b""
    assert result["raw_empty"]["ok"] and from_json(result["raw_empty"]["response"]) == b""
    assert from_json(result["raw_upper"]["response"]) == b"ABC"
    large = result["large"]
    assert large["ok"], {k: v for k, v in large.items() if k != "response"}
    assert from_json(large["response"]["payload"]) == BINARY * 4096

    # The server saw a grpcio client.
    message, metadata, peer = echo_server.servicer.requests[0]
    assert message == "héllo 😀"
    assert PEER_RE.match(peer), peer
    assert dict(metadata)["user-agent"].startswith("grpc-python/")


def test_grpcio_client_metadata(echo_server, grpcio_client):
    result = grpcio_client("metadata", echo_server.target)["results"]["metadata"]
    assert "crashed" not in result, result.get("crashed")
    call = result["call"]
    assert call["ok"], call
    sent = md(result["sent"])
    assert md(call["initial_metadata"]) == (
        ("server-initial", "from server"),
        ("server-initial-bin", b"\x00\xffinit"),
    ) + tuple(("initial-" + k, v) for k, v in sent)
    assert md(call["trailing_metadata"]) == (
        ("server-trailing", "trailer value"),
        ("server-trailing-bin", b"\xfe\x00trail"),
    ) + tuple(("trailing-" + k, v) for k, v in sent)
    received = md(call["response"]["received_metadata"])
    assert tuple(kv for kv in received if kv[0].startswith("x-echo-")) == sent
    # And in-process, the handler got bytes for -bin keys.
    _, metadata, _ = echo_server.servicer.requests[-1]
    assert ("x-echo-data-bin", BINARY) in tuple(metadata)


def test_grpcio_client_status_and_details(echo_server, grpcio_client):
    results = grpcio_client("status", echo_server.target)["results"]["status"]
    assert isinstance(results, list), results
    assert len(results) >= 20
    for case in results:
        call = case["call"]
        assert not call["ok"], case
        assert (call["code"], call["details"]) == (case["code"], case["details"]), case


def test_grpcio_client_exception_and_unimplemented(echo_server, grpcio_client):
    results = grpcio_client("exception,unimplemented", echo_server.target)["results"]
    exc = results["exception"]
    assert (exc["raise"]["code"], exc["raise"]["details"]) == (
        "UNKNOWN",
        "Exception calling application: kaboom ☃",
    )
    assert exc["after"]["ok"]
    unimpl = results["unimplemented"]
    assert (unimpl["servicer"]["code"], unimpl["servicer"]["details"]) == (
        "UNIMPLEMENTED",
        "Method not implemented!",
    )
    assert (unimpl["method"]["code"], unimpl["method"]["details"]) == (
        "UNIMPLEMENTED",
        "Method not found!",
    )
    assert (unimpl["service"]["code"], unimpl["service"]["details"]) == (
        "UNIMPLEMENTED",
        "Method not found!",
    )
    assert unimpl["after"]["ok"]


def test_grpcio_client_deadlines(echo_server, grpcio_client):
    result = grpcio_client("deadline", echo_server.target)["results"]["deadline"]
    exceeded = result["exceeded"]
    assert (exceeded["code"], exceeded["details"]) == ("DEADLINE_EXCEEDED", "Deadline Exceeded")
    assert exceeded["elapsed"] < 1.0
    tr = result["time_remaining"]["response"]
    assert tr["has_time_remaining"] and 0 < tr["time_remaining"] <= 5.05
    no_deadline = result["no_deadline"]["response"]
    assert (not no_deadline["has_time_remaining"]) or no_deadline["time_remaining"] > 1e6
    assert result["after"]["ok"]
    # The server noticed the expired deadline (is_active() went False).
    assert ("slow", "cancelled") in echo_server.servicer.outcomes


def test_grpcio_client_concurrent_calls(echo_server, grpcio_client):
    result = grpcio_client("concurrent", echo_server.target)["results"]["concurrent"]
    assert result.get("mismatches") == [], result
    assert echo_server.servicer.calls == result["count"]
    assert echo_server.servicer.max_in_flight > 1


def test_grpcio_client_invalid_metadata_never_arrives(echo_server, grpcio_client):
    result = grpcio_client("invalid_metadata", echo_server.target)["results"]["invalid_metadata"]
    for name in ("uppercase_key", "space_in_key", "non_ascii_value"):
        assert (result[name]["code"], result[name]["details"]) == ("INTERNAL", "Invalid metadata")
    assert result["after"]["ok"]
    assert echo_server.servicer.calls == 1
