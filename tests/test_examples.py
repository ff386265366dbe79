"""The programs under examples/, run end to end as `make demo` runs them.

Each example's run_demo.py generates its _pb2 code, starts its server in a
subprocess, runs its client against it and checks the client's output; here
it runs in a subprocess of its own (this interpreter, the repository root as
working directory) and the test checks the client's output again, in more
detail and independently of run_demo.py. This process is neither server nor
client of those programs, so waiting for them with a blocking call is fine.

With GRPC_GREEN_TEST_IMPL=grpcio the examples run on real grpcio: a stand-in
``grpc_green`` package whose ``monkey.patch_grpc()`` does nothing comes first
on PYTHONPATH, so ``import grpc`` in the examples is grpcio.
"""

import itertools
import math
import os
import re
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USING_GRPCIO = os.environ.get("GRPC_GREEN_TEST_IMPL", "").strip().lower() == "grpcio"
DEMO_TIMEOUT = 120


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    env = dict(os.environ)
    env.pop("GRPC_GREEN_TEST_IMPL", None)
    env.pop("GRPC_GREEN_HUB", None)  # each example's programs pick their hub as a user's would
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if USING_GRPCIO:
        shim = tmp_path_factory.mktemp("grpcio_shim")
        (shim / "grpc_green").mkdir()
        (shim / "grpc_green" / "__init__.py").write_text("")
        (shim / "grpc_green" / "monkey.py").write_text("def patch_grpc():\n    pass\n")
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([str(shim)] + paths)
    return env


def run_demo(name, env):
    """Runs examples/<name>/run_demo.py; returns its stdout lines.

    Fails the test if it exits non-zero or takes longer than DEMO_TIMEOUT; its
    process group (run_demo.py, the example server and client) is killed then.
    """
    script = os.path.join(ROOT, "examples", name, "run_demo.py")
    proc = subprocess.Popen(
        [sys.executable, script],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(
            "%s did not finish within %ss\nstdout:\n%s\nstderr:\n%s"
            % (script, DEMO_TIMEOUT, stdout, stderr)
        )
    assert proc.returncode == 0, "%s exited with %s\nstdout:\n%s\nstderr:\n%s" % (
        script,
        proc.returncode,
        stdout,
        stderr,
    )
    lines = stdout.splitlines()
    assert lines and lines[-1].startswith("demo OK"), stdout
    return lines


def test_helloworld(demo_env):
    lines = run_demo("helloworld", demo_env)
    greetings = [line for line in lines if line.startswith("Greeter client received: ")]
    assert greetings == [
        "Greeter client received: Hello, you!",
        "Greeter client received: Hello, world!",
        "Greeter client received: Hello, grpc_green!",
    ]


def sf(name, street, zip_code):
    return "'%s, %s, San Francisco, CA %s, USA'" % (name, street, zip_code)


COIT_TOWER = sf("Coit Tower", "1 Telegraph Hill Boulevard", "94133")


def test_route_guide(demo_env):
    lines = run_demo("route_guide", demo_env)

    def section(title):
        start = lines.index("-------------- %s --------------" % title)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("-----")), len(lines)
        )
        return lines[start + 1 : end]

    # GetFeature: a point with a feature, then one without.
    assert section("GetFeature") == [
        "Feature called %s at (37.8024, -122.4058)" % COIT_TOWER,
        "Found no feature at (0.0000, 0.0000)",
    ]

    # ListFeatures: the named features in the rectangle, in database order.
    assert section("ListFeatures") == [
        "Looking for features between (37.7800, -122.4300) and (37.8100, -122.3900)",
        "Feature called %s at (37.8021, -122.4187)" % sf("Lombard Street", "1000 block", "94133"),
        "Feature called %s at (37.8024, -122.4058)" % COIT_TOWER,
        "Feature called %s at (37.7952, -122.4028)"
        % sf("Transamerica Pyramid", "600 Montgomery Street", "94111"),
        "Feature called %s at (37.7955, -122.3937)"
        % sf("Ferry Building", "1 Ferry Building", "94111"),
        "Feature called %s at (37.7897, -122.3962)"
        % sf("Salesforce Park", "425 Mission Street", "94105"),
        "ListFeatures returned 5 features",
    ]

    # RecordRoute: 8 points streamed, 7 of them features; the distance is the
    # sum of the legs, computed here on the same sphere (radius 6371 km).
    route = [
        (37.7955, -122.3937),
        (37.8024, -122.4058),
        (37.8021, -122.4187),
        (37.8050, -122.4250),
        (37.8066, -122.4310),
        (37.8029, -122.4484),
        (37.8039, -122.4640),
        (37.8199, -122.4783),
    ]
    record = section("RecordRoute")
    assert [line for line in record if line.startswith("Visiting point ")] == [
        "Visiting point (%.4f, %.4f)" % point for point in route
    ]
    distance = 0.0
    for (lat1, lon1), (lat2, lon2) in itertools.pairwise(route):
        phi1, phi2 = math.radians(lat1), math.radians(lat2)
        h = (
            math.sin((phi2 - phi1) / 2) ** 2
            + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
        )
        distance += 2 * 6371000 * math.asin(math.sqrt(h))
    summary = [line for line in record if not line.startswith("Visiting point ")]
    assert summary[:3] == [
        "Finished trip with 8 points",
        "Passed 7 features",
        "Travelled %d meters" % int(distance),
    ], record
    assert len(summary) == 4 and summary[3].startswith("It took "), record

    # RouteChat: each note is answered with the earlier notes at its location.
    chat = section("RouteChat")
    assert [line for line in chat if line.startswith("Sending ")] == [
        "Sending 'Start at the Ferry Building' at (37.7955, -122.3937)",
        "Sending 'Climb to Coit Tower' at (37.8024, -122.4058)",
        "Sending 'Back at the Ferry Building' at (37.7955, -122.3937)",
        "Sending 'Ride to the Golden Gate Bridge' at (37.8199, -122.4783)",
        "Sending 'Coit Tower again' at (37.8024, -122.4058)",
        "Sending 'Ferry Building, one last time' at (37.7955, -122.3937)",
    ]
    received = [line for line in chat if line.startswith("Received message ")]
    assert received == [
        "Received message 'Start at the Ferry Building' at (37.7955, -122.3937)",
        "Received message 'Climb to Coit Tower' at (37.8024, -122.4058)",
        "Received message 'Start at the Ferry Building' at (37.7955, -122.3937)",
        "Received message 'Back at the Ferry Building' at (37.7955, -122.3937)",
    ]
    # A reply never comes before the note that triggers it was sent.
    assert chat.index(received[0]) > chat.index(
        "Sending 'Back at the Ferry Building' at (37.7955, -122.3937)"
    )


def fibonacci_numbers(count):
    numbers = [0, 1]
    while len(numbers) < count:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers[:count]


def test_fibonacci(demo_env):
    lines = run_demo("fibonacci", demo_env)
    first_ten = fibonacci_numbers(10)
    f93 = fibonacci_numbers(94)[93]
    assert f93 < 2**64 <= f93 + fibonacci_numbers(93)[92]  # F(93) fits uint64, F(94) not
    assert "GetSequence(10): %s" % first_ten in lines
    assert "GetSequence(94): 94 values, the last F(93) = %d" % f93 in lines
    assert [line for line in lines if line.startswith("StreamSequence(10): ")] == [
        "StreamSequence(10): F(%d) = %d" % (index, value) for index, value in enumerate(first_ten)
    ]
    assert (
        "GetSequence(-1) failed: INVALID_ARGUMENT: count must not be negative, got -1" in lines
    ), lines
    assert (
        "StreamSequence(1000) failed: INVALID_ARGUMENT: count must be at most 94"
        " (the numbers are uint64), got 1000" in lines
    ), lines
    assert not [line for line in lines if "unexpected" in line], lines


@pytest.mark.skipif(USING_GRPCIO, reason="grpc_green's gevent plugin and hubs; not grpcio's")
def test_gevent_app(demo_env):
    lines = run_demo("gevent_app", demo_env)
    assert "GET /items: 5 items" in lines
    assert "GET /items/Z-999: 404, NOT_FOUND from the backend" in lines
    # 200 requests, each 0.2 s in the backend: together in well under 40 s.
    [summary] = [line for line in lines if line.startswith("200 concurrent GET /items/<sku>: ")]
    match = re.match(
        r"200 concurrent GET /items/<sku>: all answered correctly in ([\d.]+) s"
        r" \(slowest ([\d.]+) s\)",
        summary,
    )
    assert match, summary
    assert float(match.group(1)) < 4.0 and float(match.group(2)) >= 0.2, summary
    # monkey.patch_all(grpc=True) put the front end's grpc on gevent's hub;
    # the backend never imported gevent.
    assert "frontend.py said: grpc is grpc_green, on the gevent hub" in lines
    assert (
        "backend_server.py said: grpc_green runs it on the native hub;"
        " gevent is not imported" in lines
    )


def test_prefork_server(demo_env):
    lines = run_demo("prefork_server", demo_env)
    # The last batch (earlier ones only if a single worker answered them).
    start = max(i for i, line in enumerate(lines) if line.startswith("64 channels, "))
    match = re.fullmatch(r"64 channels, 64 connections, answered by (\d) workers", lines[start])
    assert match and 2 <= int(match.group(1)) <= 4, lines[start]
    answered = lines[start + 1 : start + 1 + int(match.group(1))]
    counts = {}
    for line in answered:
        pid, count = re.fullmatch(r"worker (\d+) answered (\d+) channels", line).groups()
        counts[int(pid)] = int(count)
    assert sum(counts.values()) == 64, answered
    # SIGTERM went to the parent, which forwarded it to its 4 workers.
    [stopping] = [line for line in lines if line.startswith("SIGTERM: stopping workers ")]
    workers = {int(pid) for pid in stopping.split()[3:]}
    assert len(workers) == 4 and set(counts) <= workers, (stopping, answered)
    assert "all workers stopped" in lines
