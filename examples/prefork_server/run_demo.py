"""Runs the prefork_server example end to end.

Generates worker_pb2.py / worker_pb2_grpc.py from worker.proto next to this
file, starts server.py with WORKERS worker processes on a free port, runs
client.py with CHANNELS channels against it and stops the server with
SIGTERM. Checks that every call succeeded, each channel on a connection of
its own; that more than one worker answered (the kernel picks a worker per
connection, so a batch answered by a single worker is retried, up to
ATTEMPTS batches); that the server stopped cleanly; and that every pid that
answered is one of the workers it reports stopping. Exits non-zero if any
check fails.
"""

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, for demo_runner

import demo_runner  # noqa: E402

WORKERS = 4
CHANNELS = 64
ATTEMPTS = 3


class Failed(Exception):
    pass


def run_client(env, port):
    """Runs client.py once; returns {worker pid: channels it answered}."""
    client = subprocess.run(
        [sys.executable, str(HERE / "client.py"), "localhost:%d" % port, str(CHANNELS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(HERE),
        timeout=60,
    )
    sys.stdout.write(client.stdout)
    sys.stderr.write(client.stderr)
    if client.returncode != 0:
        raise Failed("client.py exited with %d" % client.returncode)
    summary = "%d channels, %d connections, " % (CHANNELS, CHANNELS)
    if not client.stdout.startswith(summary):
        raise Failed("expected a summary starting %r" % summary)
    answered = {
        int(pid): int(count)
        for pid, count in re.findall(r"^worker (\d+) answered (\d+) channels$", client.stdout, re.M)
    }
    if sum(answered.values()) != CHANNELS:
        raise Failed(
            "the workers answered %d channels, expected %d" % (sum(answered.values()), CHANNELS)
        )
    return answered


def exercise(env, port):
    """Runs batches until more than one worker answers one; returns the
    number of workers that answered it and every pid that answered."""
    seen = set()
    for attempt in range(1, ATTEMPTS + 1):
        answered = run_client(env, port)
        seen.update(answered)
        if len(answered) > 1:
            return len(answered), seen
        print("batch %d: one worker answered every channel; trying again" % attempt)
    raise Failed("one worker answered every channel, %d batches in a row" % ATTEMPTS)


def stop_server(server):
    """SIGTERM to the server, which forwards it to its workers; returns the
    workers' pids from its report. Raises Failed unless it stops cleanly."""
    server.terminate()
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        demo_runner.stop(server)
        raise Failed("the server did not stop within 15 s of SIGTERM") from None
    output = server.stdout.read()
    sys.stdout.write(output)
    if server.returncode != 0:
        raise Failed("the server exited with %d" % server.returncode)
    match = re.search(r"^SIGTERM: stopping workers ([\d ]+)$", output, re.M)
    if not match or "all workers stopped" not in output.splitlines():
        raise Failed("the server did not report stopping its workers")
    return {int(pid) for pid in match.group(1).split()}


def main():
    demo_runner.generate(HERE / "worker.proto", HERE)
    env = demo_runner.child_env(HERE)
    server = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "0", str(WORKERS)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(HERE),
    )
    try:
        port = demo_runner.read_port(server)
        print("server.py is listening on port %d with %d workers" % (port, WORKERS))
        answered_by, seen = exercise(env, port)
        workers = stop_server(server)
        if not seen <= workers:
            raise Failed("pids %s answered, not workers of the server" % sorted(seen - workers))
    except (Failed, RuntimeError, subprocess.TimeoutExpired) as error:
        print("FAILED: %s" % error)
        return 1
    finally:
        demo_runner.stop(server)
    print(
        "demo OK: %d workers share one port; %d of them answered %d channels"
        % (WORKERS, answered_by, CHANNELS)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
