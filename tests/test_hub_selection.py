"""Which hub a thread gets: automatic choice, forcing, and the refusals that
keep one thread from running two loops. Each case runs in a fresh
interpreter, since the choice is made once per thread and gevent's patching
is process-wide."""

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

pytestmark = pytest.mark.green_only


def run(code, hub=None):
    env = dict(os.environ)
    env.pop("GRPC_GREEN_HUB", None)
    if hub:
        env["GRPC_GREEN_HUB"] = hub
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()


def test_plain_process_runs_native_without_importing_gevent():
    assert run("""
        import sys, grpc_green
        print(grpc_green.hub.kind(), "gevent" in sys.modules)
    """) == ["native", "False"]


def test_gevent_imported_but_not_patched_stays_native():
    assert run("import gevent, grpc_green; print(grpc_green.hub.kind())") == ["native"]


def test_patched_process_runs_on_gevents_hub():
    assert run("""
        from gevent import monkey; monkey.patch_all()
        import gevent, grpc_green
        print(grpc_green.hub.kind())
        # The very same hub greenlet: grpc_green's waits switch to gevent's.
        t = grpc_green.hub.spawn(lambda: gevent.getcurrent().parent is gevent.get_hub())
        print(t.get(5))
    """) == ["gevent", "True"]


def test_existing_gevent_hub_is_joined_without_patching():
    assert run("""
        import gevent, grpc_green
        gevent.sleep(0)  # makes this thread's gevent hub
        print(grpc_green.hub.kind())
    """) == ["gevent"]


def test_forced_gevent_by_environment_and_by_call():
    assert run("import grpc_green; print(grpc_green.hub.kind())", hub="gevent") == ["gevent"]
    assert run("""
        import grpc_green
        grpc_green.hub.use("gevent")
        print(grpc_green.hub.kind())
    """) == ["gevent"]


def test_choice_is_fixed_once_the_threads_hub_exists():
    assert run("""
        import grpc_green
        print(grpc_green.hub.kind())
        try:
            grpc_green.hub.use("gevent")
        except RuntimeError as exc:
            print("refused" if "already runs the native hub" in str(exc) else exc)
        grpc_green.hub.use("native")  # the same kind: fine
        print(grpc_green.hub.kind())
    """) == ["native", "refused", "native"]


def test_forced_native_in_a_patched_process_is_refused():
    out = run(
        """
        from gevent import monkey; monkey.patch_all()
        import grpc_green
        try:
            grpc_green.insecure_channel("127.0.0.1:1")
        except RuntimeError as exc:
            print("refused" if "two loops" in str(exc) else exc)
    """,
        hub="native",
    )
    assert out == ["refused"]


def test_bad_kind_is_rejected():
    assert run("""
        import grpc_green
        try:
            grpc_green.hub.use("asyncio")
        except ValueError:
            print("rejected")
    """) == ["rejected"]
