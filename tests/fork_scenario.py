"""os.fork() / gevent.fork() with grpc_green objects alive; run by test_fork_threads.py.

    python fork_scenario.py native          # grpc_green's hub, os.fork()
    python fork_scenario.py gevent-os       # patch_all(grpc=True), os.fork() (gevent's)
    python fork_scenario.py gevent-fork     # patch_all(grpc=True), gevent.fork()

The parent runs a server and a channel that already carries a call, and has
a server-streaming call half read when it forks. The child checks that

* it runs on a hub of the same kind, made afresh;
* the parent's channel still works: it reconnects (a new connection, seen
  by the server as a new peer);
* the parent's half-read call and the parent's server refuse use with a
  RuntimeError that names fork;
* a server and a channel made in the child work.

Afterwards the parent checks that nothing the child did reached its own
connection: the half-read stream completes, and a new call on the old
channel arrives from the very same peer as before the fork (had the child
sent a GOAWAY or closed the socket for real, the channel would have
reconnected from a new port). Prints one JSON line; exit status 0 on success.
"""

import json
import os
import sys

MODE = sys.argv[1]
if MODE.startswith("gevent"):
    from gevent import monkey

    monkey.patch_all(grpc=True)
    import gevent
    import grpc

    sleep = gevent.sleep
    fork = gevent.fork if MODE == "gevent-fork" else os.fork
else:
    from grpc_green import monkey

    monkey.patch_grpc()
    import grpc

    sleep = grpc.hub.sleep
    fork = os.fork

STREAM_LEN = 20


def peer(request, context):
    return context.peer().encode()


def count(request, context):
    for i in range(STREAM_LEN):
        sleep(0.02)
        yield str(i).encode()


def start_server():
    server = grpc.server(None)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "fork.Test",
                {
                    "Peer": grpc.unary_unary_rpc_method_handler(peer),
                    "Count": grpc.unary_stream_rpc_method_handler(count),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def wait_child(pid):
    """Waits for the child without blocking this process's hub."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        sleep(0.01)


def refused(fn):
    try:
        fn()
    except RuntimeError as exc:
        return "fork" in str(exc)
    return False


def child(server, channel, stream, kind, peer_before, result_fd):
    out = {}
    out["kind"] = grpc.hub.kind()
    out["same_kind"] = out["kind"] == kind
    out["old_channel_works"] = channel.unary_unary("/fork.Test/Peer")(b"", timeout=10)
    out["old_channel_new_peer"] = out["old_channel_works"] != peer_before
    out["old_channel_works"] = bool(out["old_channel_works"])
    out["stream_refused"] = refused(lambda: next(stream))
    out["server_refused"] = refused(lambda: server.stop(None))
    new_server, new_port = start_server()
    with grpc.insecure_channel("127.0.0.1:%d" % new_port) as ch:
        got = list(ch.unary_stream("/fork.Test/Count")(b"", timeout=10))
        out["new_objects_work"] = got == [str(i).encode() for i in range(STREAM_LEN)]
    new_server.stop(None).wait()
    channel.close()
    os.write(result_fd, json.dumps(out).encode())


def main():
    server, port = start_server()
    channel = grpc.insecure_channel("127.0.0.1:%d" % port)
    peer_call = channel.unary_unary("/fork.Test/Peer")
    peer_before = peer_call(b"", timeout=10)
    stream = channel.unary_stream("/fork.Test/Count")(b"", timeout=30)
    first = next(stream)
    kind = grpc.hub.kind()

    r, w = os.pipe()
    pid = fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            child(server, channel, stream, kind, peer_before, w)
        except BaseException as exc:  # noqa: BLE001  (reported through the exit status)
            os.write(w, json.dumps({"child_error": repr(exc)}).encode())
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    exit_code = wait_child(pid)
    child_out = json.loads(os.read(r, 65536) or b"{}")
    rest = list(stream)
    result = {
        "mode": MODE,
        "kind": kind,
        "child_exit": exit_code,
        "child": child_out,
        "stream_completed": [first] + rest == [str(i).encode() for i in range(STREAM_LEN)],
        "stream_code": str(stream.code()),
        "same_peer_after": peer_call(b"", timeout=10) == peer_before,
    }
    channel.close()
    server.stop(None).wait()
    print(json.dumps(result))
    ok = (
        exit_code == 0
        and result["stream_completed"]
        and result["same_peer_after"]
        and all(
            child_out.get(k)
            for k in (
                "same_kind",
                "old_channel_works",
                "old_channel_new_peer",
                "stream_refused",
                "server_refused",
                "new_objects_work",
            )
        )
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
