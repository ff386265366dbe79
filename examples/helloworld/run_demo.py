"""Runs the helloworld example end to end: `make demo`.

examples/demo_runner.py generates helloworld_pb2.py / helloworld_pb2_grpc.py
from protos/helloworld.proto next to this file, starts greeter_server.py,
runs greeter_client.py against it and stops the server; the replies the
client must print are checked here. Exits non-zero if any step fails or a
reply is missing.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, for demo_runner

import demo_runner  # noqa: E402

PROTO = demo_runner.ROOT / "protos" / "helloworld.proto"
EXPECTED = [
    "Greeter client received: Hello, you!",
    "Greeter client received: Hello, world!",
    "Greeter client received: Hello, grpc_green!",
]


def check(output):
    """None if the client printed every expected reply, else the failure report."""
    missing = [line for line in EXPECTED if line not in output.splitlines()]
    if missing:
        return "FAILED: missing replies: %s" % missing
    return None


if __name__ == "__main__":
    sys.exit(demo_runner.run(HERE, PROTO, "greeter", check, "%d replies" % len(EXPECTED)))
