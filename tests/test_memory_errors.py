"""Out of memory in the engine: std::bad_alloc becomes MemoryError at the
Python boundary, and the process and the other calls go on.

Each case runs in a subprocess whose address space is capped
(RLIMIT_AS) just above what it uses: the request's bytes fit, the engine's
copy of them does not.
"""

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

pytestmark = [
    pytest.mark.green_only,
    pytest.mark.skipif(
        "libasan" in os.environ.get("LD_PRELOAD", ""),
        reason="AddressSanitizer's operator new aborts instead of throwing",
    ),
]

PRELUDE = textwrap.dedent(
    """
    import gc, resource, sys
    sys.path.insert(0, {root!r})
    import grpc_green as grpc

    def address_space():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    server = grpc.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("S", {{
        "Unary": grpc.unary_unary_rpc_method_handler(lambda r, c: r[:16]),
        "Big": grpc.unary_unary_rpc_method_handler(lambda r, c: big),
        "Stream": grpc.stream_stream_rpc_method_handler(lambda it, c: (m[:16] for m in it)),
    }})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel("127.0.0.1:%d" % port)
    unary = channel.unary_unary("/S/Unary")
    assert unary(b"warm", timeout=10) == b"warm"
    SIZE = 256 << 20
    big = b"x" * SIZE
    # Room for half of another copy: the engine's copy of `big` cannot fit.
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + SIZE // 2, resource.RLIM_INFINITY))
    """
)


def run(body):
    code = PRELUDE.format(root=str(ROOT)) + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (
        result.returncode,
        result.stdout,
        result.stderr,
    )
    return result.stdout.split()


def test_unary_request_the_engine_cannot_copy_raises_memory_error():
    out = run(
        """
        try:
            unary(big, timeout=10)
        except MemoryError:
            print("MemoryError")
        del big
        gc.collect()
        print(unary(b"after", timeout=10).decode())
        """
    )
    assert out == ["MemoryError", "after"]


def test_stream_write_the_engine_cannot_copy_raises_memory_error():
    out = run(
        """
        stream = channel.stream_stream("/S/Stream")
        call = channel._core.start("/S/Stream", 10, None, False, None, False)
        assert call.write(b"first")
        try:
            call.write(big)
        except MemoryError:
            print("MemoryError")
        del big
        gc.collect()
        # The call is still usable: its next message goes out.
        assert call.write(b"second")
        call.done_writing()
        print(call.read().decode(), call.read().decode(), call.read())
        print(unary(b"after", timeout=10).decode())
        """
    )
    assert out == ["MemoryError", "first", "second", "None", "after"]


def test_response_the_engine_cannot_copy_ends_the_call_internal():
    """The handler's response fits, the engine's copy of it does not: the
    call ends INTERNAL at once (not at its deadline), and the server goes on."""
    out = run(
        """
        import time
        started = time.monotonic()
        try:
            channel.unary_unary("/S/Big")(b"", timeout=30)
        except grpc.RpcError as e:
            print(e.code().name, "MemoryError" in e.details(), time.monotonic() - started < 10)
        del big
        gc.collect()
        print(unary(b"after", timeout=10).decode())
        """
    )
    assert out == ["INTERNAL", "True", "True", "after"]
