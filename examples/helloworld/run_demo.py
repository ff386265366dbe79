"""Runs the helloworld example end to end: `make demo`.

1. Generates helloworld_pb2.py / helloworld_pb2_grpc.py from
   protos/helloworld.proto next to this file (if missing or stale).
2. Starts greeter_server.py on a free port (port 0) in a subprocess.
3. Runs greeter_client.py against it and prints what it received.
4. Stops the server.

Exits non-zero if any step fails or a reply is missing. grpc_green is taken
from the repository root (an in-place build), unless PYTHONPATH already
provides one.
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
PROTO = ROOT / "protos" / "helloworld.proto"
GENERATED = [HERE / "helloworld_pb2.py", HERE / "helloworld_pb2_grpc.py"]
EXPECTED = [
    "Greeter client received: Hello, you!",
    "Greeter client received: Hello, world!",
    "Greeter client received: Hello, grpc_green!",
]


def generate():
    if all(p.exists() and p.stat().st_mtime >= PROTO.stat().st_mtime for p in GENERATED):
        return
    print("generating helloworld code from %s" % PROTO.relative_to(ROOT))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTO.parent),
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


def main():
    generate()
    env = child_env()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "greeter_server.py"), "0"],
        stdout=subprocess.PIPE, stderr=None, text=True, env=env, cwd=str(HERE),
    )
    try:
        port = read_port(server)
        print("greeter_server.py is listening on port %d" % port)
        client = subprocess.run(
            [sys.executable, str(HERE / "greeter_client.py"), "localhost:%d" % port],
            capture_output=True, text=True, env=env, cwd=str(HERE), timeout=60,
        )
        sys.stdout.write(client.stdout)
        sys.stderr.write(client.stderr)
        if client.returncode != 0:
            print("FAILED: greeter_client.py exited with %d" % client.returncode)
            return 1
        missing = [line for line in EXPECTED if line not in client.stdout.splitlines()]
        if missing:
            print("FAILED: missing replies: %s" % missing)
            return 1
        if server.poll() is not None:
            print("FAILED: the server exited early (%d)" % server.returncode)
            return 1
        print("demo OK: %d replies" % len(EXPECTED))
        return 0
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print("FAILED: %s" % error)
        return 1
    finally:
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
