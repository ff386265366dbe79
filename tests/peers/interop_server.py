"""A real grpcio server for the interop cases (always runs in its own process).

    python interop_server.py [--address HOST:PORT]     (default 127.0.0.1:0)

Serves grpc.testing.TestService with tests/interop_service.py's servicer
(grpc.testing.UnimplementedService is deliberately not registered). Prints
``PORT <n>`` on stdout once it is serving and exits when its stdin is closed
(the test process died or closed the pipe) or on SIGTERM/SIGKILL.
"""

import argparse
import os
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_gen"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # interop_service

import grpc  # real grpcio: this process is never patched
import interop_test_pb2_grpc
from interop_service import InteropServicer


def _exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:0")
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    interop_test_pb2_grpc.add_TestServiceServicer_to_server(
        InteropServicer(sleep=time.sleep), server
    )
    port = server.add_insecure_port(args.address)
    server.start()
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    print("PORT %d" % port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
