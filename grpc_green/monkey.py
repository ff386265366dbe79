"""Make ``import grpc`` resolve to grpc_green.

Call ``patch_grpc()`` once, early, before importing generated ``_pb2_grpc``
modules (or any other code that does ``import grpc``)::

    from grpc_green import monkey
    monkey.patch_grpc()

    import helloworld_pb2_grpc          # its ``import grpc`` is grpc_green
    import grpc                         # so is this

After patching:

* ``sys.modules['grpc']`` is the ``grpc_green`` package;
* ``grpc._utilities`` and ``grpc.experimental`` (the submodules generated
  code and typical applications touch) are ``grpc_green._utilities`` and
  ``grpc_green.experimental``;
* any other ``import grpc.<name>`` gives ``grpc_green.<name>`` if grpc_green
  has such a module (the very same module object, never a second copy), and
  fails with ModuleNotFoundError otherwise (e.g. ``grpc.aio``).

Patching is a change of ``sys.modules``: it cannot reach into modules that
imported the real grpcio before the patch. Those keep their reference to
grpcio (and grpcio's classes, so their ``except grpc.RpcError`` will not catch
grpc_green's errors). If grpcio was already imported, ``patch_grpc()`` still
replaces the entries, drops grpcio's ``grpc.*`` submodule entries from
``sys.modules`` so that later imports do not mix the two, and issues a
RuntimeWarning. Patch before anything imports grpc to avoid that.

gevent applications can have ``gevent.monkey.patch_all()`` do it::

    from gevent import monkey
    monkey.patch_all(grpc=True)

grpc_green registers itself as a gevent monkey-patching plugin (the
``gevent.plugins.monkey.did_patch_all`` entry point); ``grpc=True`` is passed
through ``patch_all``'s extra keyword arguments to it. ``patch_grpc()`` may
also be called by hand, before or after ``patch_all()``: which loop grpc_green
runs on is decided per thread at first use, not at patch time.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__all__ = ("is_grpc_patched", "patch_grpc")

# Submodules installed eagerly: generated code imports these by name.
_EAGER_SUBMODULES = ("_utilities", "experimental")

_lock = threading.RLock()


def _is_grpc_green_module(module: object) -> bool:
    name = getattr(module, "__name__", None)
    return isinstance(name, str) and (name == "grpc_green" or name.startswith("grpc_green."))


def _patch_active() -> bool:
    green = sys.modules.get("grpc_green")
    return green is not None and sys.modules.get("grpc") is green


class _AliasLoader(importlib.abc.Loader):
    """Loads ``grpc.<name>`` by importing ``grpc_green.<name>`` and putting
    that module in ``sys.modules`` in place of the placeholder."""

    def __init__(self, real_name: str) -> None:
        self._real_name = real_name

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        real = importlib.import_module(self._real_name)
        # The import system returns whatever sys.modules holds for the name
        # after exec_module, so the caller receives the grpc_green module.
        sys.modules[module.__name__] = real


class _GrpcAliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``grpc.<name>`` to ``grpc_green.<name>`` while patched."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if not fullname.startswith("grpc.") or not _patch_active():
            return None
        real_name = "grpc_green." + fullname[len("grpc.") :]
        if real_name not in sys.modules:
            try:
                if importlib.util.find_spec(real_name) is None:
                    return None
            except (ImportError, ValueError):
                return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(real_name))


def is_grpc_patched() -> bool:
    """Whether ``import grpc`` currently resolves to grpc_green."""
    return _patch_active()


def patch_grpc() -> ModuleType:
    """Make ``import grpc`` (and ``grpc._utilities``, ``grpc.experimental``,
    ...) resolve to grpc_green. Returns the ``grpc_green`` module.

    Idempotent: once patched, further calls change nothing and return the
    same module. Modules that imported the real grpcio earlier keep it (see
    the module docstring); a RuntimeWarning is issued in that case.
    """
    import grpc_green

    with _lock:
        if _patch_active() and any(
            isinstance(finder, _GrpcAliasFinder) for finder in sys.meta_path
        ):
            return grpc_green

        previous = sys.modules.get("grpc")
        if previous is not None and previous is not grpc_green:
            warnings.warn(
                "grpc_green.monkey.patch_grpc() called after the real grpc "
                "package was imported; modules that already imported it keep "
                "using grpcio. Call patch_grpc() before anything imports grpc.",
                RuntimeWarning,
                stacklevel=2,
            )

        # Forget grpcio's submodules so later imports cannot mix the two.
        for name in list(sys.modules):
            if name.startswith("grpc.") and not _is_grpc_green_module(sys.modules.get(name)):
                del sys.modules[name]

        submodules = {
            "grpc." + sub: importlib.import_module("grpc_green." + sub) for sub in _EAGER_SUBMODULES
        }
        sys.modules["grpc"] = grpc_green
        sys.modules.update(submodules)

        if not any(isinstance(f, _GrpcAliasFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _GrpcAliasFinder())
        return grpc_green


def _gevent_did_patch_all(event: Any) -> None:
    """gevent's ``did_patch_all`` plugin hook: ``patch_all(grpc=True)``
    patches grpc too."""
    if event.patch_all_kwargs.get("grpc"):
        patch_grpc()
