"""Leak checks: many RPCs (both ends in this process) must not grow memory.

After a warm-up (free lists, caches, deques of the test servicer reach their
steady state) the workload runs again and these are compared, after
gc.collect():

* GC-tracked Python objects (sys.gettotalrefcount() on debug builds),
* bytes allocated through Python's allocators (tracemalloc),
* bytes in use in the C heap (glibc mallinfo2: catches native leaks in the
  engine — nghttp2 sessions, stream objects, buffers — that tracemalloc
  cannot see).
"""

import collections
import ctypes
import ctypes.util
import gc
import logging
import os
import sys
import time
import tracemalloc

import grpc  # grpc_green (patched by conftest) or grpcio in grpcio mode
import pytest
import testing_pb2
import testing_pb2_grpc

Echo = testing_pb2.EchoRequest

MAX_OBJECT_GROWTH = 200
MAX_TRACED_GROWTH = 512 * 1024
MAX_NATIVE_GROWTH = 1024 * 1024
# GRPC_GREEN_LEAK_DEBUG=1: also print which object types grew.
DEBUG = os.environ.get("GRPC_GREEN_LEAK_DEBUG") == "1"


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _native_in_use_function():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    mallinfo2.argtypes = []

    def in_use():
        info = mallinfo2()
        return info.uordblks + info.hblkhd  # malloc'd + mmap'd chunks in use

    return in_use


native_in_use = _native_in_use_function()


class Usage:
    def __init__(self):
        for _ in range(3):
            gc.collect()
        if hasattr(sys, "gettotalrefcount"):
            self.objects = sys.gettotalrefcount()
            self.objects_kind = "total refcount"
        else:
            self.objects = len(gc.get_objects())
            self.objects_kind = "gc objects"
        self.traced = tracemalloc.get_traced_memory()[0]
        self.tracemalloc_overhead = tracemalloc.get_tracemalloc_memory()
        self.native = native_in_use() if native_in_use else None
        self.types = None
        if DEBUG:
            self.types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def check_no_growth(run, warmup, count, after_warmup=None):
    """run(n) makes n calls; fails if the second run(count) leaks.

    after_warmup(), if given, runs between the warm-up and the measurement."""
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start()
    logging.disable(logging.CRITICAL)  # log records captured by pytest would "leak"
    try:
        run(warmup)
        if after_warmup is not None:
            after_warmup()
        before = Usage()
        started = time.monotonic()
        run(count)
        elapsed = time.monotonic() - started
        after = Usage()
    finally:
        logging.disable(logging.NOTSET)
        if started_tracing:
            tracemalloc.stop()

    objects = after.objects - before.objects
    traced = after.traced - before.traced
    report = "%d calls in %.2fs: %s %+d, traced %+d B" % (
        count,
        elapsed,
        before.objects_kind,
        objects,
        traced,
    )
    if before.native is not None:
        # tracemalloc's own bookkeeping lives in the C heap too.
        native = (after.native - before.native) - (
            after.tracemalloc_overhead - before.tracemalloc_overhead
        )
        report += ", native heap %+d B" % native
    print(report)
    if DEBUG:
        print("grew:", (after.types - before.types).most_common(25))
    assert objects < MAX_OBJECT_GROWTH, report
    assert traced < MAX_TRACED_GROWTH, report
    if before.native is not None:
        assert native < MAX_NATIVE_GROWTH, report


# grpcio mode only validates the harness; keep it quick (grpcio + tracemalloc
# is slow). grpc_green always runs the full counts.
def scaled(count, support):
    return count if support.using_green else count // 4


@pytest.fixture
def echo_server(green_server, support):
    """EchoServicer without history (its bounded deques would fill during the
    measurement) and, in grpcio mode, a pool small enough to be fully grown
    by the warm-up."""
    return green_server(
        support.EchoServicer(history=0), handlers=[support.raw_handlers()], grpcio_workers=4
    )


@pytest.fixture
def stub(echo_server, make_channel):
    return testing_pb2_grpc.TestServiceStub(make_channel(echo_server.target))


def test_no_leak_successful_calls(stub, echo_server, make_channel, support):
    raw = make_channel(echo_server.target).unary_unary("/%s/Identity" % support.RAW_SERVICE)
    request = Echo(payload=b"x" * 100, message="leak check")
    metadata = (("x-echo-key", "value"), ("x-echo-data-bin", b"\x00\x01"))

    def run(n):
        for i in range(n):
            if i % 10 == 0:
                response, call = stub.Echo.with_call(request, metadata=metadata, timeout=10)
                assert call.code() is grpc.StatusCode.OK
            elif i % 10 == 1:
                assert raw(b"raw bytes") == b"raw bytes"
            else:
                response = stub.Echo(request)
            assert response.message == "leak check"

    check_no_growth(run, warmup=500, count=scaled(10_000, support))


def test_no_leak_failing_calls(stub, echo_server, make_channel, support):
    channel = make_channel(echo_server.target)
    unknown = channel.unary_unary("/grpc_green.testing.TestService/NoSuchMethod")
    aborting = Echo(
        status_code=grpc.StatusCode.NOT_FOUND.value[0], status_details="gone", use_abort=True
    )
    raising = Echo(raise_exception=True, exception_message="boom")

    def run(n):
        for i in range(n):
            kind = i % 3
            try:
                if kind == 0:
                    unknown(b"")
                elif kind == 1:
                    stub.Echo(aborting)
                else:
                    stub.Echo(raising)
            except grpc.RpcError as error:
                code = error.code()
            else:
                raise AssertionError("call %d succeeded" % i)
            assert (
                code
                is (
                    grpc.StatusCode.UNIMPLEMENTED,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.UNKNOWN,
                )[kind]
            )

    check_no_growth(run, warmup=300, count=scaled(2_000, support))


def _grow_greenlet_pool(hub, support, size):
    """grpc_green's hub keeps the greenlets that ran handlers and callbacks in
    a pool (bounded) that grows to the peak number running at once, and that
    peak depends on how the machine schedules the two processes' work. Grown
    here beyond any peak the measured run can reach, the pool's growth is
    not counted as a leak."""
    if not support.using_green:
        return  # grpcio: the fixture's 4 pool threads are all started by the warm-up
    from grpc_green import _core

    release = hub.Event()
    started = []

    def job():
        started.append(None)
        release.wait(10)

    for _ in range(size):
        _core.spawn(job)
    hub.wait_until(lambda: len(started) == size, timeout=10)
    release.set()
    hub.sleep(0.01)


def test_no_leak_deadline_exceeded_calls(stub, echo_server, hub, support):
    servicer = echo_server.servicer
    request = Echo(message="late", sleep_seconds=1.0)
    batch = 50

    def settled():
        # Every handler has returned and every done-callback has run. A
        # call's callbacks are spawned when its stream closes, which can come
        # after its handler returned (the server's deadline ends the handler,
        # the client's RST_STREAM closes the stream later), and they run on a
        # later hub pass.
        return servicer.in_flight == 0 and servicer.callbacks_run == servicer.callbacks_added

    def run(n):
        for _ in range(0, n, batch):
            futures = [stub.Echo.future(request, timeout=0.01) for _ in range(batch)]
            for future in futures:
                assert future.exception(timeout=10).code() is grpc.StatusCode.DEADLINE_EXCEEDED
            del futures
            # One batch at a time on the server side too: at most `batch`
            # handlers and `batch` callbacks run at once.
            hub.wait_until(settled, timeout=10)

    check_no_growth(
        run,
        warmup=300,
        count=scaled(2_000, support),
        after_warmup=lambda: _grow_greenlet_pool(hub, support, 3 * batch),
    )
