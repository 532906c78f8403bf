"""Backend registry and selection for the point ops.

A backend is a name plus a table ``op -> callable`` and a ``can_run(op, tensor)`` predicate that
returns ``(ok, why)``. Selection happens at call time:

* ``backend="auto"`` (or the ``POINTLIB_BACKEND`` environment variable, read on every call, when
  the argument is ``"auto"``) tries the device's compiled backend first and falls back to ``torch``;
* an explicit backend is used or fails with :class:`BackendUnavailableError`; it never silently
  downgrades.

The ``torch`` reference backend is always available and defines the semantics.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

log = logging.getLogger(__name__)

OPS = ("knn", "ball_query", "fps")


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run this call (message says why and how to fix)."""


@dataclass
class Backend:
    """A set of op implementations sharing one availability rule."""

    name: str
    impls: dict[str, Callable] = field(default_factory=dict)
    # can_run(op, device_type, dtype, params) -> (ok, why); params holds op sizes such as k.
    can_run: Callable[..., tuple[bool, str]] = lambda op, device_type, dtype, params: (True, "")
    auto_devices: tuple[str, ...] = ()  # device types for which `auto` tries this backend first
    hint: str = ""  # how to make it available


_BACKENDS: dict[str, Backend] = {}
_warned: set[str] = set()


def register_backend(backend: Backend) -> None:
    """Add or replace a backend."""
    _BACKENDS[backend.name] = backend


def registered_backends() -> list[str]:
    return list(_BACKENDS)


def available_backends(op: str | None = None, device: str = "cpu") -> list[str]:
    """Names of the backends that can run ``op`` (any op when None) on ``device`` now."""
    import torch

    names = []
    for b in _BACKENDS.values():
        ops = [op] if op else list(b.impls)
        if any(o in b.impls and b.can_run(o, device, torch.float32, {})[0] for o in ops):
            names.append(b.name)
    return names


def select(op: str, x: Tensor, backend: str, **params) -> tuple[str, Callable]:
    """Return ``(name, impl)`` of the backend that runs ``op`` for tensor ``x``.

    ``params`` are the op's sizes (e.g. ``k=32``) for backends with limits.
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    requested = backend
    if backend == "auto":
        backend = os.environ.get("POINTLIB_BACKEND", "auto").strip() or "auto"
    if backend != "auto":
        if backend not in _BACKENDS:
            raise ValueError(
                f"unknown backend {backend!r} (from "
                f"{'POINTLIB_BACKEND' if requested == 'auto' else 'backend='}); "
                f"registered: {', '.join(_BACKENDS)}"
            )
        b = _BACKENDS[backend]
        if op not in b.impls:
            raise BackendUnavailableError(f"backend {backend!r} does not implement {op}")
        ok, why = b.can_run(op, x.device.type, x.dtype, params)
        if not ok:
            # the build hint only helps when the backend cannot run this op at any size
            hint = "" if b.can_run(op, x.device.type, x.dtype, {})[0] else b.hint
            raise BackendUnavailableError(
                f"backend {backend!r} cannot run {op} here: {why}. {hint}".strip()
            )
        return backend, b.impls[op]
    order = [b for b in _BACKENDS.values() if x.device.type in b.auto_devices]
    order.append(_BACKENDS["torch"])
    for b in order:
        if op not in b.impls:
            continue
        ok, why = b.can_run(op, x.device.type, x.dtype, params)
        if ok:
            if b.name == "torch" and x.device.type == "cuda" and "cuda" not in _warned:
                _warned.add("cuda")
                warnings.warn(
                    "pointlib: no compiled CUDA kernels, using the pure-torch backend on GPU "
                    "(correct but slower). " + _BACKENDS.get("cuda", Backend("cuda")).hint,
                    RuntimeWarning,
                    stacklevel=3,
                )
            return b.name, b.impls[op]
        log.debug("pointlib.%s: skipping backend %s: %s", op, b.name, why)
    raise AssertionError("the torch backend always runs")  # pragma: no cover
