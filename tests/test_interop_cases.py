"""The standard gRPC interop cases (tests/interop_cases.py) in three pairings.

1. client under test -> real grpcio server (tests/peers/interop_server.py,
   one subprocess for the module);
2. real grpcio client (tests/peers/interop_client.py, one subprocess running
   every case once for the module; each test checks its own case's result)
   -> server under test, in-process;
3. client under test -> server under test, both in-process.

"Under test" is grpc_green by default, real grpcio with
GRPC_GREEN_TEST_IMPL=grpcio. The in-process server serves
tests/interop_service.py's servicer on this thread's hub, so everything here
waits cooperatively: subprocesses through the conftest helpers (poll +
hub.sleep), in-process cases in a hub task joined with a time limit.
"""

import json
import sys

import interop_test_pb2_grpc
import pytest
from interop_cases import CASES
from interop_service import InteropServicer

CASE_NAMES = list(CASES)
CASE_TIMEOUT = 10.0  # seconds one case may take before it counts as hung


def _run_in_process(hub, case, channel):
    """Runs CASES[case] on `channel` in a hub task; fails if it hangs."""
    task = hub.spawn(CASES[case], channel, hub.Event)
    if not task.join(CASE_TIMEOUT):
        channel.close()  # ends the case's RPCs
        if hasattr(task, "kill"):  # a grpc_green task (threads cannot be killed)
            task.kill()
        pytest.fail("%s did not finish within %ss" % (case, CASE_TIMEOUT))
    task.get()  # re-raises the case's AssertionError / RpcError


@pytest.fixture(scope="module")
def interop_grpcio_server(hub, support):
    """Target of a real grpcio server (subprocess) serving the interop TestService."""
    proc = hub.start_process([sys.executable, support.peers_dir / "interop_server.py"])
    try:
        match = proc.wait_for_output(r"^PORT (\d+)$", timeout=30)
        yield "127.0.0.1:%d" % int(match.group(1))
    finally:
        proc.close()


@pytest.fixture(scope="module")
def interop_local_server(hub, support):
    """Target of an in-process server of the implementation under test."""
    server = support.new_server()
    interop_test_pb2_grpc.add_TestServiceServicer_to_server(
        InteropServicer(sleep=hub.sleep), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    assert isinstance(port, int) and port > 0, port
    server.start()
    yield "127.0.0.1:%d" % port
    server.stop(None).wait(5)


@pytest.fixture(scope="module")
def grpcio_client_run(hub, support, interop_local_server):
    """One run of every case by the grpcio client peer against the local server.

    Returns (completed process, {case: {"ok", "error", "elapsed"}}).
    """
    run = hub.run_process(
        [
            sys.executable,
            support.peers_dir / "interop_client.py",
            "--target",
            interop_local_server,
            "--case-timeout",
            str(CASE_TIMEOUT),
        ],
        timeout=CASE_TIMEOUT * len(CASE_NAMES) + 30,
    )
    results = {}
    for line in run.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            results[result["case"]] = result
    return run, results


@pytest.mark.parametrize("case", CASE_NAMES)
def test_green_client_to_grpcio_server(case, hub, interop_grpcio_server, make_channel):
    _run_in_process(hub, case, make_channel(interop_grpcio_server))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_grpcio_client_to_green_server(case, grpcio_client_run):
    run, results = grpcio_client_run
    assert case in results, (
        "interop_client.py reported no result for %s (exit %s)\nstdout:\n%s\nstderr:\n%s"
        % (case, run.returncode, run.stdout, run.stderr)
    )
    assert results[case]["ok"], "grpcio client, case %s:\n%s" % (case, results[case]["error"])
    # The peer's exit status agrees with its per-case reports.
    assert (run.returncode == 0) == all(r["ok"] for r in results.values()), (
        run.returncode,
        run.stderr,
    )


@pytest.mark.parametrize("case", CASE_NAMES)
def test_green_client_to_green_server(case, hub, interop_local_server, make_channel):
    _run_in_process(hub, case, make_channel(interop_local_server))
