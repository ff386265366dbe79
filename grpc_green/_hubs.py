"""Which hub a thread runs on: grpc_green's own (native) or gevent's.

Each OS thread gets one hub, the first time something in that thread needs
it (a channel, a server, a call, ``grpc_green.hub``). The choice:

* ``"auto"`` (the default): gevent's hub when gevent has patched the process
  (``gevent.monkey.is_module_patched("socket")``) or a gevent hub already
  exists in this thread; grpc_green's native hub otherwise. gevent is never
  imported by this check: a process that has not imported it runs native.
* ``"native"`` / ``"gevent"``: forced, by ``grpc_green.hub.use(kind)`` or by
  the ``GRPC_GREEN_HUB`` environment variable read at import.

A thread never runs two loops: once its hub exists the choice is fixed, and
forcing the native hub in a thread where gevent's hub already exists, or
in a process gevent has patched, is refused.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Literal

from grpc_green import _core

KINDS = ("auto", "native", "gevent")


def _policy_from_env() -> str:
    value = os.environ.get("GRPC_GREEN_HUB", "auto").strip().lower() or "auto"
    if value not in KINDS:
        raise ImportError("GRPC_GREEN_HUB must be one of %s, not %r" % (", ".join(KINDS), value))
    return value


_policy = _policy_from_env()


def _gevent_hub_in_this_thread() -> Any:
    """gevent's hub of this thread if one exists (without creating one)."""
    if "gevent" not in sys.modules:
        return None
    try:
        from gevent._hub_local import get_hub_if_exists
    except ImportError:  # gevent before 20.x (its stubs describe the current one)
        from gevent.hub import _get_hub as get_hub_if_exists  # type: ignore[attr-defined,no-redef]
    return get_hub_if_exists()


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def _select() -> Any:
    """Called by the engine once per thread: None for the native hub, or the
    gevent hub to run on."""
    if _policy == "native":
        if _gevent_patched() or _gevent_hub_in_this_thread() is not None:
            # grpc_green's loop would stall gevent's whenever it waits.
            raise RuntimeError(
                "grpc_green: the native hub was forced (GRPC_GREEN_HUB or hub.use), but "
                "gevent has patched this process or runs its hub in this thread; one "
                "thread never runs two loops"
            )
        return None
    if _policy == "gevent" or _gevent_patched() or _gevent_hub_in_this_thread() is not None:
        import gevent

        from grpc_green import _monitor

        hub = gevent.get_hub()
        _monitor.gevent_hub_selected()  # gevent's monitor watches it, if on
        return hub
    return None


def use(kind: Literal["auto", "native", "gevent"]) -> None:
    """Chooses the hub for threads that have none yet: ``"native"``,
    ``"gevent"`` or ``"auto"``. Raises RuntimeError if this thread already
    runs a hub of another kind."""
    global _policy
    if kind not in KINDS:
        raise ValueError("hub kind must be one of %s, not %r" % (", ".join(KINDS), kind))
    current = _core.hub_kind()
    if current is not None and kind != "auto" and kind != current:
        raise RuntimeError(
            "grpc_green: this thread already runs the %s hub; choose the hub before "
            "the first channel, server or hub call" % current
        )
    if kind == "gevent":
        import gevent  # noqa: F401  (fail here, not at first use)
    _policy = kind


def kind() -> Literal["native", "gevent"]:
    """``"native"`` or ``"gevent"``: this thread's hub (made now if needed)."""
    return _core.hub_kind(True)


_core._set_hub_selector(_select)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_core._after_fork_in_child)
