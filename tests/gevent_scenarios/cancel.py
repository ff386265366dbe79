"""gevent.Timeout and Greenlet.kill() interrupting a blocked grpc_green call.

    python cancel.py CASE

CASE is one of:

  timeout_unary   a gevent.Timeout(0.2) (gevent's documented pattern, see
                  timeout_stream_kept) around a unary call whose handler never
                  answers on its own
  timeout_stream  ``with gevent.Timeout(0.2):`` around a for-loop over a
                  server-streaming call that blocks after its first response
  timeout_stream_kept  the same with gevent's documented pattern
                  (timeout = Timeout(0.2); timeout.start(); ... except
                  Timeout as t: if t is not timeout: raise), the Timeout
                  object staying referenced afterwards
  kill_unary      Greenlet.kill() of a greenlet blocked in a unary call
  kill_stream     Greenlet.kill() of a greenlet blocked in next() on a
                  server-streaming response iterator (after the first response)

The server (same process, reached over loopback) has raw-bytes handlers that
register a context.add_callback() callback and then poll context.is_active()
with gevent.sleep until it turns False (giving up after 10 s). They record
what they saw under the key sent as the request. Checks: the caller gets the
gevent.Timeout / the greenlet dies of GreenletExit promptly (not an RpcError,
not after the handler gave up); the server handler observes the cancellation
(is_active() False, callback ran and saw is_active() False); and the same
channel still makes calls afterwards.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
import time  # noqa: E402

import _scenario as S  # noqa: E402

from grpc_green import monkey as green_monkey  # noqa: E402

green_monkey.patch_grpc()

import gevent  # noqa: E402
import greenlet  # noqa: E402
import grpc  # noqa: E402

SERVICE = "gevent_scenarios.Cancel"
HANDLER_GIVES_UP = 10.0  # seconds the handler waits for the cancellation
PROMPT = 2.0  # the caller must be interrupted well before that

observations = {}


def _wait_for_cancellation(key, context):
    obs = observations[key] = {
        "started": True,
        "active_at_start": context.is_active(),
        "callback_ran": False,
        "callback_saw_inactive": None,
        "saw_inactive": False,
        "ended": False,
        "generator_exit": False,
    }

    def on_done():
        obs["callback_ran"] = True
        obs["callback_saw_inactive"] = not context.is_active()
        obs["callback_at"] = time.monotonic()

    context.add_callback(on_done)
    deadline = time.monotonic() + HANDLER_GIVES_UP
    while context.is_active() and time.monotonic() < deadline:
        gevent.sleep(0.005)
    obs["saw_inactive"] = not context.is_active()
    obs["ended"] = True
    return obs


def block_unary(request, context):
    _wait_for_cancellation(request.decode(), context)
    return b"handler gave up"


def block_stream(request, context):
    key = request.decode()
    try:
        yield b"first"
        _wait_for_cancellation(key, context)
        yield b"handler gave up"
    except GeneratorExit:
        observations.setdefault(key, {})["generator_exit"] = True
        raise


def ping(request, context):
    return b"pong " + request


def handlers():
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "BlockUnary": grpc.unary_unary_rpc_method_handler(block_unary),
            "BlockStream": grpc.unary_stream_rpc_method_handler(block_stream),
            "Ping": grpc.unary_unary_rpc_method_handler(ping),
        },
    )


def main(case):
    kind = S.hub_kind()
    S.check(kind == "gevent", "hub kind", kind)
    server, target = S.serve(handlers())
    channel = grpc.insecure_channel(target)
    unary = channel.unary_unary("/%s/BlockUnary" % SERVICE)
    stream = channel.unary_stream("/%s/BlockStream" % SERVICE)
    pong = channel.unary_unary("/%s/Ping" % SERVICE)
    S.check(pong(b"before", timeout=10) == b"pong before", "ping before")

    key = case
    caller = {"raised": None, "got": []}
    started = time.monotonic()

    if case in ("timeout_unary", "timeout_stream_kept"):
        # gevent's documented pattern: start a Timeout, catch it by identity.
        # `timeout` stays referenced until main() returns.
        timeout = gevent.Timeout(0.2)
        timeout.start()
        try:
            if case == "timeout_unary":
                caller["got"].append(unary(key.encode()))
            else:
                for response in stream(key.encode()):
                    caller["got"].append(response.decode())
        except gevent.Timeout as error:
            if error is not timeout:
                raise
            caller["raised"] = "Timeout"
        except BaseException as error:  # noqa: BLE001 -- reported below
            caller["raised"] = repr(error)
        finally:
            timeout.cancel()

    elif case == "timeout_stream":
        # The with-statement idiom; nothing keeps the Timeout afterwards.
        try:
            with gevent.Timeout(0.2):
                for response in stream(key.encode()):
                    caller["got"].append(response.decode())
        except gevent.Timeout:
            caller["raised"] = "Timeout"
        except BaseException as error:  # noqa: BLE001 -- reported below
            caller["raised"] = repr(error)

    elif case in ("kill_unary", "kill_stream"):
        in_call = gevent.event.Event()

        def call_and_block():
            if case == "kill_unary":
                in_call.set()
                caller["got"].append(unary(key.encode()))
            else:
                responses = stream(key.encode())
                caller["got"].append(next(responses).decode())
                in_call.set()
                caller["got"].append(next(responses).decode())  # blocks

        victim = gevent.spawn(call_and_block)
        S.check(in_call.wait(5), "the victim never got into the call")
        S.wait_until(lambda: key in observations, message="handler never started")
        gevent.sleep(0.05)  # let the victim park in the engine
        S.check(not victim.dead, "the call ended by itself", caller, victim.exception)
        started = time.monotonic()
        victim.kill(block=True, timeout=5)
        S.check(victim.dead, "the victim did not die within 5 s")
        S.check(
            victim.exception is None and isinstance(victim.value, greenlet.GreenletExit),
            "the victim did not die of GreenletExit",
            victim.exception,
            victim.value,
        )
        caller["raised"] = type(victim.value).__name__
        S.check(
            caller["got"] == ([] if case == "kill_unary" else ["first"]),
            "responses before the kill",
            caller["got"],
        )
    else:
        raise SystemExit("unknown case %r" % case)

    if case.startswith("timeout"):
        S.check(caller["raised"] == "Timeout", "the caller did not get its gevent.Timeout", caller)
        S.check(
            caller["got"] == ([] if case == "timeout_unary" else ["first"]),
            "responses before the timeout",
            caller["got"],
        )

    interrupted_after = time.monotonic() - started
    S.check(
        interrupted_after < PROMPT, "the caller was not interrupted promptly (s)", interrupted_after
    )

    # The server side: the handler must see the call end, long before it
    # would give up by itself.
    S.wait_until(
        lambda: observations.get(key, {}).get("ended"),
        timeout=PROMPT,
        message="the handler never saw the call end",
    )
    obs = observations[key]
    S.check(obs["started"] and obs["active_at_start"], "handler start", obs)
    S.check(obs["saw_inactive"], "context.is_active() stayed True", obs)
    S.wait_until(
        lambda: obs["callback_ran"], timeout=PROMPT, message="the add_callback callback never ran"
    )
    S.check(obs["callback_saw_inactive"], "callback saw is_active() True", obs)

    # The channel is still good, and the interrupted call left nothing behind.
    S.check(pong(b"after", timeout=10) == b"pong after", "ping after")
    gevent.sleep(0.3)  # a Timeout that leaked would fire in here
    S.check(pong(b"later", timeout=10) == b"pong later", "ping later")

    channel.close()
    server.stop(None)
    obs = {k: v for k, v in obs.items() if k != "callback_at"}
    return {
        "hub": kind,
        "case": case,
        "caller": caller,
        "server": obs,
        "interrupted_after": interrupted_after,
    }


if __name__ == "__main__":
    S.run(main, sys.argv[1])
