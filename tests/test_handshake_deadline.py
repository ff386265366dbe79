"""The HTTP/2 handshake deadline, client and server side.

A port that accepts TCP and never sends HTTP/2 SETTINGS (a server bound but
not started, a stuck proxy) must not hold a call forever: grpcio fails it
UNAVAILABLE once the connect deadline passes (max(grpc.min_reconnect_backoff_ms,
the backoff delay); 20 s by default), and wait_for_ready calls wait on through
the reconnection attempts. A server closes a connection whose client has not
sent its SETTINGS within grpc.server_handshake_timeout_ms (120 s by default).

Deadlines here are short (100-200 ms); the bounds on how long things take
are generous, for a busy machine.
"""

import json
import socket
import sys
import time

import grpc  # grpc_green (patched by conftest) or grpcio in grpcio mode
import pytest
import testing_pb2
import testing_pb2_grpc

TIMED_OUT = "connection attempt timed out before receiving SETTINGS frame"
SERVER_TIMED_OUT = b"Did not receive HTTP/2 settings before handshake timeout"
SHORT = [
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 100),
]


@pytest.fixture
def silent_port():
    """A listening socket that never accepts: the kernel completes each TCP
    handshake and queues the connection, and no byte ever comes back."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)
    yield listener
    listener.close()


def connections_made(listener):
    """How many connections reached `listener` (closed ones included)."""
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def target_of(listener):
    return "127.0.0.1:%d" % listener.getsockname()[1]


def test_silent_server_fails_a_call_unavailable(silent_port, make_channel, support):
    channel = make_channel(target_of(silent_port), options=SHORT)
    stub = testing_pb2_grpc.TestServiceStub(channel)
    start = time.monotonic()
    # The call's own deadline only keeps a regression from hanging the suite.
    error = support.rpc_error(stub.Echo, testing_pb2.EchoRequest(message="x"), timeout=30)
    took = time.monotonic() - start
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert "failed to connect to all addresses" in error.details()
    assert TIMED_OUT in error.details()
    assert took < 15, took
    assert connections_made(silent_port) >= 1


def test_grpcio_fails_the_same_call_the_same_way(silent_port, hub):
    # Real grpcio, in its own process, against the same silent port.
    script = (
        "import grpc, json, sys\n"
        "channel = grpc.insecure_channel(sys.argv[1], options=%r)\n"
        "try:\n"
        "    channel.unary_unary('/grpc_green.testing.TestService/Echo')(b'')\n"
        "    print(json.dumps({'code': 'OK'}))\n"
        "except grpc.RpcError as e:\n"
        "    print(json.dumps({'code': e.code().name, 'details': e.details()}))\n" % (SHORT,)
    )
    result = hub.run_process([sys.executable, "-c", script, target_of(silent_port)], timeout=60)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["code"] == "UNAVAILABLE", outcome
    assert TIMED_OUT in outcome["details"], outcome


def test_wait_for_ready_call_waits_through_reconnection(silent_port, make_channel, support):
    options = [
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 100),
    ]
    channel = make_channel(target_of(silent_port), options=options)
    stub = testing_pb2_grpc.TestServiceStub(channel)
    error = support.rpc_error(
        stub.Echo, testing_pb2.EchoRequest(message="x"), wait_for_ready=True, timeout=1.5
    )
    # Not UNAVAILABLE: its own deadline ended it, after several attempts.
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
    assert connections_made(silent_port) >= 2


def test_the_default_connect_deadline_is_not_short(silent_port, make_channel, support):
    # 20 s by default: a call's own shorter deadline comes first.
    stub = testing_pb2_grpc.TestServiceStub(make_channel(target_of(silent_port)))
    error = support.rpc_error(stub.Echo, testing_pb2.EchoRequest(message="x"), timeout=0.5)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.details()


def test_server_closes_a_connection_that_never_sends_settings(green_server, hub, support):
    server = green_server(
        support.EchoServicer(), options=[("grpc.server_handshake_timeout_ms", 200)]
    )
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    received = b""
    closed = []

    def read_until_closed():
        nonlocal received
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            data = b""
        received += data
        if not data:
            closed.append(True)
        return bool(closed)

    try:
        hub.wait_until(read_until_closed, timeout=15, message="the server kept the connection")
    finally:
        sock.close()
    # SETTINGS, then GOAWAY saying why, as grpcio's server does.
    assert SERVER_TIMED_OUT in received, received


def test_calls_outlive_both_handshake_deadlines(green_server, make_channel, support):
    server = green_server(
        support.EchoServicer(), options=[("grpc.server_handshake_timeout_ms", 100)]
    )
    options = [("grpc.min_reconnect_backoff_ms", 100), ("grpc.initial_reconnect_backoff_ms", 100)]
    stub = testing_pb2_grpc.TestServiceStub(make_channel(server.target, options=options))
    # One call that spans both deadlines several times over: the timers
    # stopped at SETTINGS, so the connection carries it to the end.
    reply = stub.Echo(testing_pb2.EchoRequest(message="slow", sleep_seconds=0.6), timeout=30)
    assert reply.message == "slow"
    assert stub.Echo(testing_pb2.EchoRequest(message="next"), timeout=30).message == "next"


@pytest.mark.green_only
@pytest.mark.parametrize(
    "option",
    [
        "grpc.min_reconnect_backoff_ms",
        "grpc.initial_reconnect_backoff_ms",
        "grpc.max_reconnect_backoff_ms",
    ],
)
def test_reconnect_options_that_are_not_ints_raise(option):
    # gRPC core would ignore them and keep its default: a silent surprise.
    with pytest.raises(TypeError, match=option):
        grpc.insecure_channel("127.0.0.1:1", options=[(option, "200")])


@pytest.mark.green_only
def test_server_handshake_timeout_that_is_not_an_int_raises():
    with pytest.raises(TypeError, match="grpc.server_handshake_timeout_ms"):
        grpc.server(options=[("grpc.server_handshake_timeout_ms", 0.5)])
