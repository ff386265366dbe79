"""The harness the examples' run_demo.py scripts share (not part of an example).

Each run_demo.py puts this directory on sys.path, imports this module and
calls run() with what is particular to its example: the .proto file, the
name its server and client scripts start with, a check of the client's
output and the message for success. run():

1. Generates <proto>_pb2.py / <proto>_pb2_grpc.py from the .proto file into
   the example's directory (if missing or older than the .proto file).
2. Starts <program>_server.py on a free port (port 0) in a subprocess and
   waits for its "listening on PORT" line.
3. Runs <program>_client.py against localhost:PORT, prints its output and
   checks its exit status and, with the example's check, its output.
4. Stops the server.

It returns non-zero if any step fails (after a line starting "FAILED:"),
else zero (after "demo OK: <message>"). Both scripts run in the example's
directory with that directory and the repository root on PYTHONPATH, after
any entries already there: grpc_green is taken from the repository root (an
in-place build) unless PYTHONPATH already provides one. The example servers
and clients do not use this module; each is a program of its own.
"""

import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generate(proto, out_dir):
    """Generates the _pb2 modules for `proto` into `out_dir` unless up to date."""
    generated = [out_dir / (proto.stem + suffix) for suffix in ("_pb2.py", "_pb2_grpc.py")]
    if all(p.exists() and p.stat().st_mtime >= proto.stat().st_mtime for p in generated):
        return
    label = proto.stem.replace("_", " ")
    print("generating %s code from %s" % (label, proto.relative_to(ROOT)))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(proto.parent),
            "--python_out=" + str(out_dir),
            "--grpc_python_out=" + str(out_dir),
            str(proto),
        ],
        check=True,
    )


def child_env(here):
    """os.environ with the repository root and `here` appended to PYTHONPATH."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths + [str(ROOT), str(here)])
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
    """Terminates the server (kills it if it is still there after 5 s)."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def lines_check(expected, prefix, expected_run, what):
    """A check for run(): the client's output must hold every line of
    `expected`, and its lines starting with `prefix` must be exactly
    `expected_run`, in that order. The check returns None if so, else the
    failure report: "FAILED:" and one problem a line, a wrong run as
    "<what> <its lines>, expected <expected_run>".
    """

    def check(output):
        lines = output.splitlines()
        problems = ["missing line: %s" % line for line in expected if line not in lines]
        run_lines = [line for line in lines if line.startswith(prefix)]
        if run_lines != expected_run:
            problems.append("%s %s, expected %s" % (what, run_lines, expected_run))
        if problems:
            return "FAILED:\n  " + "\n  ".join(problems)
        return None

    return check


def run(here, proto, program, check, ok_message):
    """Runs one example end to end; returns the exit status for sys.exit().

    here: the example's directory (a Path); the scripts and the generated
        code are there.
    proto: the .proto file (a Path); "generating <its stem> code" names it,
        with "_" read as a space.
    program: the scripts are <program>_server.py and <program>_client.py.
    check(output): given the client's stdout, returns None if it is as
        expected, else the failure report to print (starting "FAILED:").
    ok_message: printed after "demo OK: " when everything succeeded.
    """
    server_script = program + "_server.py"
    client_script = program + "_client.py"
    generate(proto, here)
    env = child_env(here)
    server = subprocess.Popen(
        [sys.executable, str(here / server_script), "0"],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        env=env,
        cwd=str(here),
    )
    try:
        port = read_port(server)
        print("%s is listening on port %d" % (server_script, port))
        client = subprocess.run(
            [sys.executable, str(here / client_script), "localhost:%d" % port],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(here),
            timeout=60,
        )
        sys.stdout.write(client.stdout)
        sys.stderr.write(client.stderr)
        if client.returncode != 0:
            print("FAILED: %s exited with %d" % (client_script, client.returncode))
            return 1
        report = check(client.stdout)
        if report:
            print(report)
            return 1
        if server.poll() is not None:
            print("FAILED: the server exited early (%d)" % server.returncode)
            return 1
        print("demo OK: " + ok_message)
        return 0
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print("FAILED: %s" % error)
        return 1
    finally:
        stop(server)
