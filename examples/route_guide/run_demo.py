"""Runs the route guide example end to end.

1. Generates route_guide_pb2.py / route_guide_pb2_grpc.py from
   route_guide.proto next to this file (if missing or stale).
2. Starts route_guide_server.py on a free port (port 0) in a subprocess.
3. Runs route_guide_client.py against it (one RPC of each of the four kinds)
   and prints what it received.
4. Stops the server.

Exits non-zero if any step fails or an expected answer is missing. grpc_green
is taken from the repository root (an in-place build), unless PYTHONPATH
already provides one.
"""

import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROTO = HERE / "route_guide.proto"
GENERATED = [HERE / "route_guide_pb2.py", HERE / "route_guide_pb2_grpc.py"]
COIT_TOWER = "'Coit Tower, 1 Telegraph Hill Boulevard, San Francisco, CA 94133, USA'"
# Lines route_guide_client.py prints for answers of each RPC.
EXPECTED = [
    # GetFeature
    "Feature called %s at (37.8024, -122.4058)" % COIT_TOWER,
    "Found no feature at (0.0000, 0.0000)",
    # ListFeatures
    "Feature called %s at (37.8024, -122.4058)" % COIT_TOWER,
    "ListFeatures returned 5 features",
    # RecordRoute
    "Finished trip with 8 points",
    "Passed 7 features",
]
# RouteChat: the earlier notes at the same place, in this order.
EXPECTED_CHAT = [
    "Received message 'Start at the Ferry Building' at (37.7955, -122.3937)",
    "Received message 'Climb to Coit Tower' at (37.8024, -122.4058)",
    "Received message 'Start at the Ferry Building' at (37.7955, -122.3937)",
    "Received message 'Back at the Ferry Building' at (37.7955, -122.3937)",
]


def generate():
    if all(p.exists() and p.stat().st_mtime >= PROTO.stat().st_mtime for p in GENERATED):
        return
    print("generating route guide code from %s" % PROTO.relative_to(ROOT))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(HERE),
         "--python_out=" + str(HERE), "--grpc_python_out=" + str(HERE), str(PROTO)],
        check=True,
    )


def child_env():
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths + [str(ROOT), str(HERE)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def read_port(server, timeout=30.0):
    """Waits for the server's 'listening on PORT' line; returns the port."""
    selector = selectors.DefaultSelector()
    selector.register(server.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = server.stdout.readline()
        if not line:  # the server exited
            break
        seen.append(line)
        match = re.search(r"listening on (\d+)", line)
        if match:
            return int(match.group(1))
    raise RuntimeError("the server did not report its port; its output:\n" + "".join(seen))


def stop(server):
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def check(output):
    """The problems with the client's output; empty if it is as expected."""
    lines = output.splitlines()
    problems = ["missing line: %s" % line for line in EXPECTED if line not in lines]
    chat = [line for line in lines if line.startswith("Received message ")]
    if chat != EXPECTED_CHAT:
        problems.append("RouteChat answers were %s, expected %s" % (chat, EXPECTED_CHAT))
    return problems


def main():
    generate()
    env = child_env()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "route_guide_server.py"), "0"],
        stdout=subprocess.PIPE, stderr=None, text=True, env=env, cwd=str(HERE),
    )
    try:
        port = read_port(server)
        print("route_guide_server.py is listening on port %d" % port)
        client = subprocess.run(
            [sys.executable, str(HERE / "route_guide_client.py"), "localhost:%d" % port],
            capture_output=True, text=True, env=env, cwd=str(HERE), timeout=60,
        )
        sys.stdout.write(client.stdout)
        sys.stderr.write(client.stderr)
        if client.returncode != 0:
            print("FAILED: route_guide_client.py exited with %d" % client.returncode)
            return 1
        problems = check(client.stdout)
        if problems:
            print("FAILED:\n  " + "\n  ".join(problems))
            return 1
        if server.poll() is not None:
            print("FAILED: the server exited early (%d)" % server.returncode)
            return 1
        print("demo OK: GetFeature, ListFeatures, RecordRoute and RouteChat answered")
        return 0
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print("FAILED: %s" % error)
        return 1
    finally:
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
