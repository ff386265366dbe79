"""The client of the prefork_server example: many channels, which workers answer?

Each grpc_green channel opens its own TCP connection, and the kernel hands
each new connection to one of the pre-fork server's workers. This client
opens CHANNELS channels at once, makes one call on each and reports which
worker processes answered. Exits with status 1 if a call fails.

    python client.py [TARGET] [CHANNELS]    (default localhost:50051 and 64)
"""

import collections
import logging
import sys

import grpc_green.monkey

grpc_green.monkey.patch_grpc()

import grpc  # noqa: E402  (grpc_green under grpcio's name)
import worker_pb2  # noqa: E402
import worker_pb2_grpc  # noqa: E402

# grpcio lets channels with the same target and options share one connection
# unless told not to; grpc_green never shares (and ignores this option).
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


def run(target="localhost:50051", channels="64"):
    opened = [grpc.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(int(channels))]
    try:
        answers = [
            worker_pb2_grpc.WorkerStub(channel).GetWorker(worker_pb2.GetWorkerRequest(), timeout=10)
            for channel in opened
        ]
    except grpc.RpcError as error:
        print("call failed: %s: %s" % (error.code().name, error.details()))
        return 1
    finally:
        for channel in opened:
            channel.close()
    by_worker = collections.Counter(answer.pid for answer in answers)
    connections = len({answer.peer for answer in answers})
    print(
        "%d channels, %d connections, answered by %d workers"
        % (len(answers), connections, len(by_worker))
    )
    for pid, count in sorted(by_worker.items()):
        print("worker %d answered %d channels" % (pid, count))
    return 0


if __name__ == "__main__":
    logging.basicConfig()
    sys.exit(run(*sys.argv[1:3]))
