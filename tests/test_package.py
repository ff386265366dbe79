"""The package as pip installs it: its metadata, and the wheel that carries
its C libraries.

`make test` runs the whole suite twice on the checkout's in-place build and
once more (`make test-wheel`) from a copy of tests/ against the manylinux
wheel installed into a scratch venv, with GRPC_GREEN_TEST_INSTALLED=1. The
wheel checks below need that install; the metadata and hidden-library checks
run in both modes (in-place, hiding the system's libev must break the import:
that shows the hiding works).
"""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import INSTALLED

pytestmark = pytest.mark.green_only

wheel_only = pytest.mark.skipif(
    not INSTALLED, reason="checks the installed wheel (make test-wheel)"
)

# The shared libraries the wheel must carry (by soname prefix).
BUNDLED = ("libev", "libnghttp2")


def core_path():
    import grpc_green._core

    return Path(grpc_green._core.__file__)


def test_metadata_is_pyprojects():
    import grpc_green
    import grpc_green.monkey

    meta = importlib.metadata.metadata("grpc_green")
    assert meta["Version"] == grpc_green.__version__
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["License-Expression"] == "Apache-2.0"
    assert "gevent" in meta.get_all("Provides-Extra")
    requires = importlib.metadata.requires("grpc_green") or []
    assert any(r.startswith("greenlet>=3.0") for r in requires), requires
    assert any(r.startswith("gevent") and 'extra == "gevent"' in r for r in requires), requires
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert meta.get_all("Project-URL")

    # gevent.monkey.patch_all(grpc=True) finds grpc_green through this.
    (plugin,) = [
        ep
        for ep in importlib.metadata.entry_points(group="gevent.plugins.monkey.did_patch_all")
        if ep.name == "grpc_green"
    ]
    assert plugin.load() is grpc_green.monkey._gevent_did_patch_all


@wheel_only
def test_installed_from_the_wheel():
    import grpc_green

    dist = importlib.metadata.distribution("grpc_green")
    site = Path(dist.locate_file("")).resolve()
    assert Path(grpc_green.__file__).resolve().parent == site / "grpc_green"
    tags = [
        line.split(": ", 1)[1]
        for line in dist.read_text("WHEEL").splitlines()
        if line.startswith("Tag: ")
    ]
    (tag,) = tags
    impl = "cp%d%d" % sys.version_info[:2]
    match = re.fullmatch(impl + "-" + impl + r"-manylinux_(\d+)_(\d+)_x86_64", tag)
    assert match, tag
    # A tag no newer than this machine's glibc: the wheel installs here.
    libc = os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    assert tuple(map(int, match.groups())) <= tuple(map(int, libc.split(".")[:2])), (tag, libc)
    # The typing files travel with it.
    assert (site / "grpc_green" / "py.typed").exists()
    assert (site / "grpc_green" / "_core.pyi").exists()


@wheel_only
def test_core_resolves_its_libraries_from_the_wheel():
    core = core_path()
    libs_dir = (core.parent.parent / "grpc_green.libs").resolve()
    out = subprocess.run(["ldd", str(core)], capture_output=True, text=True, check=True).stdout
    resolved = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            resolved[m.group(1)] = m.group(2)
    for prefix in BUNDLED:
        found = [
            (name, path)
            for name, path in resolved.items()
            if name.startswith(prefix + "-") or name.startswith(prefix + ".")
        ]
        assert found, "%s missing from ldd:\n%s" % (prefix, out)
        for name, path in found:
            assert Path(path).resolve().parent == libs_dir, "%s resolves to %s:\n%s" % (
                name,
                path,
                out,
            )


def system_library_files():
    """The files of the system's libev and libnghttp2 the dynamic linker
    would find (ldconfig's cache), symlinks resolved."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    files = set()
    for line in out.splitlines():
        m = re.match(r"\s*(lib(?:ev|nghttp2)\.so\.\d+) .*=> (\S+)", line)
        if m:
            files.add(os.path.realpath(m.group(2)))
    return sorted(files)


CALL_ONE_RPC = """
import grpc_green

def echo(request, context):
    return request

server = grpc_green.server()
server.add_generic_rpc_handlers([grpc_green.method_handlers_generic_handler(
    "t", {"Echo": grpc_green.unary_unary_rpc_method_handler(echo)})])
port = server.add_insecure_port("127.0.0.1:0")
server.start()
with grpc_green.insecure_channel("127.0.0.1:%d" % port) as channel:
    assert channel.unary_unary("/t/Echo")(b"ping", timeout=10) == b"ping"
server.stop(None)
print("ok")
"""


def test_imports_without_the_system_libraries(tmp_path):
    """With the system's libev and libnghttp2 hidden (a private mount
    namespace binds /dev/null over them), the installed wheel still imports
    and serves a call; the in-place build, linked against them, cannot."""
    if (
        not shutil.which("unshare")
        or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode
    ):
        pytest.skip("needs a private mount namespace (unshare -m)")
    hidden = system_library_files()
    assert hidden, "ldconfig knows no libev or libnghttp2"
    script = tmp_path / "call.py"
    script.write_text(textwrap.dedent(CALL_ONE_RPC))
    mounts = " && ".join("mount --bind /dev/null %s" % f for f in hidden)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", '%s && exec "$0" "$1"' % mounts, sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if INSTALLED:
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
    else:
        assert proc.returncode != 0, proc.stdout
        assert "file too short" in proc.stderr or "cannot open shared object" in proc.stderr, (
            proc.stderr
        )
