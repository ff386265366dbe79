"""Runs the Fibonacci example end to end.

1. Generates fibonacci_pb2.py / fibonacci_pb2_grpc.py from fibonacci.proto
   next to this file (if missing or stale).
2. Starts fibonacci_server.py on a free port (port 0) in a subprocess.
3. Runs fibonacci_client.py against it (unary and server-streaming calls,
   and two requests the server rejects) and prints what it received.
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
PROTO = HERE / "fibonacci.proto"
GENERATED = [HERE / "fibonacci_pb2.py", HERE / "fibonacci_pb2_grpc.py"]
FIRST_TEN = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
# Lines fibonacci_client.py prints for the server's answers.
EXPECTED_STREAM = [
    "StreamSequence(10): F(%d) = %d" % (index, value) for index, value in enumerate(FIRST_TEN)
]
EXPECTED = [
    "GetSequence(10): %s" % FIRST_TEN,
    "GetSequence(94): 94 values, the last F(93) = 12200160415121876738",
    "GetSequence(-1) failed: INVALID_ARGUMENT: count must not be negative, got -1",
    "StreamSequence(1000) failed: INVALID_ARGUMENT: count must be at most 94"
    " (the numbers are uint64), got 1000",
]


def generate():
    if all(p.exists() and p.stat().st_mtime >= PROTO.stat().st_mtime for p in GENERATED):
        return
    print("generating fibonacci code from %s" % PROTO.relative_to(ROOT))
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
    streamed = [line for line in lines if line.startswith("StreamSequence(10): ")]
    if streamed != EXPECTED_STREAM:
        problems.append("StreamSequence(10) printed %s, expected %s" % (streamed, EXPECTED_STREAM))
    return problems


def main():
    generate()
    env = child_env()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "fibonacci_server.py"), "0"],
        stdout=subprocess.PIPE, stderr=None, text=True, env=env, cwd=str(HERE),
    )
    try:
        port = read_port(server)
        print("fibonacci_server.py is listening on port %d" % port)
        client = subprocess.run(
            [sys.executable, str(HERE / "fibonacci_client.py"), "localhost:%d" % port],
            capture_output=True, text=True, env=env, cwd=str(HERE), timeout=60,
        )
        sys.stdout.write(client.stdout)
        sys.stderr.write(client.stderr)
        if client.returncode != 0:
            print("FAILED: fibonacci_client.py exited with %d" % client.returncode)
            return 1
        problems = check(client.stdout)
        if problems:
            print("FAILED:\n  " + "\n  ".join(problems))
            return 1
        if server.poll() is not None:
            print("FAILED: the server exited early (%d)" % server.returncode)
            return 1
        print("demo OK: GetSequence and StreamSequence answered, bad counts rejected")
        return 0
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print("FAILED: %s" % error)
        return 1
    finally:
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
