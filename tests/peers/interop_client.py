"""A real grpcio client running the interop cases (always in its own process).

    python interop_client.py --target HOST:PORT [--case NAME ...] [--case-timeout S]

Runs the named cases of tests/interop_cases.py (all of them, in order, when
no --case is given), each on a fresh channel to TARGET, and prints one line
per case on stdout:

    RESULT {"case": NAME, "ok": true|false, "error": "<traceback>"|null, "elapsed": S}

A case that has not finished after --case-timeout seconds (default 10) is
reported as failed ("timed out") and left behind; the next case runs anyway.
Exits 0 if every case passed, 1 otherwise (each failure's traceback is also
written to stderr).
"""

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_gen"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # interop_cases

import grpc  # real grpcio: this process is never patched
from interop_cases import CASES


def run_case(name, target, timeout):
    """Runs one case on its own channel; returns (ok, error text or None)."""
    outcome = {}
    channel = grpc.insecure_channel(target)

    def body():
        try:
            CASES[name](channel, threading.Event)
            outcome["error"] = None
        except BaseException:  # noqa: BLE001 -- reported to the test
            outcome["error"] = traceback.format_exc()

    thread = threading.Thread(target=body, name="case-" + name, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False, "%s timed out after %ss (left running)" % (name, timeout)
    channel.close()
    return outcome["error"] is None, outcome["error"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument(
        "--case",
        action="append",
        choices=sorted(CASES),
        help="case to run (repeatable); default: all",
    )
    parser.add_argument("--case-timeout", type=float, default=10.0)
    args = parser.parse_args()

    failed = []
    for name in args.case or list(CASES):
        started = time.monotonic()
        ok, error = run_case(name, args.target, args.case_timeout)
        print(
            "RESULT "
            + json.dumps(
                {
                    "case": name,
                    "ok": ok,
                    "error": error,
                    "elapsed": round(time.monotonic() - started, 3),
                }
            ),
            flush=True,
        )
        if not ok:
            failed.append(name)
            print("FAILED %s\n%s" % (name, error), file=sys.stderr, flush=True)
    print(
        "DONE %d passed, %d failed%s"
        % (
            len(args.case or CASES) - len(failed),
            len(failed),
            (": " + ", ".join(failed)) if failed else "",
        ),
        flush=True,
    )
    sys.stderr.flush()
    # A timed-out case may still hold a channel; do not wait for it at exit.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
