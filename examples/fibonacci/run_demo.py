"""Runs the Fibonacci example end to end.

examples/demo_runner.py generates fibonacci_pb2.py / fibonacci_pb2_grpc.py
from fibonacci.proto next to this file, starts fibonacci_server.py, runs
fibonacci_client.py against it (unary and server-streaming calls, and two
requests the server rejects) and stops the server; the answers the client
must print are checked here. Exits non-zero if any step fails or an expected
answer is missing.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, for demo_runner

import demo_runner  # noqa: E402

PROTO = HERE / "fibonacci.proto"
FIRST_TEN = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
# Lines fibonacci_client.py prints for the server's answers.
EXPECTED = [
    "GetSequence(10): %s" % FIRST_TEN,
    "GetSequence(94): 94 values, the last F(93) = 12200160415121876738",
    "GetSequence(-1) failed: INVALID_ARGUMENT: count must not be negative, got -1",
    "StreamSequence(1000) failed: INVALID_ARGUMENT: count must be at most 94"
    " (the numbers are uint64), got 1000",
]
EXPECTED_STREAM = [
    "StreamSequence(10): F(%d) = %d" % (index, value) for index, value in enumerate(FIRST_TEN)
]


if __name__ == "__main__":
    check = demo_runner.lines_check(
        EXPECTED, "StreamSequence(10): ", EXPECTED_STREAM, "StreamSequence(10) printed"
    )
    sys.exit(
        demo_runner.run(
            HERE,
            PROTO,
            "fibonacci",
            check,
            "GetSequence and StreamSequence answered, bad counts rejected",
        )
    )
