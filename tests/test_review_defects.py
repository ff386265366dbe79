"""Regression tests for defects found by a code review.

One test (or a small parametrized group) per defect. Each one fails on the
code the review was made on, for the reason given in its docstring, and
passes against real grpcio (GRPC_GREEN_TEST_IMPL=grpcio) wherever grpcio has
the behaviour; the others are marked green_only.

Scenarios that can hang the calling thread, crash the process or need a
fresh interpreter (fd counting, use-after-free, a hub that never wakes) run
a small script in a subprocess, bounded by a timeout: a hang fails the test
after at most ~10 s instead of blocking the suite.
"""

import gc
import json
import logging
import os
import socket
import sys
import textwrap
import threading
import time
import weakref

import grpc  # grpc_green (patched by conftest) or grpcio in grpcio mode
import pytest
from conftest import GEN_DIR, HUB, ROOT

SERVICE = "review.Defects"


def _method(name):
    return "/%s/%s" % (SERVICE, name)


def _handlers(**methods):
    """A generic handler for SERVICE; values are method handlers."""
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def _unary(fn):
    return grpc.unary_unary_rpc_method_handler(fn)


def _echo(request, context):
    return request


# ---------------------------------------------------------- subprocesses

# Starts every script: the implementation under test is argv[1].
_PRELUDE = textwrap.dedent(
    """
    import gc, json, os, socket, struct, sys, threading, time
    IMPL = sys.argv[1]
    if IMPL == "grpc_green":
        import grpc_green as grpc
        sleep = grpc.hub.sleep
    else:
        import grpc
        sleep = time.sleep

    def new_server(**kwargs):
        if IMPL == "grpc_green":
            return grpc.server(None, **kwargs)
        from concurrent import futures
        return grpc.server(futures.ThreadPoolExecutor(8), **kwargs)

    def emit(**result):
        print("RESULT " + json.dumps(result), flush=True)
    """
)

# A raw HTTP/2 server that sends whatever header block a plan gives it:
# frames and HPACK are built by hand (literal fields, no Huffman, no
# indexing), so any byte can go into a header name or value. It runs in a
# thread of the script, so the client under test may block its own thread.
_RAW_H2_SERVER = textwrap.dedent(
    r"""
    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def _hpack_int(value, prefix_bits):
        limit = (1 << prefix_bits) - 1
        if value < limit:
            return bytes([value])
        out = [limit]
        value -= limit
        while value >= 128:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
        return bytes(out)

    def hpack(headers):
        block = b""
        for name, value in headers:
            block += b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value
        return block

    def h2_frame(ftype, flags, stream, payload=b""):
        return (len(payload).to_bytes(3, "big") + bytes([ftype, flags])
                + stream.to_bytes(4, "big") + payload)

    def grpc_message(payload):
        return b"\x00" + struct.pack(">I", len(payload)) + payload

    END_STREAM, END_HEADERS = 0x1, 0x4
    RESPONSE_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]

    def _recv_exact(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _serve_connection(conn, plan):
        try:
            _recv_exact(conn, len(PREFACE))
            conn.sendall(h2_frame(4, 0, 0))  # SETTINGS
            while True:
                head = _recv_exact(conn, 9)
                length = int.from_bytes(head[:3], "big")
                ftype, flags = head[3], head[4]
                stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                payload = _recv_exact(conn, length)
                if ftype == 4 and not flags & 1:    # SETTINGS: ack
                    conn.sendall(h2_frame(4, 1, 0))
                elif ftype == 6 and not flags & 1:  # PING: ack
                    conn.sendall(h2_frame(6, 1, 0, payload))
                elif ftype == 1:                    # HEADERS: answer per plan
                    for f in plan(stream):
                        conn.sendall(f)
        except (EOFError, OSError):
            pass
        # The connection stays open and silent until the client closes it.

    def start_raw_server(plan):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)

        def accept():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=_serve_connection, args=(conn, plan),
                                 daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return listener, listener.getsockname()[1]
    """
)


def _script_env(hub_kind=None, grpcio_only=False):
    env = dict(os.environ)
    env.pop("GRPC_GREEN_TEST_IMPL", None)
    if grpcio_only:
        env.pop("LD_PRELOAD", None)  # the sanitizer runtime is for grpc_green's extension
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(GEN_DIR), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    if hub_kind is not None:
        env["GRPC_GREEN_HUB"] = hub_kind
    return env


def _run_script(
    hub, tmp_path, body, *args, impl, timeout=30.0, hub_kind=None, raw_h2=False, name="script.py"
):
    """Runs _PRELUDE (+ the raw HTTP/2 server) + body in a subprocess, waiting
    cooperatively (this thread's hub keeps serving meanwhile).

    Returns (exit code, or None if it was killed after `timeout`; the dict
    it emitted last, or None; its stdout; its stderr)."""
    source = _PRELUDE + (_RAW_H2_SERVER if raw_h2 else "") + textwrap.dedent(body)
    path = tmp_path / name
    path.write_text(source)
    env = _script_env(hub_kind, grpcio_only=impl == "grpcio")
    proc = hub.start_process([sys.executable, path, impl, *args], env=env)
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            hub.sleep(0.02)
        killed = proc.poll() is None
        proc.kill()
        result = None
        for line in proc.stdout().splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
        done = None if killed else proc.popen.returncode
        return done, result, proc.stdout(), proc.stderr()
    finally:
        proc.close()


def _impl(support):
    return "grpc_green" if support.using_green else "grpcio"


def _session_hub_kind(support):
    return grpc.hub.kind() if support.using_green else None


# --------------------------------------------------------------- defect 1


def test_dropped_server_is_collected_and_closes_its_port(support, hub):
    """Defect 1: _Server holds _core.Server, which holds the bound
    _Server._dispatch; _core.Server has no GC support, so the cycle is never
    collected: a started server dropped without stop() keeps its listening
    socket for the life of the process. grpcio collects it (its __del__
    tells the serving thread to shut down) and its port refuses connections
    within about a second."""
    server = support.new_server(grpcio_workers=2, options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handlers(Echo=_unary(_echo)),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ref = weakref.ref(server)
    del server
    try:
        for _ in range(3):
            gc.collect()
        assert ref() is None, "the dropped server was not collected (reference cycle kept alive)"

        def refused():
            with socket.socket() as s:
                s.settimeout(2)
                try:
                    s.connect(("127.0.0.1", port))
                except ConnectionRefusedError:
                    return True
            return False

        hub.wait_until(
            refused,
            timeout=10,
            message="port %d still accepts connections 10 s after the server was dropped" % port,
        )
    finally:
        leaked = ref()
        if leaked is not None:  # do not leave a listening server to the next tests
            leaked.stop(None)


# --------------------------------------------------------------- defect 2

_THREAD_HUBS_SCRIPT = """
server = new_server()
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "review.Defects", {"Echo": grpc.unary_unary_rpc_method_handler(lambda r, c: r)}),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
target = "127.0.0.1:%d" % port

def open_fds():
    return len(os.listdir("/proc/self/fd"))

def work(results):
    try:
        with grpc.insecure_channel(target) as channel:
            results.append(channel.unary_unary("/review.Defects/Echo")(b"x", timeout=10) == b"x")
    except Exception as exc:
        results.append(repr(exc))

def batch(n):
    # The server runs on this thread's hub: wait for the threads cooperatively.
    results = []
    threads = [threading.Thread(target=work, args=(results,)) for _ in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        sleep(0.01)
    for t in threads:
        t.join(5)
    for _ in range(3):
        gc.collect()
    sleep(0.2)
    return results

batch(2)  # warm-up: whatever a first channel sets up once per process
before = open_fds()
results = batch(20)
after = open_fds()
emit(before=before, after=after, results=results)
server.stop(None)
"""


def test_hub_of_an_ended_thread_is_freed(support, hub, tmp_path):
    """Defect 2: a thread's hub (and its libev loop, an epoll fd) is never
    freed when the thread ends: 20 short-lived threads that each open a
    channel and make one call leave 20 more fds open. grpcio leaves none.
    The script forces the native hub: gevent's per-thread hubs have a loop
    of their own that gevent does not free either."""
    done, result, out, err = _run_script(
        hub, tmp_path, _THREAD_HUBS_SCRIPT, impl=_impl(support), hub_kind="native", timeout=60
    )
    assert done == 0 and result, "script failed (exit %s)\n%s\n%s" % (done, out, err)
    assert result["results"] == [True] * 20, result
    grown = result["after"] - result["before"]
    assert grown <= 2, (
        "%d more open fds after 20 threads that each used a channel ended "
        "(before %d, after %d)" % (grown, result["before"], result["after"])
    )


# --------------------------------------------------------------- defect 3


@pytest.mark.parametrize("address", ["127.0.0.1:70000", "127.0.0.1:99999999999"])
def test_add_insecure_port_out_of_range(address, support):
    """Defect 3: add_insecure_port("127.0.0.1:70000") returns 70000 while the
    socket listens on 70000 & 0xffff = 4464 (htons truncates); the returned
    number is not a port at all. grpcio 1.85.1 raises RuntimeError for
    "127.0.0.1:99999999999", and for "127.0.0.1:70000" returns 4464 and
    listens there (it wraps the port too, but what it returns is where it
    listens). Either raising or returning the port actually bound passes."""
    server = support.new_server(grpcio_workers=2)
    server.add_generic_rpc_handlers((_handlers(Echo=_unary(_echo)),))
    try:
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            return  # refused: fine
        assert isinstance(port, int) and 0 < port < 65536, (
            "add_insecure_port(%r) returned %r, which is not a TCP port" % (address, port)
        )
        server.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the returned port is the one that listens
    finally:
        server.stop(None)


# --------------------------------------------------------------- defect 4


def _abort_with_int(request, context):
    context.abort(3, "aborted with an int")


def _set_code_int_and_return(request, context):
    context.set_code(3)
    context.set_details("set_code with an int")
    return b"response"


def _set_code_int_and_stream(request, context):
    context.set_code(5)
    yield b"one"


@pytest.mark.parametrize(
    "method, handler, details",
    [
        ("AbortInt", _unary(_abort_with_int), "aborted with an int"),
        ("SetCodeInt", _unary(_set_code_int_and_return), "set_code with an int"),
        ("SetCodeIntStream", grpc.unary_stream_rpc_method_handler(_set_code_int_and_stream), ""),
    ],
    ids=["abort", "set_code-unary", "set_code-stream"],
)
def test_int_status_code_from_handler(method, handler, details, green_server, make_channel):
    """Defect 4: context.abort(3, ...) or context.set_code(3) with a plain int
    makes _Context._final read `self._code.value[0]`: AttributeError in the
    handler greenlet, no status is ever sent and the RPC hangs (here until
    its 5 s deadline: DEADLINE_EXCEEDED). grpcio maps any code that is not a
    grpc.StatusCode to UNKNOWN and keeps the details."""
    server = green_server(handlers=[_handlers(**{method: handler})])
    channel = make_channel(server.target)
    with pytest.raises(grpc.RpcError) as info:
        if method.endswith("Stream"):
            list(channel.unary_stream(_method(method))(b"x", timeout=5))
        else:
            channel.unary_unary(_method(method))(b"x", timeout=5)
    assert info.value.code() is grpc.StatusCode.UNKNOWN, (info.value.code(), info.value.details())
    assert info.value.details() == details


# --------------------------------------------------------------- defect 5

_GRPCIO_CLIENT_PATHS = """
with grpc.insecure_channel(sys.argv[2]) as channel:
    outcomes = {}
    for path in sys.argv[3:]:
        try:
            channel.unary_unary(path)(b"x", timeout=10)
            outcomes[path] = ["OK", ""]
        except grpc.RpcError as error:
            outcomes[path] = [error.code().name, error.details()]
emit(outcomes=outcomes)
"""

_PATHS_WITHOUT_SLASH = [SERVICE + "/Echo", SERVICE + "/NoSuchMethod"]


@pytest.mark.parametrize("client", ["client-under-test", "grpcio-client"])
def test_method_path_without_leading_slash(
    client, green_server, make_channel, hub, support, tmp_path
):
    """Defect 5: a request whose :path lacks its leading "/" ("Svc/M", known
    or not) is reset by nghttp2's HTTP messaging checks on the grpc_green
    server (RST_STREAM PROTOCOL_ERROR, before any callback of ours runs):
    the client sees INTERNAL "Received RST_STREAM with error code 1"
    (grpcio: "Stream removed (RST_STREAM ...)"). A grpcio server answers
    UNIMPLEMENTED "Method not found!"."""
    server = green_server(handlers=[_handlers(Echo=_unary(_echo))])
    if client == "client-under-test":
        channel = make_channel(server.target)
        outcomes = {}
        for path in _PATHS_WITHOUT_SLASH:
            error = support.rpc_error(channel.unary_unary(path), b"x", timeout=10)
            outcomes[path] = [error.code().name, error.details()]
    else:
        done, result, out, err = _run_script(
            hub, tmp_path, _GRPCIO_CLIENT_PATHS, server.target, *_PATHS_WITHOUT_SLASH, impl="grpcio"
        )
        assert done == 0 and result, "grpcio client failed (exit %s)\n%s\n%s" % (done, out, err)
        outcomes = result["outcomes"]
    assert outcomes == {
        path: ["UNIMPLEMENTED", "Method not found!"] for path in _PATHS_WITHOUT_SLASH
    }


# --------------------------------------------------------------- defect 6


def _user_agent(request, context):
    return dict(context.invocation_metadata()).get("user-agent", "").encode()


@pytest.mark.parametrize("primary_first", [True, False], ids=["primary-first", "secondary-first"])
def test_primary_and_secondary_user_agent(primary_first, green_server, make_channel):
    """Defect 6: with both grpc.primary_user_agent and
    grpc.secondary_user_agent set, the option given last replaces the other.
    grpcio sends "<primary> grpc-python/1.85.1 grpc-c/58.0.0 (linux; chttp2)
    <secondary>" whatever the order of the options."""
    server = green_server(handlers=[_handlers(UserAgent=_unary(_user_agent))])
    options = [
        ("grpc.primary_user_agent", "primary-agent/1"),
        ("grpc.secondary_user_agent", "secondary-agent/2"),
    ]
    if not primary_first:
        options.reverse()
    channel = make_channel(server.target, options=options)
    user_agent = channel.unary_unary(_method("UserAgent"))(b"", timeout=10).decode()
    assert user_agent.startswith("primary-agent/1 "), user_agent
    assert user_agent.endswith(" secondary-agent/2"), user_agent
    library_part = user_agent[len("primary-agent/1 ") : -len(" secondary-agent/2")]
    assert library_part.strip(), user_agent  # the library's own part sits in between


# --------------------------------------------------------------- defect 7


def _reply_of_size(size):
    return lambda request, context: b"y" * size


def _stream_small_large_small(request, context):
    yield b"a" * 10
    yield b"b" * 2000
    yield b"c"


def test_server_max_send_message_length(green_server, make_channel):
    """Defect 7: the server ignores grpc.max_send_message_length: a 2,000-byte
    reply goes out under a 1,000-byte limit. grpcio ends the call
    RESOURCE_EXHAUSTED with the details "SERVER: Sent message larger than
    max (2000 vs. 1000)" (unary; a stream ends the same way at the message
    that is too large, after those before it)."""
    server = green_server(
        handlers=[
            _handlers(
                Big=_unary(_reply_of_size(2000)),
                AtLimit=_unary(_reply_of_size(1000)),
                Stream=grpc.unary_stream_rpc_method_handler(_stream_small_large_small),
            )
        ],
        options=[("grpc.max_send_message_length", 1000)],
    )
    channel = make_channel(server.target)
    assert len(channel.unary_unary(_method("AtLimit"))(b"", timeout=10)) == 1000

    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(_method("Big"))(b"", timeout=10)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert "Sent message larger than max (2000 vs. 1000)" in info.value.details()

    received = []
    with pytest.raises(grpc.RpcError) as info:
        for message in channel.unary_stream(_method("Stream"))(b"", timeout=10):
            received.append(message)
    assert received == [b"a" * 10]
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert "Sent message larger than max (2000 vs. 1000)" in info.value.details()


# --------------------------------------------------------------- defect 8

_INVALID_RESPONSE_SCRIPT = """
kind = sys.argv[2]
where, what = kind.split("-")
bad = {"upper": (b"X-Upper", b"v"), "crlf": (b"x-bad", b"a\\r\\nb"),
       "nul": (b"x-bad", b"a\\x00b")}[what]

def plan(stream):
    if where == "headers":
        return [h2_frame(1, END_HEADERS, stream, hpack(RESPONSE_HEADERS + [bad])),
                h2_frame(0, 0, stream, grpc_message(b"hi")),
                h2_frame(1, END_HEADERS | END_STREAM, stream, hpack([(b"grpc-status", b"0")]))]
    return [h2_frame(1, END_HEADERS, stream, hpack(RESPONSE_HEADERS)),
            h2_frame(0, 0, stream, grpc_message(b"hi")),
            h2_frame(1, END_HEADERS | END_STREAM, stream,
                     hpack([(b"grpc-status", b"0"), bad]))]

listener, port = start_raw_server(plan)
channel = grpc.insecure_channel("127.0.0.1:%d" % port)
started = time.monotonic()
try:
    # The main greenlet: on the native hub it runs the loop itself.
    channel.unary_unary("/review.Defects/Echo")(b"x", timeout=2)
    emit(code="OK", details="", elapsed=time.monotonic() - started)
except grpc.RpcError as error:
    emit(code=error.code().name, details=error.details(), elapsed=time.monotonic() - started)
"""


@pytest.mark.parametrize(
    "kind", ["headers-upper", "trailers-upper", "headers-crlf", "trailers-nul"]
)
def test_invalid_response_header_ends_the_call(kind, support, hub, tmp_path):
    """Defect 8: a response whose headers or trailers hold an invalid field
    (an upper-case name, CR LF or NUL in a value) never returns on the
    native hub when the caller is the main greenlet: 7 s after a 2 s
    deadline there is still no result, at 0 CPU. nghttp2 answers the field
    with RST_STREAM(PROTOCOL_ERROR); the stream closes, and the call
    finishes (and its deadline timer is stopped), while that RST_STREAM is
    written, i.e. inside Hub::FlushDirty() called from Hub::PollInline();
    PollInline then blocks in the next loop pass without looking at the
    ready queue again. On gevent's hub the call ends INTERNAL at once.
    grpcio: INTERNAL "Stream removed (Illegal header key: X-Upper)" for the
    upper-case name; it accepts CR LF and NUL in values (the call ends OK).
    The script runs on the hub the suite runs on (GRPC_GREEN_HUB)."""
    done, result, out, err = _run_script(
        hub,
        tmp_path,
        _INVALID_RESPONSE_SCRIPT,
        kind,
        impl=_impl(support),
        hub_kind=_session_hub_kind(support),
        raw_h2=True,
        timeout=9,
    )
    assert result is not None, (
        "no result 9 s after the call started with a 2 s deadline (the call never "
        "returned)\nstdout:\n%s\nstderr:\n%s" % (out, err)
    )
    assert done == 0, err
    if kind.endswith("upper"):
        assert result["code"] == "INTERNAL", result
        # The reset is ours (the peer sent none), and the details say why.
        assert result["details"].startswith("Stream removed ("), result
        assert "X-Upper" in result["details"], result
    else:
        assert result["code"] in ("OK", "INTERNAL"), result
    assert result["elapsed"] < 1.5, "the call ended only at its deadline: %r" % (result,)


# ---------------------------------------------------------------- item 9a


class _HugeCode:
    """Quacks like a StatusCode whose number does not fit in a C int."""

    value = (2**32, "huge")


def _set_huge_code_stream(request, context):
    context.set_code(_HugeCode())
    context.set_details("huge code")
    yield b"one"


def _set_huge_code_unary(request, context):
    context.set_code(_HugeCode())
    context.set_details("huge code")
    return b"response"


@pytest.mark.parametrize("streaming", [True, False], ids=["unary_stream", "unary_unary"])
def test_status_code_beyond_int_is_not_sent_as_ok(streaming, green_server, make_channel):
    """Item 9a: ServerCall.respond converts the code with
    `int code = PyLong_AsLong(...)`: 2**32 becomes 0 and the status goes out
    as grpc-status 0. A response stream then ends OK; a unary call (the
    response is dropped for a non-OK code) ends UNIMPLEMENTED "No message
    returned for unary request". grpcio sends UNKNOWN for a code that is not
    a grpc.StatusCode."""
    server = green_server(
        handlers=[
            _handlers(
                Stream=grpc.unary_stream_rpc_method_handler(_set_huge_code_stream),
                Unary=_unary(_set_huge_code_unary),
            )
        ]
    )
    channel = make_channel(server.target)
    with pytest.raises(grpc.RpcError) as info:
        if streaming:
            list(channel.unary_stream(_method("Stream"))(b"", timeout=10))
        else:
            channel.unary_unary(_method("Unary"))(b"", timeout=10)
    assert info.value.code() is grpc.StatusCode.UNKNOWN, (info.value.code(), info.value.details())


@pytest.mark.green_only
def test_core_call_cancel_with_code_beyond_int(green_server, make_channel):
    """Item 9a, client side: _core.Call.cancel(code, details) converts with
    `int code = PyLong_AsLong(...)` too: cancel(2**32, ...) ends the call
    with code 0 (OK). Expected: refused (OverflowError/ValueError) or a
    non-OK code."""
    server = green_server(
        handlers=[
            _handlers(
                Bidi=grpc.stream_stream_rpc_method_handler(lambda requests, context: iter(requests))
            )
        ]
    )
    channel = make_channel(server.target)
    call = channel._core.start(_method("Bidi"), 10, None, False, None, False)
    try:
        ended = call.cancel(2**32, "cancelled with a huge code")
    except (OverflowError, ValueError):
        return
    assert ended
    assert call.code != 0, "cancel(2**32, ...) ended the call OK"


# ---------------------------------------------------------------- item 9b


@pytest.mark.green_only
def test_pool_worker_started_with_other_arguments_raises_type_error():
    """Item 9b: the pool greenlets' run function (Hub::RunWorker) returns
    NULL without setting an exception when it is not called with exactly
    one argument (the hub always calls it with one; anyone else who starts
    a pool greenlet, e.g. found through gc, may not): Python turns that into
    SystemError "... returned NULL without setting an exception".
    Expected: a TypeError saying what is wrong."""
    from grpc_green import _core

    box = {}

    def in_thread():
        # A fresh thread: its hub has no idle workers, so spawn() makes a
        # new, not yet started pool greenlet.
        try:
            _core.spawn(lambda: None)
            runs = [
                g.run
                for g in gc.get_objects()
                if type(g).__name__ == "greenlet"
                and not g
                and not g.dead
                and getattr(getattr(g, "run", None), "__name__", "") == "grpc_green_worker"
            ]
            box["found"] = len(runs)
            try:
                runs[0]()
            except BaseException as exc:  # noqa: BLE001 -- reported to the test
                box["error"] = exc
            _core.sleep(0)  # let the hub run the queued job
        except BaseException as exc:  # noqa: BLE001 -- reported to the test
            box["setup_error"] = exc

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert "setup_error" not in box, box
    assert box["found"] >= 1, box
    assert isinstance(box.get("error"), TypeError), repr(box.get("error"))


# ---------------------------------------------------------------- item 9c

_MUTATING_METADATA_SCRIPT = """
server = new_server()
def keys(request, context):
    return json.dumps(sorted(k for k, v in context.invocation_metadata()
                             if k.startswith("x-"))).encode()
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "review.Defects", {"Keys": grpc.unary_unary_rpc_method_handler(keys)}),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
channel = grpc.insecure_channel("127.0.0.1:%d" % port)

keep = []

class Pair:
    # A (key, value) pair that is not a tuple; iterating it empties the
    # metadata list it is in, then reuses the memory that frees.
    def __init__(self, outer):
        self.outer = outer
    def __iter__(self):
        del self.outer[:]
        keep.extend([[object() for _ in range(64)] for _ in range(200)])
        keep.extend(["x-filler-%d" % i for i in range(2000)])
        return iter(("x-pair-object", "v"))

outcomes = []
for attempt in range(3):
    metadata = []
    metadata[:] = [Pair(metadata)] + [("x-tuple-%02d" % j, "value") for j in range(50)]
    try:
        outcomes.append(["OK", json.loads(channel.unary_unary("/review.Defects/Keys")(
            b"", metadata=metadata, timeout=10))])
    except grpc.RpcError as error:
        outcomes.append([error.code().name, error.details()])
    except Exception as error:
        outcomes.append([type(error).__name__, str(error)])
emit(outcomes=outcomes)
server.stop(None)
"""


def test_metadata_list_mutated_during_conversion(support, hub, tmp_path):
    """Item 9c: AppendMetadata keeps PySequence_Fast_ITEMS() of the metadata
    list while PySequence_Tuple() of a non-tuple pair runs user code; if
    that code empties the list, the loop reads the freed item array
    (AddressSanitizer: heap-use-after-free in AppendMetadata). Here that
    shows as INTERNAL "Invalid metadata" (or a TypeError) instead of a
    call; it may also crash. grpcio takes a snapshot of the metadata: the
    call goes out with every pair."""
    done, result, out, err = _run_script(
        hub, tmp_path, _MUTATING_METADATA_SCRIPT, impl=_impl(support), timeout=60
    )
    assert done == 0 and result, "script failed or crashed (exit %s)\n%s\n%s" % (done, out, err)
    expected = sorted(["x-pair-object"] + ["x-tuple-%02d" % j for j in range(50)])
    assert result["outcomes"] == [["OK", expected]] * 3, result["outcomes"]


# ---------------------------------------------------------------- item 9d

_FAILING_GEVENT_TIMER_SCRIPT = """
import gevent
from gevent.libev import corecext

class Loop(corecext.loop):
    refuse = None  # (low, high): timers whose delay is in there fail to start

    def timer(self, after, *args, **kwargs):
        if Loop.refuse is not None and Loop.refuse[0] <= after <= Loop.refuse[1]:
            raise MemoryError("timer refused by the test")
        return super().timer(after, *args, **kwargs)

gevent.config.loop = Loop
assert grpc.hub.kind() == "gevent"

def plan(stream):
    if stream == 1:  # the warm-up call
        return [h2_frame(1, END_HEADERS, stream, hpack(RESPONSE_HEADERS)),
                h2_frame(0, 0, stream, grpc_message(b"hi")),
                h2_frame(1, END_HEADERS | END_STREAM, stream, hpack([(b"grpc-status", b"0")]))]
    return []  # never answers

listener, port = start_raw_server(plan)
channel = grpc.insecure_channel("127.0.0.1:%d" % port)
echo = channel.unary_unary("/review.Defects/Echo")
assert echo(b"x", timeout=30) == b"hi"  # connected: the next call starts no connect timer
Loop.refuse = (1.0, 3.0)                # the next call's 2 s deadline timer fails to start
started = time.monotonic()
try:
    echo(b"x", timeout=2)
    emit(outcome="response", elapsed=time.monotonic() - started)
except grpc.RpcError as error:
    emit(outcome=error.code().name, elapsed=time.monotonic() - started)
except Exception as error:
    emit(outcome=type(error).__name__, elapsed=time.monotonic() - started)
"""


@pytest.mark.green_only
def test_gevent_deadline_timer_that_fails_to_start(hub, tmp_path):
    """Item 9d: GeventTimer::Start only reports a failure to start as
    unraisable (PyErr_WriteUnraisable) and goes on: the call's deadline then
    never fires and a call to a server that never answers hangs forever.
    Expected: the failure reaches the caller (an exception, or the call
    ends with an error status) instead of a call without a deadline."""
    done, result, out, err = _run_script(
        hub,
        tmp_path,
        _FAILING_GEVENT_TIMER_SCRIPT,
        impl="grpc_green",
        hub_kind="gevent",
        raw_h2=True,
        timeout=10,
    )
    assert result is not None, (
        "a call with a 2 s deadline whose timer failed to start had not ended 10 s later"
        "\nstdout:\n%s\nstderr:\n%s" % (out, err)
    )
    assert result["outcome"] != "response", result


# ---------------------------------------------------------------- item 9e

_REINIT_CHANNEL_SCRIPT = """
# A listener that never accepts: the call parks in Channel::Connect.
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(0)
channel = grpc.insecure_channel("127.0.0.1:%d" % listener.getsockname()[1])

def call():
    try:
        return ["OK", repr(channel.unary_unary("/review.Defects/Echo")(b"x", timeout=3))]
    except grpc.RpcError as error:
        return [error.code().name, error.details()]

task = grpc.hub.spawn(call)
sleep(0)  # the task starts connecting and parks
try:
    channel._core.__init__("127.0.0.1:1")
    refused = None
except (TypeError, RuntimeError, ValueError) as error:
    refused = repr(error)
emit(refused=refused, call=task.get(10))
"""


@pytest.mark.green_only
def test_reinit_of_core_channel_with_a_call_in_flight(hub, tmp_path):
    """Item 9e: calling __init__ again on a _core.Channel deletes the C++
    Channel that live calls still point to. A call parked in
    Channel::Connect resumes inside the deleted object
    (AddressSanitizer: heap-use-after-free in Channel::Connect,
    PyChannel.cpp); without a sanitizer the new Channel, allocated in the
    freed memory, is read instead, and the call ends UNAVAILABLE "failed to
    connect to all addresses; last error: ". Expected: __init__ on an
    initialised object is refused, or the old channel is closed properly,
    its call ending CANCELLED "Channel closed!" as any call of a closed
    channel does."""
    done, result, out, err = _run_script(
        hub, tmp_path, _REINIT_CHANNEL_SCRIPT, impl="grpc_green", timeout=30
    )
    assert done == 0 and result, "script failed or crashed (exit %s)\n%s\n%s" % (done, out, err)
    if result["refused"] is None:
        assert result["call"] == ["CANCELLED", "Channel closed!"], result


# ---------------------------------------------------------------- item 9f


def _slow_echo(request, context):
    HUB.sleep(0.05)  # the future's callback is added before the call ends
    return request


def _slow_sum(requests, context):
    total = b"".join(requests)
    HUB.sleep(0.05)
    return total


@pytest.mark.parametrize("kind", ["unary_unary", "stream_unary"])
def test_done_callback_exception_is_logged(kind, green_server, make_channel, hub, caplog):
    """Item 9f: an exception raised by a future's done-callback is swallowed
    silently by _UnaryFuture._finish (unary_unary futures), and only goes
    to sys.unraisablehook for the futures of streaming calls (the hub's
    pool greenlet reports it as unraisable). grpcio logs it at ERROR level
    on the "grpc._channel" logger: "Exception in callback <fn>: <exc>"."""
    server = green_server(
        handlers=[
            _handlers(
                Echo=_unary(_slow_echo),
                Sum=grpc.stream_unary_rpc_method_handler(_slow_sum),
            )
        ]
    )
    channel = make_channel(server.target)
    ran = []

    def callback(future):
        ran.append(future)
        raise ValueError("boom from the done callback")

    caplog.set_level(logging.ERROR)
    if kind == "unary_unary":
        future = channel.unary_unary(_method("Echo")).future(b"x", timeout=10)
    else:
        future = channel.stream_unary(_method("Sum")).future(iter([b"a", b"b"]), timeout=10)
    future.add_done_callback(callback)
    assert future.result(timeout=10) in (b"x", b"ab")
    hub.wait_until(lambda: ran, timeout=10, message="the done callback never ran")

    def logged():
        return [
            r
            for r in caplog.records
            if r.levelno >= logging.ERROR
            and "boom from the done callback"
            in (r.getMessage() + (r.exc_text or "") + repr(r.exc_info))
        ]

    hub.wait_until(
        lambda: logged(), timeout=5, message="the done callback's exception was not logged"
    )
