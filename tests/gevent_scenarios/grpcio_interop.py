"""grpc_green on gevent's hub talking to real grpcio in another process.

    python grpcio_interop.py grpcio_client
    python grpcio_interop.py grpcio_server

grpcio_client: this process serves TestService (answers from
tests/echo_behaviour.py, sleeps with gevent.sleep) and the Raw bytes service
with grpc_green on gevent's hub, and runs tests/peers/grpcio_client.py (real
grpcio, no gevent, a plain subprocess) against it through gevent's
cooperative subprocess module, with a ticker greenlet running. The peer's
JSON report is checked here and passed on.

grpcio_server: this process starts tests/peers/grpcio_server.py (real
grpcio) and calls it with grpc_green from gevent greenlets: concurrent
echoes, metadata both ways, status codes, a deadline, and a gevent.Timeout
around a call the peer answers slowly.
"""

from gevent import monkey

monkey.patch_all()

import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402  (gevent's, cooperative)
import sys  # noqa: E402
import time  # noqa: E402

import _scenario as S  # noqa: E402

from grpc_green import monkey as green_monkey  # noqa: E402

green_monkey.patch_grpc()

import gevent  # noqa: E402
import grpc  # noqa: E402
import testing_pb2  # noqa: E402
import testing_pb2_grpc  # noqa: E402
from echo_behaviour import respond  # noqa: E402

Echo = testing_pb2.EchoRequest
BINARY = bytes(range(256))


def peer_env():
    env = dict(os.environ)
    # Real grpcio peers: no grpc_green paths, no sanitizer preload.
    for key in ("GRPC_GREEN_HUB", "GRPC_GREEN_TEST_IMPL", "PYTHONPATH", "LD_PRELOAD"):
        env.pop(key, None)
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ------------------------------------------------------- grpcio client -> us


class EchoServicer(testing_pb2_grpc.TestServiceServicer):
    def __init__(self):
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.user_agents = set()
        self.cancelled = []

    def Echo(self, request, context):
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            metadata = tuple(context.invocation_metadata())
            self.user_agents.add(dict(metadata).get("user-agent", ""))
            peer = context.peer()
            remaining = context.time_remaining()
            if request.sleep_seconds > 0:
                end = time.monotonic() + request.sleep_seconds
                while context.is_active() and time.monotonic() < end:
                    gevent.sleep(min(0.01, max(0.0, end - time.monotonic())))
                if not context.is_active():
                    self.cancelled.append(request.message)
                    return testing_pb2.EchoResponse()
            return respond(grpc, request, context, metadata, peer, remaining)
        finally:
            self.in_flight -= 1


def raw_handlers():
    return grpc.method_handlers_generic_handler(
        "grpc_green.testing.Raw",
        {
            "Identity": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
            "Upper": grpc.unary_unary_rpc_method_handler(lambda request, context: request.upper()),
        },
    )


def from_json(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def check_grpcio_client_results(results, servicer):
    for name, result in results.items():
        S.check(
            not (isinstance(result, dict) and "crashed" in result),
            "grpcio_client scenario %s crashed" % name,
            result,
        )
    echo = results["echo"]
    S.check(echo["basic"]["ok"], "echo", echo["basic"])
    S.check(
        from_json(echo["basic"]["response"]["payload"]) == b"\x00\x01grpcio\xff",
        "echo payload",
        echo["basic"]["response"]["payload"],
    )
    S.check(echo["basic"]["response"]["message"] == "héllo 😀", "echo message")
    S.check(
        echo["large"]["ok"] and from_json(echo["large"]["response"]["payload"]) == BINARY * 4096,
        "large echo",
    )
    S.check(from_json(echo["raw_upper"]["response"]) == b"ABC", "raw upper")

    call = results["metadata"]["call"]
    S.check(call["ok"], "metadata call", call)
    sent = [(k, from_json(v)) for k, v in results["metadata"]["sent"]]
    initial = [(k, from_json(v)) for k, v in call["initial_metadata"]]
    trailing = [(k, from_json(v)) for k, v in call["trailing_metadata"]]
    S.check(
        initial
        == [("server-initial", "from server"), ("server-initial-bin", b"\x00\xffinit")]
        + [("initial-" + k, v) for k, v in sent],
        "initial metadata",
        initial,
    )
    S.check(
        trailing
        == [("server-trailing", "trailer value"), ("server-trailing-bin", b"\xfe\x00trail")]
        + [("trailing-" + k, v) for k, v in sent],
        "trailing metadata",
        trailing,
    )

    for case in results["status"]:
        got = (case["call"]["code"], case["call"]["details"])
        S.check(
            not case["call"]["ok"] and got == (case["code"], case["details"]), "status case", case
        )

    exc = results["exception"]
    S.check(
        (exc["raise"]["code"], exc["raise"]["details"])
        == ("UNKNOWN", "Exception calling application: kaboom ☃"),
        "exception",
        exc,
    )

    deadline = results["deadline"]
    S.check(
        (deadline["exceeded"]["code"], deadline["exceeded"]["details"])
        == ("DEADLINE_EXCEEDED", "Deadline Exceeded"),
        "deadline",
        deadline["exceeded"],
    )
    S.check(
        deadline["exceeded"]["elapsed"] < 1.0, "deadline took (s)", deadline["exceeded"]["elapsed"]
    )
    tr = deadline["time_remaining"]["response"]
    S.check(tr["has_time_remaining"] and 0 < tr["time_remaining"] <= 5.05, "time_remaining", tr)
    S.check(deadline["after"]["ok"], "call after the deadline")
    S.check(
        "slow" in servicer.cancelled,
        "the handler did not see the deadline expire",
        servicer.cancelled,
    )

    unimpl = results["unimplemented"]
    S.check(
        (unimpl["servicer"]["code"], unimpl["servicer"]["details"])
        == ("UNIMPLEMENTED", "Method not implemented!"),
        "unimplemented servicer",
    )
    S.check(
        (unimpl["method"]["code"], unimpl["method"]["details"])
        == ("UNIMPLEMENTED", "Method not found!"),
        "unimplemented method",
    )

    concurrent = results["concurrent"]
    S.check(concurrent.get("mismatches") == [], "concurrent mismatches", concurrent)
    S.check(
        servicer.max_in_flight >= concurrent["count"] // 2,
        "concurrent calls were not served concurrently",
        servicer.max_in_flight,
    )
    S.check(
        all(ua.startswith("grpc-python/") for ua in servicer.user_agents),
        "user agents",
        servicer.user_agents,
    )


def grpcio_client():
    kind = S.hub_kind()
    S.check(kind == "gevent", "hub kind", kind)
    servicer = EchoServicer()
    server, target = S.serve(
        lambda s: testing_pb2_grpc.add_TestServiceServicer_to_server(servicer, s), raw_handlers()
    )
    scenarios = "echo,metadata,status,exception,deadline,unimplemented,concurrent"
    ticker = S.Ticker(0.01).start()
    started = time.monotonic()
    peer = subprocess.run(
        [sys.executable, str(S.PEERS / "grpcio_client.py"), scenarios, target],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=40,
        env=peer_env(),
    )
    elapsed = time.monotonic() - started
    ticker.stop()
    server.stop(None)
    S.check(
        peer.returncode == 0,
        "grpcio_client.py exit code",
        peer.returncode,
        peer.stdout[-2000:],
        peer.stderr[-2000:],
    )
    lines = [line for line in peer.stdout.splitlines() if line.startswith("{")]
    S.check(lines, "grpcio_client.py printed no JSON", peer.stdout, peer.stderr)
    results = json.loads(lines[-1])["results"]
    check_grpcio_client_results(results, servicer)
    # The peer's 2 s sleep (cancelled at 0.2 s) and 100 x 50 ms concurrent
    # sleeps happen while we wait for it: the hub must have kept serving.
    S.check(ticker.max_lag < 0.1, "ticker lag while serving grpcio (s)", ticker.max_lag)
    return {
        "hub": kind,
        "server_calls": servicer.calls,
        "max_in_flight": servicer.max_in_flight,
        "peer_elapsed": elapsed,
        "max_lag": ticker.max_lag,
        "scenarios": sorted(results),
        "status_cases": len(results["status"]),
    }


# ------------------------------------------------------- us -> grpcio server


def grpcio_server():
    kind = S.hub_kind()
    S.check(kind == "gevent", "hub kind", kind)
    peer = subprocess.Popen(
        [sys.executable, str(S.PEERS / "grpcio_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=peer_env(),
    )
    try:
        with gevent.Timeout(30, S.ScenarioFailure("grpcio_server.py never printed PORT")):
            line = peer.stdout.readline().decode()
        S.check(line.startswith("PORT "), "grpcio_server.py said", line)
        target = "127.0.0.1:%d" % int(line.split()[1])
        return call_grpcio_server(kind, target)
    finally:
        peer.stdin.close()  # the peer exits when its stdin closes
        try:
            peer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait(timeout=5)


def call_grpcio_server(kind, target):
    channel = grpc.insecure_channel(target)
    stub = testing_pb2_grpc.TestServiceStub(channel)
    S.check(stub.Echo(Echo(message="warm up"), timeout=10).message == "warm up", "warm up")

    def echo(i):
        payload = str(i).encode() * (i + 1)
        response = stub.Echo(
            Echo(message="call %d" % i, payload=payload, sleep_seconds=0.05), timeout=20
        )
        return response.message == "call %d" % i and response.payload == payload

    ticker = S.Ticker(0.01).start()
    started = time.monotonic()
    ok = S.joinall([gevent.spawn(echo, i) for i in range(100)], timeout=30)
    concurrent_elapsed = time.monotonic() - started
    S.check(all(ok), "wrong echoes", [i for i, good in enumerate(ok) if not good][:10])

    sent = (("x-echo-text", "plain value"), ("x-echo-data-bin", BINARY))
    response, call = stub.Echo.with_call(
        Echo(
            echo_metadata=True,
            trailing_metadata=[testing_pb2.Header(key="server-trailing", value="t")],
        ),
        metadata=sent,
        timeout=10,
    )
    S.check(
        tuple(call.initial_metadata()) == tuple(("initial-" + k, v) for k, v in sent),
        "initial metadata",
        call.initial_metadata(),
    )
    S.check(
        tuple(call.trailing_metadata())
        == (("server-trailing", "t"),) + tuple(("trailing-" + k, v) for k, v in sent),
        "trailing metadata",
        call.trailing_metadata(),
    )

    try:
        stub.Echo(
            Echo(
                status_code=grpc.StatusCode.NOT_FOUND.value[0],
                status_details="héllo ☃",
                use_abort=True,
            ),
            timeout=10,
        )
        raise S.ScenarioFailure("no RpcError for an aborted call")
    except grpc.RpcError as error:
        S.check(
            (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "héllo ☃"),
            "status",
            error.code(),
            error.details(),
        )

    started = time.monotonic()
    try:
        stub.Echo(Echo(sleep_seconds=2), timeout=0.2)
        raise S.ScenarioFailure("no RpcError for an expired deadline")
    except grpc.RpcError as error:
        S.check(error.code() is grpc.StatusCode.DEADLINE_EXCEEDED, "deadline", error.code())
    S.check(time.monotonic() - started < 1.0, "deadline took (s)", time.monotonic() - started)

    timeout = gevent.Timeout(0.2)
    timeout.start()
    started = time.monotonic()
    try:
        stub.Echo(Echo(sleep_seconds=2), timeout=10)
        raise S.ScenarioFailure("the gevent.Timeout did not interrupt the call")
    except gevent.Timeout as error:
        S.check(error is timeout, "another Timeout", error)
    finally:
        timeout.cancel()
    S.check(time.monotonic() - started < 1.0, "gevent.Timeout took (s)", time.monotonic() - started)
    S.check(stub.Echo(Echo(message="after"), timeout=10).message == "after", "call after")

    ticker.stop()
    channel.close()
    S.check(ticker.max_lag < 0.1, "ticker lag (s)", ticker.max_lag)
    return {
        "hub": kind,
        "concurrent_calls": len(ok),
        "concurrent_elapsed": concurrent_elapsed,
        "max_lag": ticker.max_lag,
    }


if __name__ == "__main__":
    cases = {"grpcio_client": grpcio_client, "grpcio_server": grpcio_server}
    if len(sys.argv) != 2 or sys.argv[1] not in cases:
        sys.exit(__doc__)
    S.run(cases[sys.argv[1]])
