"""Request iterators that block the thread, as grpcio code writes them: on
``queue.Queue`` fed by the thread that reads the responses, on a producer
thread, on ``time.sleep``. grpcio consumes each in a thread of its own; so
must grpc_green, without stalling other calls, the call's own responses or
its deadline. And a hub kept busy by one call (messages already buffered,
the window open) still gives way to timers and other calls.

Each test runs against a grpcio server (tests/peers/stream_peer.py in a
subprocess) and a server of the implementation under test running in a
thread of its own (on that thread's hub), and passes on grpcio too
(GRPC_GREEN_TEST_IMPL=grpcio). Timing bounds are generous (a busy 2-core
machine): a stalled hub shows up as a timeout or a lag many times the bound.
"""

import os
import queue
import sys
import threading
import time

import grpc
import pytest
import streaming_pb2
import streaming_pb2_grpc
from conftest import HUB, USING_GREEN, _new_server
from streaming_behaviour import StreamingServicer
from test_leaks import check_no_growth

Request = streaming_pb2.StreamRequest
STREAM_PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "stream_peer.py")
CLIENT_STREAM = "/grpc_green.streaming.Streaming/ClientStream"


class ServerThread:
    """The implementation under test serving Streaming in a thread of its own."""

    def __init__(self):
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    def _run(self):
        sleep = grpc.hub.sleep if USING_GREEN else time.sleep
        server = _new_server()
        streaming_pb2_grpc.add_StreamingServicer_to_server(StreamingServicer(grpc, sleep), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self.ready.set()
        while not self.stopping.is_set():
            sleep(0.02)
        server.stop(None)

    def stop(self):
        self.stopping.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _grpcio_peer_env():
    env = dict(os.environ)
    env.pop("GRPC_GREEN_TEST_IMPL", None)
    env.pop("LD_PRELOAD", None)  # kept for grpc_green under `make asan`
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module", params=["grpcio-server", "green-server"])
def target(request):
    if request.param == "grpcio-server":
        process = HUB.start_process(
            [sys.executable, STREAM_PEER, "--impl", "grpcio", "serve"], env=_grpcio_peer_env()
        )
        port = int(process.wait_for_output(r"^PORT (\d+)$", timeout=30).group(1))
        yield "127.0.0.1:%d" % port
        process.close()
    else:
        server = ServerThread()
        yield "127.0.0.1:%d" % server.port
        server.stop()


@pytest.fixture
def target_kind(target, request):
    return request.node.callspec.params["target"]


@pytest.fixture
def stub(target, make_channel):
    return streaming_pb2_grpc.StreamingStub(make_channel(target))


class Ticker:
    """A greenlet (a thread on grpcio) that sleeps 10 ms at a time on the
    hub and records how late each wake-up was."""

    PERIOD = 0.01

    def __init__(self):
        self.worst = 0.0
        self.ticks = 0
        self._stop = False
        self._task = HUB.spawn(self._run)
        HUB.sleep(0.05)  # running

    def _run(self):
        while not self._stop:
            start = time.monotonic()
            HUB.sleep(self.PERIOD)
            self.worst = max(self.worst, time.monotonic() - start - self.PERIOD)
            self.ticks += 1

    def stop(self):
        self._stop = True
        self._task.join(10)
        print("ticker: %d ticks, the latest %.1f ms late" % (self.ticks, self.worst * 1e3))
        return self.worst


def busy(seconds):
    """Holds the thread, as per-message work in Python does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# ------------------------------------------------------------- blocking


def test_queue_ping_pong(stub):
    """grpcio's usual bidi ping-pong: the iterator takes its next request from
    a queue.Queue the caller fills after reading each response."""
    requests = queue.Queue()

    def request_iterator():
        while True:
            request = requests.get(timeout=10)
            if request is None:
                return
            yield request

    requests.put(Request(message="0"))
    call = stub.Bidi(request_iterator(), timeout=30)
    answers = []
    for response in call:
        answers.append(response.message)
        n = len(answers)
        requests.put(Request(message=str(n)) if n < 100 else None)
    assert answers == [str(i) for i in range(100)]
    assert call.code() == grpc.StatusCode.OK


def test_microphone_thread(stub):
    """A producer thread feeds a queue.Queue that a stream-unary call's
    iterator reads (iter(queue.get, None)); while the iterator waits for the
    next chunk, the hub's ticker keeps ticking."""
    chunks = queue.Queue()

    def microphone():
        for i in range(50):
            time.sleep(0.4 if i in (20, 40) else 0.002)  # the speaker pauses
            chunks.put(Request(payload=b"%03d" % i, message="chunk %d" % i))
        chunks.put(None)

    ticker = Ticker()
    producer = threading.Thread(target=microphone, daemon=True)
    producer.start()
    summary = stub.ClientStream(iter(chunks.get, None), timeout=30)
    producer.join(10)
    worst = ticker.stop()
    assert worst < 0.2, "the ticker was %.0f ms late" % (worst * 1e3)
    assert summary.count == 50
    assert summary.total_bytes == 150
    assert list(summary.messages) == ["chunk %d" % i for i in range(50)]


def test_sleeping_iterator_meets_its_deadline(stub):
    pulled = [0]

    def request_iterator():
        while True:
            time.sleep(0.05)
            pulled[0] += 1
            yield Request(message="tick")

    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        stub.ClientStream(request_iterator(), timeout=0.3)
    elapsed = time.monotonic() - start
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 5, elapsed
    # The call has ended: the iterator is pulled once more at most (the
    # next() under way), then left alone.
    at_end = pulled[0]
    HUB.sleep(0.3)
    assert pulled[0] <= at_end + 1


def test_other_calls_complete_while_an_iterator_blocks(stub):
    release = threading.Event()

    def request_iterator():
        yield Request(message="first")
        release.wait(30)  # blocks the thread that runs it
        yield Request(message="second")

    blocked = stub.Bidi(request_iterator(), timeout=30)
    try:
        # The blocked call's own response arrives ...
        assert next(blocked).message == "first"
        # ... and other calls on this thread's hub run to the end meanwhile.
        for i in range(10):
            summary = stub.ClientStream(iter([Request(message="m%d" % i)] * 3), timeout=10)
            assert summary.count == 3
            streamed = list(stub.ServerStream(Request(response_count=5), timeout=10))
            assert [r.index for r in streamed] == list(range(5))
    finally:
        release.set()
    assert [r.message for r in blocked] == ["second"]
    assert blocked.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("kind", ["stream_unary", "stream_stream"])
def test_raising_iterator_ends_the_call_unknown(stub, kind):
    def request_iterator():
        yield Request(message="one")
        time.sleep(0.01)
        yield Request(message="two")
        raise ValueError("the microphone broke")

    with pytest.raises(grpc.RpcError) as raised:
        if kind == "stream_unary":
            stub.ClientStream(request_iterator(), timeout=10)
        else:
            for _ in stub.Bidi(request_iterator(), timeout=10):
                pass
    assert raised.value.code() == grpc.StatusCode.UNKNOWN
    assert raised.value.details() == "Exception iterating requests!"


@pytest.mark.parametrize("pace", ["blocking", "fast"])
def test_cancel_stops_consuming(stub, pace):
    """After cancel() the iterator is not pulled again, beyond a next()
    already under way; a fast endless iterator is held back meanwhile."""
    pulled = [0]

    def request_iterator():
        while True:
            if pace == "blocking":
                time.sleep(0.01)
            pulled[0] += 1
            yield Request(message=str(pulled[0]))

    call = stub.Bidi(request_iterator(), timeout=30)
    for _ in range(3):
        next(call)
    assert call.cancel()
    at_cancel = pulled[0]
    HUB.sleep(0.3)
    assert pulled[0] <= at_cancel + 1
    assert call.code() == grpc.StatusCode.CANCELLED


# ------------------------------------------------------------- fairness


def test_ticker_runs_while_a_list_streams(stub, target_kind):
    """200k small messages from a list (20k to grpcio's server, which reads
    some 20k a second): the hub's 10 ms ticker keeps ticking."""
    n = 20_000 if target_kind == "grpcio-server" else 200_000
    ticker = Ticker()
    summary = stub.ClientStream(iter([Request(payload=b"x" * 8)] * n), timeout=120)
    worst = ticker.stop()
    assert summary.count == n
    assert worst < 0.2, "the ticker was %.0f ms late" % (worst * 1e3)


def test_ticker_runs_while_a_writer_never_parks(target, make_channel):
    """Messages of 5 bytes on the wire, each costing 20 us to serialize:
    without giving way the writer would run a second before parking."""
    multicallable = make_channel(target).stream_unary(
        CLIENT_STREAM,
        request_serializer=lambda request: busy(20e-6) or request.SerializeToString(),
        response_deserializer=streaming_pb2.Summary.FromString,
    )
    ticker = Ticker()
    summary = multicallable(iter([Request()] * 40_000), timeout=120)
    worst = ticker.stop()
    assert summary.count == 40_000
    assert worst < 0.2, "the ticker was %.0f ms late" % (worst * 1e3)


def test_ticker_runs_while_a_reader_drains_a_backlog(stub):
    """20k responses already buffered, 20 us of work for each: the reader
    never parks, and still lets the ticker run."""
    call = stub.ServerStream(Request(response_count=20_000), timeout=60)
    next(call)
    HUB.sleep(1.5)  # the rest arrives meanwhile (grpcio's server: ~30k/s)
    ticker = Ticker()
    received = 1
    for _ in call:
        busy(20e-6)
        received += 1
    worst = ticker.stop()
    assert received == 20_000
    assert worst < 0.2, "the ticker was %.0f ms late" % (worst * 1e3)


# ---------------------------------------------------------------- growth


def test_no_thread_or_memory_growth(stub):
    def calls(n):
        for i in range(n):

            def request_iterator():
                yield Request(message="a")
                time.sleep(0.001)
                yield Request(message="b")

            assert stub.ClientStream(request_iterator(), timeout=10).count == 2
            if i % 10 == 0:  # a few at once too
                tasks = [
                    HUB.spawn(stub.ClientStream, (Request() for _ in range(3)), timeout=10)
                    for _ in range(8)
                ]
                assert all(t.get(10).count == 3 for t in tasks)

    calls(50)
    threads = threading.active_count()
    check_no_growth(calls, 50, 200)
    assert threading.active_count() <= threads + 2
