"""A pre-fork gRPC server on grpc_green: N worker processes share one port.

The parent process forks the workers before it makes any grpc_green object.
Each worker then makes its own server (on its own hub) and binds the same
port with the ``grpc.so_reuseport`` option; the kernel spreads incoming
connections over the workers' listening sockets. Every call is answered with
the process id of the worker that served it.

The parent serves nothing. It waits for SIGTERM or SIGINT and forwards it to
the workers, which stop gracefully; if a worker dies on its own, the parent
stops the others and exits with status 1.

    python server.py [PORT] [WORKERS]    (default 50051 and 4; port 0 picks a free port)

Needs worker_pb2.py / worker_pb2_grpc.py next to it (run_demo.py generates
them) and grpc_green importable (installed, or the repository root on
PYTHONPATH). Linux: SO_REUSEPORT balances connections there.
"""

import contextlib
import logging
import os
import signal
import socket
import sys
import traceback
from concurrent import futures

import grpc_green.monkey

grpc_green.monkey.patch_grpc()

import grpc  # noqa: E402  (grpc_green under grpcio's name)
import worker_pb2  # noqa: E402
import worker_pb2_grpc  # noqa: E402

GRACE_SECONDS = 5  # calls in flight when a worker is told to stop may finish
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Worker(worker_pb2_grpc.WorkerServicer):
    def GetWorker(self, request, context):
        return worker_pb2.WorkerInfo(pid=os.getpid(), peer=context.peer())


@contextlib.contextmanager
def reserve_port(port):
    """Binds a placeholder socket to `port` with SO_REUSEPORT and yields its
    port number: port 0 thus picks a free port all workers can bind too. The
    placeholder never listens, so it never takes a connection."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(("::", port))
        yield sock.getsockname()[1]
    finally:
        sock.close()


def serve_worker(port, ready_fd, signal_mask):
    """A worker's life, in a forked child: the first grpc_green object of this
    process is made here."""
    # grpcio runs handlers on this pool; grpc_green accepts it for
    # compatibility and runs every RPC on a greenlet instead (no threads).
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=10), options=[("grpc.so_reuseport", 1)]
    )
    worker_pb2_grpc.add_WorkerServicer_to_server(Worker(), server)
    server.add_insecure_port("[::]:%d" % port)
    server.start()

    def stop(signum, frame):
        server.stop(GRACE_SECONDS)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    # The stop signals were blocked before fork(): one sent early waited
    # until now, when the handler is in place.
    signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)
    os.write(ready_fd, b"%d\n" % os.getpid())  # tell the parent this worker listens
    os.close(ready_fd)
    server.wait_for_termination()  # stop() runs from the signal handler


def fork_worker(port, ready_fd, signal_mask):
    """Forks a worker process; returns its pid (in the parent only)."""
    sys.stdout.flush()  # or the child would print the parent's buffered output again
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        serve_worker(port, ready_fd, signal_mask)
        status = 0
    except BaseException:  # noqa: BLE001  (printed; the worker's exit status says it failed)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # never return into the parent's code


def stop_workers(pids, signum):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    return failed


def serve(port="50051", workers="4"):
    workers = int(workers)
    # Until sigwait() takes them below, stop signals (and SIGCHLD: a worker
    # died) wait in the parent's blocked set. Children inherit the mask.
    signal_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | {signal.SIGCHLD})
    with reserve_port(int(port)) as port:
        ready_r, ready_w = os.pipe()
        pids = [fork_worker(port, ready_w, signal_mask) for _ in range(workers)]
        os.close(ready_w)
        with os.fdopen(ready_r) as ready:
            started = ready.read().split()  # EOF: every worker listens or died
        if len(started) < workers:
            print("only %d of %d workers started" % (len(started), workers), file=sys.stderr)
            stop_workers(pids, signal.SIGTERM)
            return 1
        print(
            "Server listening on %d: %d workers, pids %s"
            % (port, workers, " ".join(map(str, pids))),
            flush=True,
        )

        signum = signal.sigwait(STOP_SIGNALS | {signal.SIGCHLD})
        if signum == signal.SIGCHLD:
            print("a worker exited; stopping the others", file=sys.stderr, flush=True)
            stop_workers(pids, signal.SIGTERM)
            return 1
        print(
            "%s: stopping workers %s" % (signal.Signals(signum).name, " ".join(map(str, pids))),
            flush=True,
        )
        failed = stop_workers(pids, signum)
    print("all workers stopped" if not failed else "%d workers failed" % failed, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    logging.basicConfig()
    sys.exit(serve(*sys.argv[1:3]))
