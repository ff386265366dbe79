"""Instructions per call, counted by valgrind's callgrind: a measure of the
hot paths that, unlike req/s on a shared VM, gives the same figure run after
run and whatever else the machine is doing.

    python bench/icount.py [--root DIR] [--calls N]

Two rows, each grpc_green's process alone under callgrind:

  server   a grpc_green server (native hub) answering unary echo calls from
           a grpcio client (not counted): 16-byte messages, raw bytes
  client   a grpc_green client making sequential unary calls to the C++
           async server (build/bench/echo_server_cpp)

Each row runs twice, with N and 3N calls; the difference divided by 2N is
the cost of one call, start-up and teardown left out. --root points at
another checkout (built in place) to compare two builds in one sitting.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SERVER = r"""
import sys
sys.path.insert(0, {root!r})
import grpc_green as grpc
from grpc_green import hub
n = {calls}
done = hub.Event()
count = [0]
def echo(request, context):
    count[0] += 1
    if count[0] == n:
        done.set()
    return request
server = grpc.server()
server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
    "bench.Echo", {{"Unary": grpc.unary_unary_rpc_method_handler(echo)}})])
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
done.wait()
server.stop(1).wait()
"""

CLIENT_OF_SERVER = r"""
import sys, grpc
channel = grpc.insecure_channel("127.0.0.1:" + sys.argv[1])
call = channel.unary_unary("/bench.Echo/Unary")
payload = b"\x0a\x10" + b"x" * 16
for _ in range(int(sys.argv[2])):
    call(payload, timeout=60)
"""

CLIENT = r"""
import sys
sys.path.insert(0, {root!r})
import grpc_green as grpc
channel = grpc.insecure_channel("127.0.0.1:{port}")
call = channel.unary_unary("/bench.Echo/Unary")
payload = b"\x0a\x10" + b"x" * 16
for _ in range({calls}):
    call(payload, timeout=60)
channel.close()
"""


def callgrind(code, out_dir, env=None):
    out = os.path.join(out_dir, "cg.out")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=" + out,
        sys.executable,
        "-c",
        code,
    ]
    return cmd, out


def total(out_file):
    with open(out_file) as f:
        for line in f:
            m = re.match(r"(?:summary|totals): (\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError("no totals in " + out_file)


def server_row(root, calls):
    counts = []
    for n in (calls, 3 * calls):
        with tempfile.TemporaryDirectory() as tmp:
            cmd, out = callgrind(SERVER.format(root=root, calls=n), tmp)
            env = dict(os.environ, GRPC_GREEN_HUB="native")
            server = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
            )
            port = server.stdout.readline().strip()
            subprocess.run([sys.executable, "-c", CLIENT_OF_SERVER, port, str(n)], check=True)
            server.wait(timeout=600)
            counts.append(total(out))
    return (counts[1] - counts[0]) / (2 * calls)


def client_row(root, calls, cpp_server):
    srv = subprocess.Popen([cpp_server], stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline().split()[-1])
        counts = []
        for n in (calls, 3 * calls):
            with tempfile.TemporaryDirectory() as tmp:
                cmd, out = callgrind(CLIENT.format(root=root, port=port, calls=n), tmp)
                env = dict(os.environ, GRPC_GREEN_HUB="native")
                subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
                counts.append(total(out))
        return (counts[1] - counts[0]) / (2 * calls)
    finally:
        srv.kill()
        srv.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=ROOT, help="checkout whose grpc_green is counted")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--cpp-server", default=os.path.join(ROOT, "build", "bench", "echo_server_cpp"))
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    print("grpc_green at %s, %d and %d calls" % (root, args.calls, 3 * args.calls))
    print("server: %.0f instructions per unary call" % server_row(root, args.calls))
    print(
        "client: %.0f instructions per unary call" % client_row(root, args.calls, args.cpp_server)
    )


if __name__ == "__main__":
    main()
