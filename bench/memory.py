#!/usr/bin/env python3
"""Memory per idle connection and per idle open stream, server and client side.

Each row is one server process (bench/servers/wait_server.py, pinned to core
0, grpc.server(futures.ThreadPoolExecutor()) with the default max_workers)
and one client process (pinned to core 1) that warms up, waits for the
parent to read the server's idle RSS, then opens:

  connections  --connections channels (separate connections: grpcio gets
               grpc.use_local_subchannel_pool), each making one unary call,
               then sitting idle;
  streams      --streams bidi calls of /bench.Echo/BidiStream over
               --stream-channels connections; each sends one message, the
               client reads its echo, and both ends then wait (the server's
               handler blocks on the request iterator, the client's request
               iterator blocks on an event that is never set).

Then the parent reads the server's VmRSS again (after the counts of
handlers running settle): (after - before) / N is the server's RSS per
idle connection or stream; the client reports the same for itself. The
grpcio sync server runs at most max_workers handlers at once: the other
streams stay open at the HTTP/2 level with their handler queued, and the
table says how many handlers ran.

    .venv/bin/python bench/memory.py [--connections N] [--streams M]
                                     [--stream-channels C] [--tests connections,streams]
                                     [--rows grpc_green/grpc_green,...]

Rows are SERVER/CLIENT pairs; by default both servers with the grpc_green
client, and the grpcio client against the grpc_green server (its client-side
figures). Prints a table and writes bench/results/memory.json. Exit status 0
when every grpc_green-server row ran without errors, 1 otherwise. See
bench/README.md.
"""

import argparse
import os
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from procs import (  # noqa: E402  (bench/ is on sys.path from here)
    GEN,
    RESULTS,
    BenchError,
    Child,
    WaitServer,
    advertised_settings,
    cores,
    count_sockets,
    emit,
    finish_row,
    generate_protos,
    git_head,
    grpcio_version,
    impl_env,
    log,
    machine,
    max_streams_text,
    pinned,
    raise_nofile,
    status,
    write_json,
)

SERVERS = {"grpc_green": "grpc_green", "grpcio_sync": "grpcio sync"}
CLIENTS = {"grpc_green": "grpc_green", "grpcio": "grpcio"}
TESTS = {"connections": "idle connections", "streams": "idle open streams"}
DEFAULT_ROWS = "grpc_green/grpc_green,grpcio_sync/grpc_green,grpc_green/grpcio"
WARM_TIMEOUT = 60.0
OPEN_TIMEOUT = 120.0  # the client must have opened everything within this
CONFIRM_TIMEOUT = 15.0  # longest wait for the first echoes of the streams
WARM_STREAMS = 4  # fewer than the grpcio sync server's default max_workers
SETTLE = 1.0  # seconds of unchanged handler counts before a reading
STATS_WAIT = 10.0  # longest wait for the server's handler count to settle
HOLD_LIMIT = 600.0  # a client that is never killed exits after this
BATCH = 200  # connections opened at once


# --- child: the client -----------------------------------------------------------------


def child(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=CLIENTS)
    ap.add_argument("--test", choices=TESTS, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--stream-channels", type=int, default=4)
    args = ap.parse_args(argv)
    impl = args.child
    raise_nofile()
    if impl == "grpc_green":
        import grpc_green as grpc
        from grpc_green import hub

        sleep, Event = hub.sleep, hub.Event

        def run_all(fns, timeout):
            tasks = [hub.spawn(fn) for fn in fns]
            return hub.joinall(tasks, timeout=timeout)
    else:
        import threading
        from concurrent import futures

        import grpc

        sleep, Event = time.sleep, threading.Event
        if "grpc_green" in sys.modules:
            emit("ERROR", {"error": "grpcio client imported grpc_green"})
            os._exit(2)
        pool = futures.ThreadPoolExecutor(16)

        def run_all(fns, timeout):
            done, pending = futures.wait([pool.submit(fn) for fn in fns], timeout=timeout)
            return not pending

    sys.path.insert(0, GEN)
    import echo_pb2

    EchoMsg = echo_pb2.EchoMsg
    target = "127.0.0.1:%d" % args.port
    # grpcio shares one connection among channels with equal arguments unless
    # each channel has its own subchannel pool; grpc_green ignores the option.
    options = [("grpc.use_local_subchannel_pool", 1)]
    codec = dict(
        request_serializer=EchoMsg.SerializeToString,
        response_deserializer=EchoMsg.FromString,
        _registered_method=True,
    )
    request = EchoMsg(payload=bytes(range(16)))
    errors = []

    def note(e):
        code = getattr(e, "code", None)
        errors.append(code().name if callable(code) else "%s: %s" % (type(e).__name__, e))

    def unary_calls(channel_list, n):
        futs = [
            ch.unary_unary("/bench.Echo/Unary", **codec).future(request, timeout=30)
            for ch in (channel_list[i % len(channel_list)] for i in range(n))
        ]
        ok = 0
        for f in futs:
            try:
                if f.result(timeout=60).payload == request.payload:
                    ok += 1
                else:
                    errors.append("reply does not echo the request")
            except Exception as e:  # noqa: BLE001 -- counted and reported
                note(e)
        return ok

    release = Event()  # never set: request iterators wait on it

    def requests():
        yield request
        release.wait()

    def open_streams(channel_list, n):
        calls = []
        for i in range(n):
            bidi = channel_list[i % len(channel_list)].stream_stream(
                "/bench.Echo/BidiStream", **codec
            )
            calls.append(bidi(requests(), timeout=HOLD_LIMIT))
        confirmed = []

        def confirm(call):
            def run():
                try:
                    if next(call).payload == request.payload:
                        confirmed.append(1)
                    else:
                        errors.append("stream reply does not echo the request")
                except Exception as e:  # noqa: BLE001
                    note(e)

            return run

        run_all([confirm(c) for c in calls], CONFIRM_TIMEOUT)
        return calls, len(confirmed)

    def rss():
        return status(os.getpid())["VmRSS"]

    # -- warm-up: a channel (or the stream channels) used as the run will use it
    warm_channels = [
        grpc.insecure_channel(target, options=options)
        for _ in range(args.stream_channels if args.test == "streams" else 1)
    ]
    warm_ok = unary_calls(warm_channels, len(warm_channels))
    warm_ok += unary_calls(warm_channels, 64) + unary_calls(warm_channels, 64)
    if args.test == "streams":
        calls, n_conf = open_streams(warm_channels, WARM_STREAMS)
        for c in calls:
            c.cancel()
        warm_ok += n_conf
        sleep(0.2)
    if errors:
        emit("ERROR", {"error": "warm-up failed (%d errors): %s" % (len(errors), errors[0])})
        os._exit(2)
    emit("WARM", {"client_rss_kib": rss(), "warm_ok": warm_ok})
    if sys.stdin.readline().strip() != "GO":
        os._exit(2)

    # -- open the connections or streams and leave them idle
    t = time.monotonic()
    held = []
    if args.test == "connections":
        ok = 0
        for start in range(0, args.count, BATCH):
            batch = [
                grpc.insecure_channel(target, options=options)
                for _ in range(min(BATCH, args.count - start))
            ]
            held.extend(batch)
            ok += unary_calls(batch, len(batch))
        figures = {"opened": len(held), "ok": ok}
    else:
        calls, n_conf = open_streams(warm_channels, args.count)
        held.extend(calls)
        figures = {"opened": len(calls), "ok": n_conf}
    sleep(0.5)
    if args.test == "streams":  # streams the server reset or that failed otherwise
        figures["ended"] = sum(1 for c in held if c.done())
    figures["open_s"] = round(time.monotonic() - t, 3)
    figures.update(
        client_rss_kib=rss(),
        errors=len(errors),
        first_errors=errors[:3],
        threads=status(os.getpid())["Threads"],
    )
    emit("READY", figures)
    limit = time.monotonic() + HOLD_LIMIT
    while time.monotonic() < limit:  # idle until the parent kills us
        sleep(0.5)
    os._exit(0)


# --- parent ------------------------------------------------------------------------------


def wait_settled(server, timeout):
    """Waits until the server's STATS have not changed for SETTLE seconds."""
    end = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < end:
        now = dict(server.stats)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= SETTLE:
            return True
        time.sleep(0.05)
    return False


def run_row(test, server_impl, client_impl, args):
    n = args.connections if test == "connections" else args.streams
    row = {
        "test": test,
        "server": server_impl,
        "client": client_impl,
        "count": n,
        "ok": False,
        "error": None,
    }
    server = WaitServer(server_impl, args.server_core)
    child = None
    try:
        port = server.start()
        row["max_concurrent_streams"] = max_streams_text(advertised_settings(port))
        cmd = pinned(
            args.client_core,
            [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                client_impl,
                "--test",
                test,
                "--port",
                str(port),
                "--count",
                str(n),
                "--stream-channels",
                str(args.stream_channels),
            ],
        )
        row["command"] = " ".join(cmd)
        row["server_command"] = " ".join(server.argv)
        child = Child(cmd, impl_env(client_impl), WARM_TIMEOUT + OPEN_TIMEOUT + 60)
        _, warm = child.expect(["WARM"], timeout=WARM_TIMEOUT)
        wait_settled(server, STATS_WAIT)
        before = server.status()
        sockets_before = count_sockets(server.pid)
        row["server_stats_before"] = dict(server.stats)
        child.send("GO")
        _, ready = child.expect(["READY"], timeout=OPEN_TIMEOUT)
        row["settled"] = wait_settled(server, STATS_WAIT)
        after = server.status()
        sockets_after = count_sockets(server.pid)
        row["server_stats_after"] = dict(server.stats)
        row.update(
            opened=ready["opened"],
            client_ok=ready["ok"],
            open_s=ready["open_s"],
            errors=ready["errors"],
            first_errors=ready["first_errors"],
            client_threads=ready["threads"],
            server_rss_before_kib=before["VmRSS"],
            server_rss_after_kib=after["VmRSS"],
            server_hwm_kib=after["VmHWM"],
            server_threads=after["Threads"],
            server_connections_before=sockets_before - 1,  # minus the listening socket
            server_connections_after=sockets_after - 1,
            server_handlers_running=server.stats.get("active", 0),
            client_rss_before_kib=warm["client_rss_kib"],
            client_rss_after_kib=ready["client_rss_kib"],
        )
        # Per connection held by the server / per stream still open (the others ended).
        if test == "connections":
            held = row["server_connections_after"] - row["server_connections_before"]
        else:
            row["streams_ended"] = ready["ended"]
            held = ready["opened"] - ready["ended"]
        row["held"] = held
        server_delta = after["VmRSS"] - before["VmRSS"]
        client_delta = ready["client_rss_kib"] - warm["client_rss_kib"]
        row["server_kib_per"] = round(server_delta / held, 2) if held else None
        row["client_kib_per"] = round(client_delta / held, 2) if held else None
        row["ok"] = True
        log(
            "[memory] %s, server %s, client %s: %d opened, %d held, %d confirmed; server "
            "%+.1f MiB (%s each), client %+.1f MiB (%s each); server connections %d, "
            "handlers running %d"
            % (
                TESTS[test],
                server_impl,
                client_impl,
                ready["opened"],
                held,
                ready["ok"],
                (after["VmRSS"] - before["VmRSS"]) / 1024,
                fmt_kib(row["server_kib_per"]),
                (ready["client_rss_kib"] - warm["client_rss_kib"]) / 1024,
                fmt_kib(row["client_kib_per"]),
                sockets_after - 1,
                row["server_handlers_running"],
            )
        )
    except BenchError as e:
        row["error"] = str(e)
        log(
            "[memory] %s, server %s, client %s: FAILED: %s"
            % (TESTS[test], server_impl, client_impl, e)
        )
    finally:
        finish_row(row, child, server)
    return row


def fmt_mib(kib):
    return "%+.1f" % (kib / 1024)


def fmt_kib(kib):
    return "-" if kib is None else "%.2f KiB" % kib


def print_table(rows, args, loads):
    print()
    print(
        "memory per idle connection / idle open stream: (VmRSS after - before) / held; server "
        "on core %s, client on core %s" % (args.server_core, args.client_core)
    )
    print(
        "%d CPUs, load average %.2f at start, %.2f at end; servers: grpc.server("
        "futures.ThreadPoolExecutor()), default max_workers = %d here"
        % (os.cpu_count(), loads[0], loads[1], min(32, (os.cpu_count() or 1) + 4))
    )
    hdr = "%-18s %-12s %-10s %6s %6s %9s %8s %10s %11s %10s %11s  %s" % (
        "test",
        "server",
        "client",
        "N",
        "held",
        "confirmed",
        "handlers",
        "server MiB",
        "server/held",
        "client MiB",
        "client/held",
        "notes",
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        head = "%-18s %-12s %-10s %6d" % (
            TESTS[r["test"]],
            SERVERS[r["server"]],
            CLIENTS[r["client"]],
            r["count"],
        )
        if not r["ok"]:
            print("%s  FAILED: %s" % (head, r["error"]))
            continue
        notes = []
        if r["held"] != r["count"]:
            notes.append(
                "%d of %d %s"
                % (
                    r["count"] - r["held"],
                    r["count"],
                    "connections not held by the server"
                    if r["test"] == "connections"
                    else "streams ended early",
                )
            )
        if r["test"] == "streams" and r["server_handlers_running"] != r["held"]:
            notes.append(
                "%d handlers running, the other open streams wait for a worker"
                % r["server_handlers_running"]
            )
        if r["errors"]:
            notes.append("%d errors: %s" % (r["errors"], ", ".join(sorted(set(r["first_errors"])))))
        if not r["settled"]:
            notes.append("server handler counts still changing")
        print(
            "%s %6d %9d %8s %10s %11s %10s %11s  %s"
            % (
                head,
                r["held"],
                r["client_ok"],
                "-" if r["test"] == "connections" else "{:,}".format(r["server_handlers_running"]),
                fmt_mib(r["server_rss_after_kib"] - r["server_rss_before_kib"]),
                fmt_kib(r["server_kib_per"]),
                fmt_mib(r["client_rss_after_kib"] - r["client_rss_before_kib"]),
                fmt_kib(r["client_kib_per"]),
                "; ".join(notes),
            )
        )
    print()
    print(
        "N = connections opened (each made one unary call) or bidi streams opened over %d "
        "connections (one message each, echoed);" % args.stream_channels
    )
    print(
        "held = new connections the server holds / streams still open at the client when "
        "measured; confirmed = unary replies or first echoes received;"
    )
    print(
        "handlers = server handlers running; server MiB, client MiB = VmRSS after - before; "
        "/held = per connection or stream."
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=1000, help="idle connections (1000)")
    ap.add_argument("--streams", type=int, default=5000, help="idle open streams (5000)")
    ap.add_argument(
        "--stream-channels", type=int, default=4, help="connections the streams are spread over (4)"
    )
    ap.add_argument(
        "--tests", default=",".join(TESTS), help="comma-separated subset of: " + ", ".join(TESTS)
    )
    ap.add_argument(
        "--rows",
        default=DEFAULT_ROWS,
        help="comma-separated SERVER/CLIENT pairs (default %s); servers: %s; "
        "clients: %s" % (DEFAULT_ROWS, ", ".join(SERVERS), ", ".join(CLIENTS)),
    )
    ap.add_argument("--output", default=os.path.join(RESULTS, "memory.json"))
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[1:])
    args = ap.parse_args()
    tests = [s.strip() for s in args.tests.split(",") if s.strip()]
    pairs = []
    for item in args.rows.split(","):
        s, _, c = item.strip().partition("/")
        if s not in SERVERS or c not in CLIENTS:
            ap.error(
                "bad row %r: SERVER/CLIENT with SERVER in %s, CLIENT in %s"
                % (item, ", ".join(SERVERS), ", ".join(CLIENTS))
            )
        pairs.append((s, c))
    bad = [t for t in tests if t not in TESTS]
    if bad:
        ap.error("unknown tests: %s" % ", ".join(bad))
    if min(args.connections, args.streams, args.stream_channels) < 1:
        ap.error("counts must be >= 1")

    import datetime

    args.server_core, args.client_core = cores()
    if args.server_core is None:
        log("warning: fewer than 2 usable cores or no taskset; running unpinned")
    load_at_start = os.getloadavg()
    try:
        generate_protos()
    except BenchError as e:
        log("memory: %s" % e)
        return 1
    t0 = time.monotonic()
    rows = []
    for test in tests:
        for server_impl, client_impl in pairs:
            rows.append(run_row(test, server_impl, client_impl, args))
    load_at_end = os.getloadavg()
    print_table(rows, args, (load_at_start[0], load_at_end[0]))
    for r in rows:
        for key in ("server_stderr_tail", "client_stderr_tail"):
            if r.get(key):
                print(
                    "\n%s %s/%s %s:\n%s"
                    % (r["test"], r["server"], r["client"], key.replace("_", " "), r[key][-1500:])
                )
    report = {
        "benchmark": "memory",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": {
            "connections": args.connections,
            "streams": args.streams,
            "stream_channels": args.stream_channels,
            "settle_s": SETTLE,
            "server_core": args.server_core,
            "client_core": args.client_core,
            "server": "bench/servers/wait_server.py: grpc.server(futures.ThreadPoolExecutor()) "
            "(default max_workers = %d here)" % min(32, (os.cpu_count() or 1) + 4),
            "measure": "VmRSS of /proc/PID/status, after - before, divided by N",
        },
        "machine": machine(load_at_start),
        "versions": {"grpcio": grpcio_version(), "git_head": git_head()},
        "wall_s": round(time.monotonic() - t0, 1),
        "rows": rows,
    }
    write_json(args.output, report)
    print("results: %s" % os.path.relpath(args.output, os.getcwd()))
    green = [r for r in rows if r["server"] == "grpc_green"]
    return 0 if all(r["ok"] and not r["errors"] for r in green) else 1


if __name__ == "__main__":
    sys.exit(main())
