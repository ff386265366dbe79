"""A real grpcio client for interop tests (always runs in its own process).

    python grpcio_client.py SCENARIO[,SCENARIO...] TARGET

Runs each scenario against a server at TARGET that serves
grpc_green.testing.TestService (the EchoServicer of tests/conftest.py) and
grpc_green.testing.Raw, and prints one JSON object on stdout:

    {"target": ..., "results": {SCENARIO: <scenario result>, ...}}

A scenario that raises records {"crashed": "<traceback>"} instead of a result.
Call outcomes are reported raw (see `outcome`); the assertions live in the
tests. Bytes are encoded as {"b64": "..."} everywhere.

Scenarios: echo, metadata, status, exception, deadline, unimplemented,
concurrent, invalid_metadata; "all" runs every one of them.
"""

import base64
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_gen"))

import grpc  # real grpcio: this process is never patched
import testing_pb2
import testing_pb2_grpc

UNICODE_DETAILS = [
    "plain details",
    "  leading and trailing spaces  ",
    "line one\nline two\ttabbed",
    "percent %25 %zz 100%",
    "héllo wörld ☃",
    "𝄞 😀",
]


def jsonable(value):
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def metadata_json(metadata):
    if metadata is None:
        return None
    return [[key, jsonable(value)] for key, value in metadata]


def response_json(response):
    if response is None:
        return None
    if isinstance(response, bytes):
        return jsonable(response)
    return {
        "payload": jsonable(response.payload),
        "message": response.message,
        "has_time_remaining": response.has_time_remaining,
        "time_remaining": response.time_remaining,
        "peer": response.peer,
        "received_metadata": [
            [h.key, jsonable(h.binary_value) if h.key.endswith("-bin") else h.value]
            for h in response.received_metadata
        ],
    }


def outcome(multicallable, request, **kwargs):
    """Makes one call with .with_call() and describes what happened."""
    started = time.monotonic()
    try:
        response, call = multicallable.with_call(request, **kwargs)
        return {
            "ok": True,
            "code": call.code().name,
            "details": call.details(),
            "initial_metadata": metadata_json(call.initial_metadata()),
            "trailing_metadata": metadata_json(call.trailing_metadata()),
            "response": response_json(response),
            "elapsed": time.monotonic() - started,
        }
    except grpc.RpcError as error:
        return {
            "ok": False,
            "code": error.code().name,
            "details": error.details(),
            "initial_metadata": metadata_json(error.initial_metadata()),
            "trailing_metadata": metadata_json(error.trailing_metadata()),
            "response": None,
            "elapsed": time.monotonic() - started,
        }
    except Exception as error:  # noqa: BLE001 -- reported, not raised
        return {
            "ok": False,
            "exception": "%s: %s" % (type(error).__name__, error),
            "elapsed": time.monotonic() - started,
        }


def scenario_echo(channel, stub):
    raw = channel.unary_unary("/grpc_green.testing.Raw/Identity")
    return {
        "basic": outcome(
            stub.Echo, testing_pb2.EchoRequest(payload=b"\x00\x01grpcio\xff", message="héllo 😀")
        ),
        "empty": outcome(stub.Echo, testing_pb2.EchoRequest()),
        "raw_empty": outcome(raw, b""),
        "large": outcome(
            stub.Echo, testing_pb2.EchoRequest(payload=bytes(range(256)) * 4096, message="large")
        ),
        "raw_upper": outcome(channel.unary_unary("/grpc_green.testing.Raw/Upper"), b"abc"),
    }


def scenario_metadata(channel, stub):
    request = testing_pb2.EchoRequest(
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
    sent = [
        ("x-echo-text", "plain value"),
        ("x-echo-data-bin", bytes(range(256))),
        ("x-echo-empty-bin", b""),
    ]
    return {"sent": metadata_json(sent), "call": outcome(stub.Echo, request, metadata=sent)}


def scenario_status(channel, stub):
    results = []
    for code in (
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ):
        for use_abort in (True, False):
            details = "%s via %s" % (code, "abort" if use_abort else "set_code")
            results.append(
                {
                    "code": code,
                    "details": details,
                    "use_abort": use_abort,
                    "call": outcome(
                        stub.Echo,
                        testing_pb2.EchoRequest(
                            status_code=grpc.StatusCode[code].value[0],
                            status_details=details,
                            use_abort=use_abort,
                        ),
                    ),
                }
            )
    for details in UNICODE_DETAILS:
        results.append(
            {
                "code": "FAILED_PRECONDITION",
                "details": details,
                "use_abort": True,
                "call": outcome(
                    stub.Echo,
                    testing_pb2.EchoRequest(
                        status_code=grpc.StatusCode.FAILED_PRECONDITION.value[0],
                        status_details=details,
                        use_abort=True,
                    ),
                ),
            }
        )
    return results


def scenario_exception(channel, stub):
    return {
        "raise": outcome(
            stub.Echo, testing_pb2.EchoRequest(raise_exception=True, exception_message="kaboom ☃")
        ),
        "after": outcome(stub.Echo, testing_pb2.EchoRequest(message="still serving")),
    }


def scenario_deadline(channel, stub):
    return {
        "exceeded": outcome(
            stub.Echo, testing_pb2.EchoRequest(message="slow", sleep_seconds=2.0), timeout=0.2
        ),
        "time_remaining": outcome(stub.Echo, testing_pb2.EchoRequest(message="tr"), timeout=5.0),
        "no_deadline": outcome(stub.Echo, testing_pb2.EchoRequest(message="no deadline")),
        "after": outcome(stub.Echo, testing_pb2.EchoRequest(message="after")),
    }


def scenario_unimplemented(channel, stub):
    return {
        "servicer": outcome(stub.NotImplementedByServicer, testing_pb2.EchoRequest()),
        "method": outcome(channel.unary_unary("/grpc_green.testing.TestService/NoSuchMethod"), b""),
        "service": outcome(
            testing_pb2_grpc.UnregisteredServiceStub(channel).Echo, testing_pb2.EchoRequest()
        ),
        "after": outcome(stub.Echo, testing_pb2.EchoRequest(message="after")),
    }


def scenario_concurrent(channel, stub):
    count = 100
    calls = [
        stub.Echo.future(
            testing_pb2.EchoRequest(
                message="call %d" % i, payload=str(i).encode() * (i + 1), sleep_seconds=0.05
            )
        )
        for i in range(count)
    ]
    mismatches = []
    for i, future in enumerate(calls):
        try:
            response = future.result(timeout=30)
            if response.message != "call %d" % i or response.payload != str(i).encode() * (i + 1):
                mismatches.append([i, response.message])
        except grpc.RpcError as error:
            mismatches.append([i, "%s %s" % (error.code().name, error.details())])
    return {"count": count, "mismatches": mismatches}


def scenario_invalid_metadata(channel, stub):
    # What a grpcio client does with bad metadata (it never reaches the wire).
    results = {}
    for name, metadata in (
        ("uppercase_key", [("Bad-Key", "v")]),
        ("space_in_key", [("bad key", "v")]),
        ("non_ascii_value", [("k", "héllo")]),
    ):
        results[name] = outcome(stub.Echo, testing_pb2.EchoRequest(), metadata=metadata)
    results["after"] = outcome(stub.Echo, testing_pb2.EchoRequest(message="after"))
    return results


SCENARIOS = {
    name[len("scenario_") :]: fn
    for name, fn in sorted(globals().items())
    if name.startswith("scenario_")
}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    names, target = sys.argv[1], sys.argv[2]
    names = sorted(SCENARIOS) if names == "all" else names.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit("unknown scenario(s): %s (have: %s)" % (unknown, ", ".join(SCENARIOS)))
    results = {}
    with grpc.insecure_channel(target) as channel:
        stub = testing_pb2_grpc.TestServiceStub(channel)
        for name in names:
            try:
                results[name] = SCENARIOS[name](channel, stub)
            except Exception:  # noqa: BLE001 -- reported to the test
                results[name] = {"crashed": traceback.format_exc()}
    print(json.dumps({"target": target, "results": results}), flush=True)


if __name__ == "__main__":
    main()
