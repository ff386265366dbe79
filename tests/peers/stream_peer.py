"""A subprocess peer for the streaming tests, running the implementation under test.

    python stream_peer.py [--impl grpc_green|grpcio] serve [--option NAME=INT ...]
    python stream_peer.py [--impl grpc_green|grpcio] block-client TARGET KEY [MODE]

--impl grpc_green (the default) puts the repository root on sys.path and
calls grpc_green.monkey.patch_grpc() before anything imports grpc, so this
process is a grpc_green process with no threads. --impl grpcio uses real
grpcio (the tests pass it in GRPC_GREEN_TEST_IMPL=grpcio mode).

serve         Serves grpc_green.streaming.Streaming (tests/streaming_behaviour.py)
              on 127.0.0.1:0 and prints ``PORT <n>``. Each --option becomes a
              server option (integer value).
block-client  Starts Streaming.Block(key=KEY, mode=MODE (default READ)) on
              TARGET, prints ``READY`` once the first response arrived, and
              then waits inside the call until it is killed.

Either way the process dies with its parent (PR_SET_PDEATHSIG), so a crashed
test run leaves nothing behind.
"""

import argparse
import ctypes
import signal
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent


def _die_with_parent():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _load(impl):
    """Imports grpc (patched to grpc_green when impl is grpc_green)."""
    sys.path.insert(0, str(TESTS / "_gen"))
    sys.path.insert(0, str(TESTS))  # streaming_behaviour
    if impl == "grpc_green":
        sys.path.insert(0, str(ROOT))
        import grpc_green.hub
        import grpc_green.monkey

        grpc_green.monkey.patch_grpc()
        sleep = grpc_green.hub.sleep
    else:
        sleep = time.sleep
    import grpc

    return grpc, sleep


def serve(impl, options):
    grpc, sleep = _load(impl)
    import streaming_pb2_grpc
    from streaming_behaviour import StreamingServicer

    if impl == "grpcio":
        from concurrent import futures

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    else:
        server = grpc.server(options=options)
    streaming_pb2_grpc.add_StreamingServicer_to_server(StreamingServicer(grpc, sleep), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("PORT %d" % port, flush=True)
    server.wait_for_termination()


def block_client(impl, target, key, mode):
    grpc, sleep = _load(impl)
    import streaming_pb2
    import streaming_pb2_grpc

    first = streaming_pb2.BlockRequest(key=key, mode=streaming_pb2.BlockRequest.Mode.Value(mode))

    def requests():
        yield first
        while True:  # keeps the request stream open, never sends again
            sleep(3600)

    channel = grpc.insecure_channel(target)
    call = streaming_pb2_grpc.StreamingStub(channel).Block(requests())
    response = next(call)
    print("READY %s" % response.message, flush=True)
    for _ in call:  # parks here until the test kills this process
        pass
    print("ENDED %s" % call.code(), flush=True)


def main():
    _die_with_parent()
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("grpc_green", "grpcio"), default="grpc_green")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("--option", action="append", default=[])
    p_block = sub.add_parser("block-client")
    p_block.add_argument("target")
    p_block.add_argument("key")
    p_block.add_argument("mode", nargs="?", default="READ")
    args = parser.parse_args()
    if args.command == "serve":
        options = []
        for option in args.option:
            name, _, value = option.partition("=")
            options.append((name, int(value)))
        serve(args.impl, tuple(options))
    else:
        block_client(args.impl, args.target, args.key, args.mode)


if __name__ == "__main__":
    main()
