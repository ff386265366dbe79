"""Flow control: a fast sender and a slow receiver in different processes
keep memory bounded, and the HTTP/2 window is configurable.

The 1 GiB tests run the server in a subprocess (tests/peers/stream_peer.py,
on the implementation under test) and the client in this process. The slow
side pauses PAUSE seconds after every PAUSE_EVERY 64 KiB messages, so it can
take at most about 100 MiB/s; any sender that is faster has to be held back
by flow control, or the backlog piles up in one of the two processes.

Memory is the peak resident set size (VmHWM in /proc/<pid>/status) of each
process. After a warm-up transfer the peak is reset (writing 5 to
/proc/<pid>/clear_refs), so the figure at the end is the highest RSS reached
during the measured transfer; growth = that peak - the RSS at the reset.
"""

import os
import re
import sys
import time

import grpc  # grpc_green (patched by conftest) or grpcio in grpcio mode
import pytest
import streaming_pb2
import streaming_pb2_grpc
from streaming_behaviour import StreamingServicer

Req = streaming_pb2.StreamRequest

MESSAGE = 64 * 1024
TOTAL = 1 << 30
COUNT = TOTAL // MESSAGE  # 16,384 messages
WARMUP = 512  # 32 MiB
PAUSE_EVERY = 8
PAUSE = 0.005
MAX_GROWTH = 64 * 1024 * 1024

STREAM_PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "stream_peer.py")


# ------------------------------------------------------------ measurement


def _status(pid):
    with open("/proc/%s/status" % pid) as f:
        text = f.read()
    return {
        key: int(re.search(r"^%s:\s+(\d+) kB$" % key, text, re.M).group(1)) * 1024
        for key in ("VmHWM", "VmRSS")
    }


class PeakGrowth:
    """Peak RSS growth of a process from now on."""

    def __init__(self, pid, name):
        self.pid = pid
        self.name = name
        with open("/proc/%s/clear_refs" % pid, "w") as f:
            f.write("5")  # VmHWM := current VmRSS
        self.baseline = _status(pid)["VmRSS"]

    def growth(self):
        return _status(self.pid)["VmHWM"] - self.baseline

    def report(self):
        return "%s: peak %+.1f MiB over %.1f MiB" % (
            self.name,
            self.growth() / 2**20,
            self.baseline / 2**20,
        )


def _stream_peer_env(impl):
    env = dict(os.environ)
    env.pop("GRPC_GREEN_TEST_IMPL", None)
    if impl == "grpcio":
        env.pop("LD_PRELOAD", None)  # kept for grpc_green under `make asan`
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture
def peer(hub, support):
    """tests/peers/stream_peer.py serving Streaming in its own process."""
    process = hub.start_process(
        [sys.executable, STREAM_PEER, "--impl", support.impl, "serve"],
        env=_stream_peer_env(support.impl),
    )
    port = int(process.wait_for_output(r"^PORT (\d+)$", timeout=30).group(1))
    process.target = "127.0.0.1:%d" % port
    yield process
    process.close()


def _assert_bounded(peaks):
    report = "; ".join(p.report() for p in peaks)
    print(report)
    for peak in peaks:
        assert peak.growth() < MAX_GROWTH, report


# ------------------------------------------------------------- 1 GiB tests


def test_gigabyte_to_a_slow_reader(peer, make_channel, hub):
    """Server (subprocess) streams 1 GiB to this process, which reads slowly."""
    stub = streaming_pb2_grpc.StreamingStub(make_channel(peer.target))

    def read(count):
        call = stub.ServerStream(Req(response_count=count, response_size=MESSAGE), timeout=120)
        received = 0
        for index, response in enumerate(call):
            assert response.index == index
            assert len(response.payload) == MESSAGE
            assert response.payload[0] == response.payload[-1] == index % 251
            received += 1
            if received % PAUSE_EVERY == 0:
                hub.sleep(PAUSE)
        assert call.code() is grpc.StatusCode.OK
        return received

    assert read(WARMUP) == WARMUP
    peaks = [PeakGrowth("self", "client (this process)"), PeakGrowth(peer.popen.pid, "server")]
    assert read(COUNT) == COUNT
    assert peer.poll() is None
    _assert_bounded(peaks)


def test_gigabyte_to_a_slow_server(peer, make_channel):
    """This process streams 1 GiB to the server (subprocess), whose handler
    reads slowly."""
    stub = streaming_pb2_grpc.StreamingStub(make_channel(peer.target))
    payload = b"\xa5" * MESSAGE

    def send(count):
        def requests():
            yield Req(payload=payload, pause_every=PAUSE_EVERY, pause_seconds=PAUSE)
            for _ in range(count - 1):
                yield Req(payload=payload)

        summary = stub.ClientStream(requests(), timeout=120)
        assert summary.count == count
        assert summary.total_bytes == count * MESSAGE

    send(WARMUP)
    peaks = [PeakGrowth("self", "client (this process)"), PeakGrowth(peer.popen.pid, "server")]
    send(COUNT)
    assert peer.poll() is None
    _assert_bounded(peaks)


# ---------------------------------------------------------- window option
#
# grpcio sets a stream's receive window with "grpc.http2.lookahead_bytes"
# (and "grpc.http2.bdp_probe": 0, or its BDP estimator grows the window).
# grpc_green accepts that name and "grpc.http2.initial_window_size"; grpcio
# does not know the latter.

WINDOW_OPTIONS = ["grpc.http2.lookahead_bytes", "grpc.http2.initial_window_size"]
SMALL_WINDOW = 64 * 1024
LARGE_WINDOW = 1024 * 1024
CHUNK = 16 * 1024
SINK = "grpc_green.flow.Sink"


def _window_options(option, window):
    return ((option, window), ("grpc.http2.bdp_probe", 0))


def _skip_unknown_option(option, support):
    if not support.using_green and option == "grpc.http2.initial_window_size":
        pytest.skip("grpcio has no option named grpc.http2.initial_window_size")


def _wait_until_stable(hub, read, settle=0.5, timeout=15):
    """Polls read() until its value has not changed for `settle` seconds.
    Nothing signals "the sender is parked", so stability is the evidence."""
    deadline = time.monotonic() + timeout
    value = read()
    since = time.monotonic()
    while time.monotonic() - since < settle:
        if time.monotonic() > deadline:
            raise AssertionError("still moving after %ss: %r" % (timeout, value))
        hub.sleep(0.02)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
    return value


def _sent_to_a_server_that_never_reads(option, window, green_server, make_channel, hub):
    """How many CHUNK-byte requests a client gets out (pulls from its request
    iterator) when the server's handler never reads them."""
    release = hub.Event()

    def hold(request_iterator, context):
        release.wait(30)
        return b"released"

    server = green_server(
        handlers=[
            grpc.method_handlers_generic_handler(
                SINK, {"Hold": grpc.stream_unary_rpc_method_handler(hold)}
            )
        ],
        options=_window_options(option, window),
    )
    channel = make_channel(server.target)
    pulled = [0]
    limit = 64 * 1024 * 1024 // CHUNK  # bounds the damage if nothing holds the client back

    def requests():
        while pulled[0] < limit:
            pulled[0] += 1
            yield b"c" * CHUNK

    future = channel.stream_unary("/%s/Hold" % SINK).future(requests(), timeout=60)
    count = _wait_until_stable(hub, lambda: pulled[0])
    # The stalled stream holds up nothing else on the connection.
    other = channel.stream_unary("/%s/Hold" % SINK).future(iter([b"x"]), timeout=30)
    release.set()
    assert other.result(timeout=10) == b"released"
    assert future.result(timeout=10) == b"released"
    return count


@pytest.mark.parametrize("option", WINDOW_OPTIONS)
def test_server_window_bounds_what_a_client_sends(option, green_server, make_channel, hub, support):
    _skip_unknown_option(option, support)
    small = _sent_to_a_server_that_never_reads(
        option, SMALL_WINDOW, green_server, make_channel, hub
    )
    large = _sent_to_a_server_that_never_reads(
        option, LARGE_WINDOW, green_server, make_channel, hub
    )
    report = "requests of %d bytes out: %d with a %d-byte window, %d with %d" % (
        CHUNK,
        small,
        SMALL_WINDOW,
        large,
        LARGE_WINDOW,
    )
    print(report)
    # About a window's worth: at most two messages more (one being framed,
    # one pulled from the iterator and parked), and not far below it.
    assert SMALL_WINDOW - 2 * CHUNK <= small * CHUNK <= SMALL_WINDOW + 2 * CHUNK, report
    assert LARGE_WINDOW - 2 * CHUNK <= large * CHUNK <= LARGE_WINDOW + 2 * CHUNK, report


def _yielded_to_a_client_that_never_reads(option, window, green_server, make_channel, hub):
    """How many CHUNK-byte responses a server handler gets out when its
    client's channel has a `window`-byte receive window and never reads."""
    servicer = StreamingServicer(grpc, hub.sleep)
    server = green_server(
        register=lambda s: streaming_pb2_grpc.add_StreamingServicer_to_server(servicer, s)
    )
    channel = make_channel(server.target, options=_window_options(option, window))
    key = "window-%d" % window
    call = channel.unary_stream(
        "/grpc_green.streaming.Streaming/Block",
        streaming_pb2.BlockRequest.SerializeToString,
        streaming_pb2.StreamResponse.FromString,
    )(
        streaming_pb2.BlockRequest(
            key=key, mode=streaming_pb2.BlockRequest.WRITE, response_size=CHUNK, max_responses=4096
        ),
        timeout=60,
    )
    hub.wait_until(lambda: key in servicer.observations)
    count = _wait_until_stable(hub, lambda: servicer.observations[key].responses_yielded)
    call.cancel()
    hub.wait_until(lambda: servicer.observations[key].finally_ran)
    return count


@pytest.mark.parametrize("option", WINDOW_OPTIONS)
def test_client_window_bounds_what_a_server_sends(option, green_server, make_channel, hub, support):
    _skip_unknown_option(option, support)
    small = _yielded_to_a_client_that_never_reads(
        option, SMALL_WINDOW, green_server, make_channel, hub
    )
    large = _yielded_to_a_client_that_never_reads(
        option, LARGE_WINDOW, green_server, make_channel, hub
    )
    report = "responses of %d bytes out: %d with a %d-byte window, %d with %d" % (
        CHUNK,
        small,
        SMALL_WINDOW,
        large,
        LARGE_WINDOW,
    )
    print(report)
    assert SMALL_WINDOW - 2 * CHUNK <= small * CHUNK <= SMALL_WINDOW + 2 * CHUNK, report
    assert LARGE_WINDOW - 2 * CHUNK <= large * CHUNK <= LARGE_WINDOW + 2 * CHUNK, report
