"""Serve torch-geometric >= 2.8 from pointlib: the ``torch.ops.pyg`` point ops of pyg-lib.

torch-geometric 2.8 removed its torch-cluster path: ``knn``, ``knn_graph``, ``radius``,
``radius_graph``, ``fps`` and ``nearest`` (and the layers and transforms built on them:
``DynamicEdgeConv``, ``GravNetConv``, ``XConv``, ``KNNGraph``, ``knn_interpolate``, ...) check
``torch_geometric.typing.WITH_KNN`` / ``WITH_RADIUS`` / ``WITH_FPS`` / ``WITH_NEAREST`` and call
``torch.ops.pyg.knn`` / ``radius`` / ``fps`` / ``nearest``, which only the pyg-lib wheels provide
(not on PyPI; built for a few torch releases). :func:`install` registers those four operators
on pointlib's ragged kernels and sets the four flags:

>>> import pointlib.interop.pyg_lib as pl
>>> pl.install()                      # before or after `import torch_geometric`
>>> from torch_geometric.nn import knn_graph   # now runs on pointlib

Operator contracts (pyg-lib 0.6, as torch-geometric 2.8 calls them; ``ptr`` is ``None`` for a
single graph, else the ``(B + 1,)`` row offsets of graphs sorted by row):

=====================================================================  ==========================
operator                                                               returns
=====================================================================  ==========================
``knn(x (N, F), y (M, F), ptr_x, ptr_y, k, cosine, num_workers)``      ``(2, E)`` ``[y row, x row]``
``radius(x, y, ptr_x, ptr_y, r, max_num_neighbors, num_workers,``      ``(2, E)`` ``[y row, x row]``
``       ignore_same_index)``
``fps(src (N, F), ptr, ratio, random_start)``                          ``(S,)`` rows, per graph
``nearest(x, y, ptr_x, ptr_y)``                                        ``(N,)`` row of ``y``
=====================================================================  ==========================

Semantics are those of :mod:`pointlib.interop.torch_cluster` (ties to the lower row, strict
radius, ``max_num_neighbors`` keeps the lowest rows, float16/bfloat16 computed in float32,
``num_workers`` ignored); see docs/pyg.md for every difference from the native kernels.

Operators cannot be unregistered from torch; :func:`uninstall` restores the four flags (so
torch-geometric raises its own "requires pyg-lib" error again) and the operators then refuse
to run. When a real pyg-lib already defines the operators, :func:`install` leaves them alone
unless ``force=True`` (then the flags are set, and pointlib's operators are not registered).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor

from pointlib.interop import torch_cluster as _tc

__all__ = ["OPS", "install", "installed", "uninstall"]

#: The ``torch.ops.pyg`` operators this module provides, and the torch-geometric flags they set.
OPS = {"knn": "WITH_KNN", "radius": "WITH_RADIUS", "fps": "WITH_FPS", "nearest": "WITH_NEAREST"}

_state: dict[str, Any] = {"registered": False, "active": False, "saved": {}}
_lib: torch.library.Library | None = None


def _batch(ptr: Tensor | None, rows: int, device: torch.device) -> Tensor | None:
    """``ptr (B + 1,)`` offsets -> a ``(rows,)`` graph id per row (``None`` stays ``None``)."""
    if ptr is None:
        return None
    ptr = ptr.to(device=device, dtype=torch.long)
    if ptr.dim() != 1 or ptr.numel() < 1 or int(ptr[0]) != 0 or int(ptr[-1]) != rows:
        raise ValueError(
            f"ptr must be 1-D offsets from 0 to {rows} rows, got {ptr.tolist()[:6]} "
            f"(shape {tuple(ptr.shape)})"
        )
    if bool((ptr.diff() < 0).any()):
        raise ValueError(f"ptr must be non-decreasing, got {ptr.tolist()[:6]}")
    return torch.repeat_interleave(torch.arange(ptr.numel() - 1, device=device), ptr.diff())


def _check_active(name: str) -> None:
    if not _state["active"]:
        raise RuntimeError(
            f"torch.ops.pyg.{name} is pointlib's shim, which is uninstalled; call "
            "pointlib.interop.pyg_lib.install() again (or install pyg-lib)"
        )


def _knn(
    x: Tensor, y: Tensor, ptr_x: Tensor | None, ptr_y: Tensor | None, k: int, cosine: bool,
    num_workers: int,
) -> Tensor:  # fmt: skip
    _check_active("knn")
    bx, by = _batch(ptr_x, x.shape[0], x.device), _batch(ptr_y, y.shape[0], y.device)
    size = None if ptr_x is None else ptr_x.numel() - 1
    return _tc.knn(x, y, k, bx, by, cosine=cosine, batch_size=size)


def _radius(
    x: Tensor, y: Tensor, ptr_x: Tensor | None, ptr_y: Tensor | None, r: float,
    max_num_neighbors: int, num_workers: int, ignore_same_index: bool,
) -> Tensor:  # fmt: skip
    _check_active("radius")
    bx, by = _batch(ptr_x, x.shape[0], x.device), _batch(ptr_y, y.shape[0], y.device)
    size = None if ptr_x is None else ptr_x.numel() - 1
    return _tc.radius(
        x, y, r, bx, by, max_num_neighbors=max_num_neighbors, batch_size=size,
        ignore_same_index=ignore_same_index,
    )  # fmt: skip


def _fps(src: Tensor, ptr: Tensor, ratio: float, random_start: bool) -> Tensor:
    _check_active("fps")
    _batch(ptr, src.shape[0], src.device)  # validates the offsets
    return _tc.fps(src, ratio=float(ratio), random_start=random_start,
                   ptr=ptr.to(src.device, torch.long))  # fmt: skip


def _nearest(x: Tensor, y: Tensor, ptr_x: Tensor | None, ptr_y: Tensor | None) -> Tensor:
    _check_active("nearest")
    bx, by = _batch(ptr_x, x.shape[0], x.device), _batch(ptr_y, y.shape[0], y.device)
    return _tc.nearest(x, y, bx, by)


_SCHEMAS = {
    "knn": "knn(Tensor x, Tensor y, Tensor? ptr_x, Tensor? ptr_y, int k, bool cosine, "
    "int num_workers) -> Tensor",
    "radius": "radius(Tensor x, Tensor y, Tensor? ptr_x, Tensor? ptr_y, float r, "
    "int max_num_neighbors, int num_workers, bool ignore_same_index) -> Tensor",
    "fps": "fps(Tensor src, Tensor ptr, float ratio, bool random_start) -> Tensor",
    "nearest": "nearest(Tensor x, Tensor y, Tensor? ptr_x, Tensor? ptr_y) -> Tensor",
}
_IMPLS = {"knn": _knn, "radius": _radius, "fps": _fps, "nearest": _nearest}


def _defined(name: str) -> bool:
    try:
        getattr(torch.ops.pyg, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _register() -> None:
    global _lib
    if _state["registered"]:
        return
    _lib = torch.library.Library("pyg", "FRAGMENT")  # kept alive: dropping it unregisters
    for name, schema in _SCHEMAS.items():
        _lib.define(schema)
        _lib.impl(name, _IMPLS[name], "CompositeExplicitAutograd")
    _state["registered"] = True


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return bool(_state["active"])


def install(*, force: bool = False) -> None:
    """Register ``torch.ops.pyg.{knn, radius, fps, nearest}`` on pointlib and set PyG's flags.

    Imports ``torch_geometric.typing`` (torch-geometric must be installed) and sets
    ``WITH_KNN``, ``WITH_RADIUS``, ``WITH_FPS`` and ``WITH_NEAREST`` to ``True``; torch-geometric
    reads them on every call, so layers created before :func:`install` use it too. For
    torch-geometric < 2.8 (which calls ``torch_cluster``) use
    :func:`pointlib.interop.torch_cluster.install` instead.

    Args:
        force: also when a real pyg-lib already defines some of these operators (its
            operators then stay in use; only the flags are set).

    Raises:
        ImportError: torch-geometric is not installed.
        RuntimeError: a real pyg-lib defines the operators and ``force`` is False.
    """
    foreign = [n for n in OPS if _defined(n)] if not _state["registered"] else []
    if foreign and not force:
        raise RuntimeError(
            f"torch.ops.pyg already defines {foreign} (pyg-lib is installed); pointlib's shim "
            "is not needed. Pass force=True to only set torch_geometric's flags."
        )
    if not foreign:
        _register()
    _state["active"] = True
    _set_flags()


def _set_flags() -> None:
    try:
        import torch_geometric.typing as typing
    except ImportError as e:
        raise ImportError(
            "pointlib.interop.pyg_lib.install() serves torch-geometric, which is not "
            "installed: pip install torch-geometric"
        ) from e
    for flag in OPS.values():
        if flag not in _state["saved"]:
            _state["saved"][flag] = getattr(typing, flag, None)
        setattr(typing, flag, True)


def uninstall() -> None:
    """Restore torch-geometric's flags and disable pointlib's ``torch.ops.pyg`` operators."""
    typing = sys.modules.get("torch_geometric.typing")
    if typing is not None:
        for flag, value in _state["saved"].items():
            setattr(typing, flag, value)
    _state["saved"] = {}
    _state["active"] = False
