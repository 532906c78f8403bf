"""A ``torch_cluster`` drop-in on pointlib's kernels: ``knn``, ``knn_graph``, ``radius``,
``radius_graph``, ``fps`` and ``nearest`` with torch-cluster 1.6's signatures.

>>> import pointlib.interop.torch_cluster as tc
>>> tc.install()          # sys.modules["torch_cluster"] = this module (and PyG's references)
>>> import torch_geometric.transforms as T  # KNNGraph, RadiusGraph, ... now run on pointlib

Edges follow torch-cluster: ``knn`` / ``radius`` return ``(2, E)`` with row 0 the index into
``y`` (the query) and row 1 the index into ``x``, grouped by query in ascending order;
``*_graph`` return ``[source, target]`` for ``flow="source_to_target"`` (``[neighbour, centre]``)
and the swapped rows for ``"target_to_source"``.

Differences from torch-cluster 1.6.3 (each is tested in ``tests/interop/test_torch_cluster.py``):

* **Ties**: neighbours of a query come in ascending ``(dist2, index)``; equal distances keep the
  lower index (torch-cluster's order among ties depends on its kd-tree / thread schedule).
* **Strict radius**, as torch-cluster: a point is within ``r`` when ``dist2 < r**2`` (pointlib
  rounds ``r**2`` once to the compute dtype; a point exactly on the sphere is out in both).
* **max_num_neighbors** keeps the members with the **lowest indices** (torch-cluster: "picked
  randomly", in practice kd-tree or scan order); it is always honoured.
* ``knn_graph(loop=False)`` drops only the query itself and keeps ``k`` other points even when
  exact duplicates of the query exist; ``radius_graph(loop=False)`` never returns a self-loop.
* **Unsorted batch vectors** are accepted (torch-cluster requires sorted ones and silently
  returns wrong edges otherwise).
* float16 / bfloat16 inputs are computed in float32 (torch-cluster's CPU kernels reject them).
* ``cosine=True`` ranks by the Euclidean distance of the L2-normalised rows
  (``|a/|a| - b/|b||^2 = 2 - 2 cos``, the same order up to rounding); zero rows stay zero.
* ``num_workers`` is accepted and ignored (pointlib's CPU kernels use torch's intra-op threads).
* ``fps(random_start=True)`` draws each graph's start from torch's global RNG
  (``torch.randint``), not from C ``rand()``; ``random_start=False`` starts at each graph's
  first row, as torch-cluster does, and then matches it wherever distance rounding agrees.
* ``nearest`` uses the exact distances of the contract; torch-cluster's CPU ``nearest``
  rescales the inputs to ``[0, 1]`` and calls scipy, so near-ties can resolve differently.
* Everything else torch-cluster exports (``grid_cluster``, ``graclus_cluster``,
  ``random_walk``, ``neighbor_sampler``) raises :class:`NotImplementedError` naming it.

Serving PyG >= 2.8: it prefers ``pyg-lib`` for ``knn``/``radius`` when installed but still
falls back to ``torch_geometric.typing.torch_cluster``, which :func:`install` patches; a PyG
without that fallback would need pointlib registered as a pyg-lib provider instead.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import torch
from torch import Tensor

from pointlib.ops.ragged import ball_query_ragged, fps_ragged, knn_ragged

__all__ = [
    "fps",
    "install",
    "knn",
    "knn_graph",
    "nearest",
    "radius",
    "radius_graph",
    "uninstall",
]

#: Mirrors ``torch_cluster.__version__`` for code that checks it (the API level emulated).
__version__ = "1.6.3"
_FLOWS = ("source_to_target", "target_to_source")


def _rows(x: Tensor) -> Tensor:
    return x.view(-1, 1) if x.dim() == 1 else x


def _normalise(x: Tensor) -> Tensor:
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def _edges(idx: Tensor) -> Tensor:
    """``(M, K)`` neighbour table with ``-1`` padding -> ``(2, E)`` ``[query, neighbour]``."""
    M, K = idx.shape
    rows = torch.arange(M, device=idx.device).repeat_interleave(K)
    if idx.numel() == 0 or int(idx.min()) >= 0:  # no padding: no masking pass
        return torch.stack([rows, idx.reshape(-1)])
    valid = (idx >= 0).reshape(-1)
    return torch.stack([rows[valid], idx.reshape(-1)[valid]])


def _check_flow(flow: str) -> None:
    if flow not in _FLOWS:
        raise ValueError(f"flow={flow!r} must be one of {', '.join(_FLOWS)}")


def knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
    cosine: bool = False,
    num_workers: int = 1,
    batch_size: int | None = None,
) -> Tensor:
    """For each row of ``y (M, F)``, its ``k`` nearest rows of ``x (N, F)`` in the same graph.

    ``batch_x (N,)`` / ``batch_y (M,)`` assign rows to graphs (sorted or not); ``batch_size``
    is the number of graphs. Returns ``(2, E)`` int64 ``[index into y, index into x]``, per
    query ascending by ``(distance, index)``; a graph with fewer than ``k`` rows gives fewer.
    """
    if x.numel() == 0 or y.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long, device=x.device)
    x, y = _rows(x), _rows(y)
    if cosine:
        x, y = _normalise(x), _normalise(y)
    if batch_x is None and batch_y is not None and int(batch_y.max()) > 0:
        raise ValueError("batch_y is given but batch_x is not")
    if batch_y is None and batch_x is not None and int(batch_x.max()) > 0:
        raise ValueError("batch_x is given but batch_y is not")
    idx, _ = knn_ragged(x, k, y, batch_x=batch_x, batch_y=batch_y, batch_size=batch_size)
    return _edges(idx)


def knn_graph(
    x: Tensor,
    k: int,
    batch: Tensor | None = None,
    loop: bool = False,
    flow: str = "source_to_target",
    cosine: bool = False,
    num_workers: int = 1,
    batch_size: int | None = None,
) -> Tensor:
    """``k``-nearest-neighbour graph of ``x (N, F)``: ``(2, N*k)`` edges (fewer in small graphs).

    ``loop=False`` excludes each point itself (exact duplicates of it are still neighbours).
    ``flow="source_to_target"`` returns ``[neighbour, centre]``.
    """
    _check_flow(flow)
    if x.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long, device=x.device)
    x = _rows(x)
    if cosine:
        x = _normalise(x)
    kk = k if loop else k + 1
    idx, _ = knn_ragged(x, kk, batch_x=batch, batch_size=batch_size)
    if not loop:  # drop the centre itself, then keep the first k others
        centre = torch.arange(idx.shape[0], device=idx.device)[:, None]
        if bool((idx[:, :1] == centre).all()):  # usual case: the centre comes first
            idx = idx[:, 1:]
        else:  # exact duplicates with lower rows come before the centre
            idx = torch.where(idx == centre, -1, idx)
            idx = torch.where((idx >= 0).cumsum(-1) <= k, idx, -1)
    row, col = _edges(idx)
    return torch.stack([col, row] if flow == "source_to_target" else [row, col])


def radius(
    x: Tensor,
    y: Tensor,
    r: float,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
    max_num_neighbors: int = 32,
    num_workers: int = 1,
    batch_size: int | None = None,
    ignore_same_index: bool = False,
) -> Tensor:
    """For each row of ``y``, the rows of ``x`` of its graph with ``dist2 < r**2``.

    At most ``max_num_neighbors`` per query: the ones with the lowest indices, ascending.
    ``ignore_same_index`` drops the pair ``(i, i)``. Returns ``(2, E)`` ``[y index, x index]``.
    """
    if x.numel() == 0 or y.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long, device=x.device)
    x, y = _rows(x), _rows(y)
    n = max_num_neighbors + (1 if ignore_same_index else 0)
    idx = ball_query_ragged(x, r, max(1, n), y, batch_x=batch_x, batch_y=batch_y,
                            batch_size=batch_size)  # fmt: skip
    if ignore_same_index:
        idx = _drop_self(idx, max_num_neighbors)
    elif max_num_neighbors == 0:
        idx = idx[:, :0]
    return _edges(idx)


def _drop_self(idx: Tensor, keep: int) -> Tensor:
    centre = torch.arange(idx.shape[0], device=idx.device)[:, None]
    idx = torch.where(idx == centre, -1, idx)
    return torch.where((idx >= 0).cumsum(-1) <= keep, idx, -1)


def radius_graph(
    x: Tensor,
    r: float,
    batch: Tensor | None = None,
    loop: bool = False,
    max_num_neighbors: int = 32,
    flow: str = "source_to_target",
    num_workers: int = 1,
    batch_size: int | None = None,
) -> Tensor:
    """Radius graph of ``x (N, F)``: edges to every row within ``r`` (strict), at most
    ``max_num_neighbors`` per centre (lowest indices first); ``loop=False`` removes self-loops.
    """
    _check_flow(flow)
    if x.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long, device=x.device)
    x = _rows(x)
    n = max_num_neighbors if loop else max_num_neighbors + 1
    idx = ball_query_ragged(x, r, max(1, n), batch_x=batch, batch_size=batch_size)
    ok = idx >= 0
    if not loop:  # drop the centre, keep at most max_num_neighbors others (one masked pass)
        ok &= idx != torch.arange(idx.shape[0], device=idx.device)[:, None]
        ok &= ok.cumsum(-1) <= max_num_neighbors
    elif max_num_neighbors == 0:
        ok &= False
    row, slot = ok.nonzero(as_tuple=True)
    col = idx[row, slot]
    return torch.stack([col, row] if flow == "source_to_target" else [row, col])


def fps(
    src: Tensor,
    batch: Tensor | None = None,
    ratio: float | Tensor | None = None,
    random_start: bool = True,
    batch_size: int | None = None,
    ptr: Tensor | list[int] | None = None,
) -> Tensor:
    """Farthest point sampling of ``ceil(ratio * n_b)`` rows per graph (``ratio`` default 0.5).

    ``batch (N,)`` (sorted or not) or ``ptr`` (offsets, a tensor or a list) give the graphs.
    Returns int64 row indices, graph after graph, each graph's in sampling order.
    """
    src = _rows(src)
    if ratio is None:
        ratio = 0.5
    # torch-cluster rounds the ratio to the input dtype before the float32 product
    r = ratio if isinstance(ratio, Tensor) else torch.tensor(float(ratio), dtype=src.dtype)
    if isinstance(ptr, list):
        ptr = torch.tensor(ptr, device=src.device)
    graphs_ptr = ptr
    if graphs_ptr is None and batch is not None:
        B = batch_size if batch_size is not None else (int(batch.max()) + 1 if batch.numel() else 1)
        counts = torch.bincount(batch, minlength=B)
    elif graphs_ptr is not None:
        counts = graphs_ptr.diff()
    else:
        counts = torch.tensor([src.shape[0]], device=src.device)
    if random_start:
        start = (torch.rand(counts.numel(), device=src.device) * counts).long()
        start = torch.minimum(start, (counts - 1).clamp(min=0))
    else:
        start = 0
    return fps_ragged(src, ratio=r.to(src.device, torch.float32) if r.dim() else float(r),
                      batch=batch if ptr is None else None, ptr=ptr, batch_size=batch_size,
                      start=start)  # fmt: skip


def nearest(
    x: Tensor,
    y: Tensor,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
) -> Tensor:
    """For each row of ``x``, the index of its nearest row of ``y`` in the same graph
    (``(N,)`` int64; ties to the lower index)."""
    x, y = _rows(x), _rows(y)
    idx, _ = knn_ragged(y, 1, x, batch_x=batch_y, batch_y=batch_x)
    if bool((idx[:, 0] < 0).any()):
        raise ValueError("some graph of x has no rows in y")
    return idx[:, 0]


def _unsupported(name: str):
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"pointlib.interop.torch_cluster does not implement torch_cluster.{name}; "
            "install torch-cluster for it"
        )

    fn.__name__ = name
    return fn


grid_cluster = _unsupported("grid_cluster")
graclus_cluster = _unsupported("graclus_cluster")
random_walk = _unsupported("random_walk")
neighbor_sampler = _unsupported("neighbor_sampler")

# PyG passes batch_size when "batch_size" occurs in knn.__doc__ (it does, above).
_saved: list[tuple[Any, str, Any]] = []
_MISSING = object()
_API = (
    "knn", "knn_graph", "radius", "radius_graph", "fps", "nearest",
    "grid_cluster", "graclus_cluster", "random_walk", "neighbor_sampler",
)  # fmt: skip


def install() -> types.ModuleType:
    """Make ``import torch_cluster`` (and an already imported torch-geometric) use this module.

    Sets ``sys.modules["torch_cluster"]`` and, when ``torch_geometric.typing`` is loaded, its
    ``torch_cluster``, ``WITH_TORCH_CLUSTER`` and ``WITH_TORCH_CLUSTER_BATCH_SIZE``, plus every
    loaded ``torch_geometric`` module's own ``torch_cluster`` reference. Call
    :func:`uninstall` to restore the previous state. Returns this module.
    """
    this = sys.modules[__name__]
    prev = sys.modules.get("torch_cluster")
    _saved.append((sys.modules, "torch_cluster", prev))
    sys.modules["torch_cluster"] = this
    for name, mod in list(sys.modules.items()):
        if not name.startswith("torch_geometric") or mod is None:
            continue
        names = vars(mod)
        if "torch_cluster" in names and names["torch_cluster"] is not this:
            _saved.append((mod, "torch_cluster", names["torch_cluster"]))
            mod.torch_cluster = this
        for flag in ("WITH_TORCH_CLUSTER", "WITH_TORCH_CLUSTER_BATCH_SIZE"):
            if flag in names:
                _saved.append((mod, flag, names[flag]))
                setattr(mod, flag, True)
        # `from torch_cluster import knn` bound at import time (or `knn = None` without it)
        for fn in _API:
            old = names.get(fn, _MISSING)
            if old is None or str(getattr(old, "__module__", "") or "").startswith("torch_cluster"):
                _saved.append((mod, fn, old))
                setattr(mod, fn, getattr(this, fn))
    return this


def uninstall() -> None:
    """Undo every :func:`install` (restores ``sys.modules`` and torch-geometric's references)."""
    while _saved:
        target, key, value = _saved.pop()
        if target is sys.modules:
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
        else:
            setattr(target, key, value)
