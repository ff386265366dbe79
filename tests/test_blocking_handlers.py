"""Blocking handlers: a server told which handlers block runs them in its
executor's threads, while every step on their calls is done by its hub.

Handlers run in greenlets of the server's hub unless marked: by
``blocking_handlers=`` (True, or service and method names), by
``grpc_green.blocking``, or by grpcio's ``experimental_thread_pool``. A
marked handler may block its thread (``time.sleep``, a ``threading`` wait)
without stalling the hub: other calls keep being served.

The second half runs tests of other modules against servers whose handlers
all run in an executor, with servicers that sleep with ``time.sleep``: the
unary suite's context tests (test_unary, test_server_behaviour), the
streaming suite (test_streaming: every RPC kind, metadata, status,
cancellation and deadlines seen by a handler blocked in a read, a write or
an is_active() loop) and grpcio's client (test_interop_grpcio, part 2).
"""

import threading
import time
from concurrent import futures

import grpc  # grpc_green (patched by conftest)
import pytest
import streaming_pb2
import streaming_pb2_grpc
import testing_pb2
import testing_pb2_grpc
from streaming_behaviour import StreamingServicer, generic_handler

# The suites run again below, against executor handlers (pytest collects
# what a test module holds under a test_ name, with this module's fixtures).
from test_interop_grpcio import (  # noqa: F401
    test_grpcio_client_concurrent_calls,
    test_grpcio_client_deadlines,
    test_grpcio_client_echo,
    test_grpcio_client_exception_and_unimplemented,
    test_grpcio_client_metadata,
    test_grpcio_client_status_and_details,
)
from test_leaks import check_no_growth
from test_server_behaviour import (  # noqa: F401
    test_add_callback_runs_when_the_rpc_ends,
    test_invalid_trailing_metadata_from_a_handler_ends_the_call,
    test_peer_format,
)
from test_streaming import (  # noqa: F401  (fixtures and tests)
    Gates,
    api,
    channel,
    releases,
    stub,
    test_bidi_echo,
    test_bidi_fails_after_responses,
    test_bidi_handler_exception,
    test_bidi_metadata,
    test_bidi_ping_pong,
    test_bidi_server_ends_early,
    test_cancel_before_any_message,
    test_cancel_then_next_raises_cancelled,
    test_client_cancel_ends_the_server_handler,
    test_client_stream,
    test_client_stream_fails_after_requests,
    test_client_stream_from_a_generator_and_of_zero_requests,
    test_client_stream_handler_exception,
    test_client_stream_with_call,
    test_deadline_mid_server_stream_after_messages,
    test_deadline_mid_stream,
    test_initial_metadata_arrives_before_the_first_message,
    test_many_concurrent_server_streams_interleave,
    test_request_iterator_raising_stream_stream_cancels_the_call,
    test_request_iterator_raising_stream_unary,
    test_server_stream,
    test_server_stream_exception_after_messages,
    test_server_stream_exception_before_first_message,
    test_server_stream_fails_after_messages,
    test_server_stream_large_messages,
    test_server_stream_metadata,
    test_server_stream_of_zero_messages,
    test_single_response_call_given_other_than_one_response,
    test_unary_request_method_given_no_request,
    test_unary_request_method_given_two_requests,
)
from test_unary import (  # noqa: F401
    test_abort_mid_handler_keeps_metadata,
    test_deadline_exceeded,
    test_details_round_trip_exactly,
    test_echo,
    test_future_cancel,
    test_handler_exception_is_unknown_and_server_keeps_serving,
    test_metadata_both_ways,
    test_status_code_and_details,
    test_time_remaining_reflects_client_timeout,
    test_time_remaining_without_deadline,
    test_unimplemented_method_in_servicer,
    test_with_call_carries_server_metadata,
)

pytestmark = pytest.mark.green_only

Echo = testing_pb2.EchoRequest
SERVICE = "grpc_green.testing.Blocking"
TESTS_THREAD = threading.get_ident()


def on_hub_thread(ident=None):
    """A thread that runs a server's hub: the tests' thread (servers made
    without a thread pool), or a server's own thread (servers given one)."""
    ident = threading.get_ident() if ident is None else ident
    if ident == TESTS_THREAD:
        return True
    return any(t.ident == ident and t.name == "grpc_green server" for t in threading.enumerate())


@pytest.fixture
def pool():
    executor = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="test-pool")
    yield executor
    executor.shutdown(wait=False)


class Probe:
    """Handlers that record the thread they ran in, and block on ``gate``
    (a threading.Event) when asked to."""

    def __init__(self):
        self.gate = threading.Event()
        self.threads = []
        self.names = []
        self.inside = 0
        self.most_inside = 0
        self._lock = threading.Lock()

    def _enter(self):
        with self._lock:
            self.threads.append(threading.get_ident())
            self.names.append(threading.current_thread().name)
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)

    def _leave(self):
        with self._lock:
            self.inside -= 1

    def sleep(self, request, context):
        self._enter()
        try:
            time.sleep(float(request or b"0.5"))
            return b"slept"
        finally:
            self._leave()

    def wait(self, request, context):
        self._enter()
        try:
            if not self.gate.wait(10):
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "gate never opened")
            return b"through"
        finally:
            self._leave()

    def where(self, request, context):
        self._enter()
        self._leave()
        return b"hub" if on_hub_thread() else b"thread"

    def handler(self, wrap=lambda fn: fn):
        """The methods, each ``wrap``-ped as a function of its own (marking
        a bound method would mark Probe's function, for every probe)."""

        def function_of(name):
            bound = getattr(self, name.lower())
            return lambda request, context: bound(request, context)

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_unary_rpc_method_handler(wrap(function_of(name)))
                for name in ("Sleep", "Wait", "Where")
            },
        )


def method(chan, name):
    return chan.unary_unary("/%s/%s" % (SERVICE, name))


# ------------------------------------------------------------ the rule


def test_ten_sleeping_handlers_run_side_by_side(green_server, make_channel, hub, pool):
    """grpcio's 0.5 s handler, ten calls at once: 0.5 s, not 5 s."""
    probe = Probe()
    server = green_server(handlers=[probe.handler()], thread_pool=pool, blocking_handlers=True)
    sleep = method(make_channel(server.target), "Sleep")
    started = time.monotonic()
    tasks = [hub.spawn(sleep, b"0.5", timeout=30) for _ in range(10)]
    assert [t.get() for t in tasks] == [b"slept"] * 10
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed
    assert not any(map(on_hub_thread, probe.threads))
    assert probe.most_inside > 1


def test_the_hub_serves_while_handlers_block(green_server, make_channel, hub, pool):
    """Handlers blocked on a threading.Event: a greenlet handler of the same
    server answers meanwhile, on the hub's thread."""
    probe = Probe()
    server = green_server(
        handlers=[probe.handler()], thread_pool=pool, blocking_handlers=["/%s/Wait" % SERVICE]
    )
    chan = make_channel(server.target)
    waiting = [hub.spawn(method(chan, "Wait"), b"", timeout=30) for _ in range(4)]
    hub.wait_until(lambda: probe.inside == 4, message="the handlers never all started")
    assert method(chan, "Where")(b"", timeout=5) == b"hub"
    assert not any(t.dead for t in waiting)
    probe.gate.set()
    assert [t.get() for t in waiting] == [b"through"] * 4


class MarkedServicer(testing_pb2_grpc.TestServiceServicer):
    @grpc.blocking
    def Echo(self, request, context):
        time.sleep(0.01)
        where = "hub" if on_hub_thread() else threading.current_thread().name
        return testing_pb2.EchoResponse(message=where)


def _pool_of_its_own(fn):
    fn.experimental_thread_pool = futures.ThreadPoolExecutor(1, thread_name_prefix="own-pool")
    return fn


@pytest.mark.parametrize(
    "marking",
    ["blocking_handlers=True", "service name", "method name", "grpc_green.blocking", "own pool"],
)
def test_ways_to_mark_a_handler(marking, green_server, make_channel, pool):
    probe = Probe()
    kwargs = {"thread_pool": pool}
    wrap = lambda fn: fn  # noqa: E731
    if marking == "blocking_handlers=True":
        kwargs["blocking_handlers"] = True
    elif marking == "service name":
        kwargs["blocking_handlers"] = {SERVICE}
    elif marking == "method name":
        kwargs["blocking_handlers"] = ("%s/Where" % SERVICE,)  # the leading slash is optional
    elif marking == "grpc_green.blocking":
        wrap = grpc.blocking
    else:
        wrap = _pool_of_its_own
    server = green_server(handlers=[probe.handler(wrap)], **kwargs)
    assert method(make_channel(server.target), "Where")(b"", timeout=10) == b"thread"
    assert probe.names[0].startswith("own-pool" if marking == "own pool" else "test-pool")


def test_a_marked_servicer_method(green_server, make_channel, pool):
    server = green_server(MarkedServicer(), thread_pool=pool)
    svc_stub = testing_pb2_grpc.TestServiceStub(make_channel(server.target))
    assert svc_stub.Echo(Echo(), timeout=10).message.startswith("test-pool")


def test_unmarked_handlers_stay_on_the_hub(green_server, make_channel, pool):
    """grpcio code passes an executor to every server: unmarked handlers
    still run in greenlets on the hub's thread."""
    probe = Probe()
    server = green_server(
        handlers=[probe.handler()], thread_pool=pool, blocking_handlers=["/other.Service/Where"]
    )
    chan = make_channel(server.target)
    assert [method(chan, "Where")(b"", timeout=5) for _ in range(3)] == [b"hub"] * 3
    assert probe.threads and all(map(on_hub_thread, probe.threads))


def test_without_an_executor_the_server_makes_one(green_server, make_channel, hub):
    probe = Probe()
    server = green_server(handlers=[probe.handler()], blocking_handlers=True)
    assert method(make_channel(server.target), "Where")(b"", timeout=10) == b"thread"
    assert probe.names[0].startswith("grpc_green-handler")
    pool = server.server._own_pool
    server.server.stop(None).wait(5)
    assert pool._shutdown


def test_bad_arguments(support):
    with pytest.raises(TypeError):
        grpc.server(object())
    with pytest.raises(TypeError):
        grpc.server(blocking_handlers=[3])
    with pytest.raises(TypeError):
        grpc.blocking(len)  # a builtin cannot be marked


def test_shut_down_executor_answers_unavailable(green_server, make_channel, support):
    executor = futures.ThreadPoolExecutor(1)
    executor.shutdown()
    server = green_server(
        handlers=[Probe().handler()], thread_pool=executor, blocking_handlers=True
    )
    error = support.rpc_error(method(make_channel(server.target), "Where"), b"", timeout=5)
    assert error.code() is grpc.StatusCode.UNAVAILABLE


def test_maximum_concurrent_rpcs_counts_executor_calls(green_server, make_channel, hub, support):
    probe = Probe()
    server = green_server(
        handlers=[probe.handler()],
        thread_pool=futures.ThreadPoolExecutor(4),
        blocking_handlers=True,
        maximum_concurrent_rpcs=2,
    )
    chan = make_channel(server.target)
    waiting = [hub.spawn(method(chan, "Wait"), b"", timeout=30) for _ in range(2)]
    hub.wait_until(lambda: probe.inside == 2)
    error = support.rpc_error(method(chan, "Where"), b"", timeout=5)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    probe.gate.set()
    assert [t.get() for t in waiting] == [b"through"] * 2
    hub.wait_until(lambda: probe.inside == 0)
    assert method(chan, "Where")(b"", timeout=5) == b"thread"


def test_a_saturated_executor_queues_calls(green_server, make_channel, hub):
    probe = Probe()
    server = green_server(
        handlers=[probe.handler()],
        thread_pool=futures.ThreadPoolExecutor(2),
        blocking_handlers=True,
    )
    sleep = method(make_channel(server.target), "Sleep")
    tasks = [hub.spawn(sleep, b"0.1", timeout=30) for _ in range(8)]
    assert [t.get() for t in tasks] == [b"slept"] * 8
    assert probe.most_inside == 2


# -------------------------------------------------- context in a thread


def _context_handlers(log):
    def cancelled(request, context):
        log.append(("active at start", context.is_active()))
        context.add_callback(lambda: log.append("callback"))
        deadline = time.monotonic() + 10
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.005)
        log.append(("active at end", context.is_active()))
        return b""

    def metadata_then_abort(request, context):
        context.send_initial_metadata((("initial", "sent"),))
        context.set_trailing_metadata((("trailing", "set"),))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "thread abort")

    def cancel(request, context):
        context.cancel()
        log.append(("after cancel", context.is_active()))
        return b"never delivered"

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Cancelled": grpc.unary_unary_rpc_method_handler(cancelled),
            "Abort": grpc.unary_unary_rpc_method_handler(metadata_then_abort),
            "Cancel": grpc.unary_unary_rpc_method_handler(cancel),
        },
    )


def test_client_cancel_turns_is_active_false_in_the_thread(green_server, make_channel, hub, pool):
    log = []
    server = green_server(
        handlers=[_context_handlers(log)], thread_pool=pool, blocking_handlers=True
    )
    future = method(make_channel(server.target), "Cancelled").future(b"", timeout=30)
    hub.wait_until(lambda: log, message="the handler never started")
    assert future.cancel()
    hub.wait_until(lambda: ("active at end", False) in log and "callback" in log)
    assert log[0] == ("active at start", True)


def test_abort_and_metadata_from_a_thread(green_server, make_channel, pool, support):
    server = green_server(
        handlers=[_context_handlers([])], thread_pool=pool, blocking_handlers=True
    )
    call = method(make_channel(server.target), "Abort")
    error = support.rpc_error(call, b"", timeout=10)
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "thread abort"
    assert tuple(error.initial_metadata()) == (("initial", "sent"),)
    assert tuple(error.trailing_metadata()) == (("trailing", "set"),)


def test_context_cancel_from_a_thread(green_server, make_channel, hub, pool, support):
    log = []
    server = green_server(
        handlers=[_context_handlers(log)], thread_pool=pool, blocking_handlers=True
    )
    error = support.rpc_error(method(make_channel(server.target), "Cancel"), b"", timeout=10)
    assert error.code() is grpc.StatusCode.CANCELLED
    hub.wait_until(lambda: log)
    assert log == [("after cancel", False)]


# ----------------------------------------------------------- flow control


def test_a_thread_streaming_to_a_slow_client_is_held_back(green_server, make_channel, hub, pool):
    """A handler thread yields 64 KiB messages as fast as it can; the client
    reads 100, then stops reading: the thread stays parked on the HTTP/2
    window, within a few MiB of what the client has read."""
    produced = []
    size = 64 * 1024

    def endless(request, context):
        produced.append(threading.get_ident())
        index = 0
        while True:
            yield b"x" * size
            index += 1
            produced[0] = index

    server = green_server(
        handlers=[
            grpc.method_handlers_generic_handler(
                SERVICE, {"Endless": grpc.unary_stream_rpc_method_handler(endless)}
            )
        ],
        thread_pool=pool,
        blocking_handlers=True,
    )
    chan = make_channel(server.target, options=[("grpc.http2.lookahead_bytes", 256 * 1024)])
    call = chan.unary_stream("/%s/Endless" % SERVICE)(b"", timeout=60)
    for _ in range(100):
        assert len(next(call)) == size
    hub.sleep(0.5)  # the thread would produce gigabytes meanwhile
    ahead = produced[0] - 100
    # What the windows (the stream's 256 KiB, the connection's) and the
    # socket buffers hold: a few MiB at most.
    assert ahead * size < 16 * 2**20, ahead
    call.cancel()


# ------------------------------------------------------------- no growth


def test_no_growth_in_threads_or_memory(green_server, make_channel, hub):
    probe = Probe()
    server = green_server(
        handlers=[probe.handler()],
        thread_pool=futures.ThreadPoolExecutor(4, thread_name_prefix="leak-pool"),
        blocking_handlers=True,
    )
    where = method(make_channel(server.target), "Where")
    pool_threads = []

    def run(n):
        for start in range(0, n, 20):
            tasks = [hub.spawn(where, b"", timeout=30) for _ in range(min(20, n - start))]
            assert [t.get() for t in tasks] == [b"thread"] * len(tasks)
        probe.threads.clear()
        probe.names.clear()
        pool_threads.append(sum(t.name.startswith("leak-pool") for t in threading.enumerate()))

    check_no_growth(run, warmup=500, count=3000)
    assert pool_threads == [4, 4], pool_threads


# --------------------------------------------- other suites, in threads


@pytest.fixture
def echo_server(green_server, support, pool):
    """The conftest's echo server, its handlers in threads that sleep."""
    return green_server(
        support.EchoServicer(sleep=time.sleep),
        handlers=[support.raw_handlers()],
        thread_pool=pool,
        blocking_handlers=True,
    )


class ThreadedStreamingServicer(StreamingServicer):
    """test_streaming's servicer, noting the threads its methods run in."""

    def __init__(self):
        super().__init__(grpc, time.sleep)
        self.threads = set()

    def ServerStream(self, request, context):
        self.threads.add(threading.get_ident())
        return super().ServerStream(request, context)

    def ClientStream(self, request_iterator, context):
        self.threads.add(threading.get_ident())
        return super().ClientStream(request_iterator, context)

    def Bidi(self, request_iterator, context):
        self.threads.add(threading.get_ident())
        return super().Bidi(request_iterator, context)


@pytest.fixture
def streaming(green_server, hub, pool):
    """test_streaming's server, its handlers in threads that sleep."""
    servicer = ThreadedStreamingServicer()
    gates = Gates(hub)
    handle = green_server(
        handlers=[generic_handler(grpc, servicer), gates.handler()],
        register=lambda server: streaming_pb2_grpc.add_StreamingServicer_to_server(
            servicer, server
        ),
        thread_pool=pool,
        blocking_handlers=True,
    )
    handle.servicer = servicer
    handle.gates = gates
    yield handle
    gates.open_all()
    assert not any(map(on_hub_thread, servicer.threads))


def test_the_streaming_servicer_runs_in_threads(streaming, make_channel):
    svc_stub = streaming_pb2_grpc.StreamingStub(make_channel(streaming.target))
    Req = streaming_pb2.StreamRequest
    assert len(list(svc_stub.ServerStream(Req(response_count=2)))) == 2
    assert svc_stub.ClientStream(iter([Req(), Req()])).count == 2
    assert len(list(svc_stub.Bidi(iter([Req(), Req()])))) == 2
    assert len(streaming.servicer.threads) >= 1
    assert not any(map(on_hub_thread, streaming.servicer.threads))
