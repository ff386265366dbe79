"""Runs the gevent_app example end to end.

Generates inventory_pb2.py / inventory_pb2_grpc.py from inventory.proto next
to this file, starts backend_server.py (gRPC, grpc_green's native hub, no
gevent) and frontend.py (gevent HTTP server calling the backend through
grpc_green on gevent's hub), then, as an HTTP client of the front end:

1. GET /items: the whole catalog, streamed from the backend;
2. GET /items/Z-999: an unknown SKU, answered 404 (the backend's NOT_FOUND);
3. REQUESTS concurrent GET /items/<sku>: each one waits LOOKUP_SECONDS in the
   backend, so one after another they would take REQUESTS * LOOKUP_SECONDS;
   served concurrently they must all be done in a small part of that.

Every answer is checked, and so is the hub each server reports: gevent's
for the front end, grpc_green's native hub for the backend. Exits non-zero
if any step fails, after stopping both servers.
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, for demo_runner

import demo_runner  # noqa: E402

REQUESTS = 200
LOOKUP_SECONDS = 0.2  # backend_server.LOOKUP_SECONDS: each GetItem takes this long
# The requests must overlap: all of them done in a tenth of the time they
# would take one after another (here 4 s rather than 40 s).
MAX_WALL_SECONDS = REQUESTS * LOOKUP_SECONDS / 10
CATALOG = [
    {"sku": "A-100", "name": "anvil", "stock": 12},
    {"sku": "B-200", "name": "bucket", "stock": 40},
    {"sku": "C-300", "name": "compass", "stock": 7},
    {"sku": "D-400", "name": "drill", "stock": 3},
    {"sku": "E-500", "name": "easel", "stock": 25},
]


class Failed(Exception):
    pass


def get(url):
    """GET `url`; returns (HTTP status, decoded JSON body, seconds taken)."""
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, json.loads(body), time.monotonic() - start


def expect(what, answer, status, body):
    if answer[:2] != (status, body):
        raise Failed("%s answered %s %s, expected %s %s" % (what, *answer[:2], status, body))


def start(script, *args):
    """Starts `script` with `args`; returns (process, the port it listens on)."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdout=subprocess.PIPE,
        text=True,
        env=demo_runner.child_env(HERE),
        cwd=str(HERE),
    )
    try:
        return process, demo_runner.read_port(process)
    except RuntimeError:
        demo_runner.stop(process)
        raise


def exercise(base):
    """The client's part: every request and every check; raises Failed."""
    expect("GET /items", get(base + "/items"), 200, {"items": CATALOG})
    print("GET /items: %d items" % len(CATALOG))
    expect(
        "GET /items/Z-999",
        get(base + "/items/Z-999"),
        404,
        {"error": "no item with SKU 'Z-999'", "grpc_status": "NOT_FOUND"},
    )
    print("GET /items/Z-999: 404, NOT_FOUND from the backend")

    wanted = [CATALOG[i % len(CATALOG)] for i in range(REQUESTS)]
    start_time = time.monotonic()
    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        answers = list(pool.map(lambda item: get(base + "/items/" + item["sku"]), wanted))
    wall = time.monotonic() - start_time
    for item, answer in zip(wanted, answers, strict=True):
        expect("GET /items/" + item["sku"], answer, 200, item)
    print(
        "%d concurrent GET /items/<sku>: all answered correctly in %.2f s"
        " (slowest %.2f s); one after another they would take %.1f s"
        % (REQUESTS, wall, max(seconds for _, _, seconds in answers), REQUESTS * LOOKUP_SECONDS)
    )
    if wall > MAX_WALL_SECONDS:
        raise Failed(
            "the requests did not overlap: %.2f s, expected under %.1f s" % (wall, MAX_WALL_SECONDS)
        )


def stop(name, process, hub):
    """Stops a server; fails unless it was still running and reported
    running grpc_green on `hub` (after its listening line)."""
    if process.poll() is not None:
        raise Failed("%s exited early (%d)" % (name, process.returncode))
    demo_runner.stop(process)
    said = process.stdout.read().strip()
    print("%s said: %s" % (name, said))
    if "on the %s hub" % hub not in said:
        raise Failed("%s is not on the %s hub" % (name, hub))


def main():
    demo_runner.generate(HERE / "inventory.proto", HERE)
    backend = frontend = None
    try:
        backend, grpc_port = start("backend_server.py", "0")
        print("backend_server.py is listening on port %d" % grpc_port)
        frontend, http_port = start("frontend.py", "localhost:%d" % grpc_port, "0")
        print("frontend.py is listening on port %d" % http_port)
        exercise("http://127.0.0.1:%d" % http_port)
        stop("frontend.py", frontend, "gevent")
        stop("backend_server.py", backend, "native")
    except (Failed, RuntimeError, OSError) as error:
        print("FAILED: %s" % error)
        return 1
    finally:
        for process in (frontend, backend):
            if process is not None:
                demo_runner.stop(process)
    print("demo OK: %d concurrent HTTP requests, each a gRPC call from gevent" % REQUESTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
