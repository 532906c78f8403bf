"""Ragged (PyG-style) point ops: flat ``(N, D)`` inputs split into graphs by ``batch`` or ``ptr``.

=====================  ==================================================================
``knn_ragged``         ``k`` nearest rows of the query's graph; ``-1`` / ``inf`` padding
``ball_query_ragged``  first ``nsample`` rows of the graph with ``dist2 < r2``; ``-1`` padding
``fps_ragged``         farthest point sampling per graph (``ratio`` or ``npoint`` per graph)
=====================  ==================================================================

Graphs are given by a ``batch`` vector (``(N,)`` graph id of each row, sorted **or not**) or by
``ptr`` (``(B + 1,)`` offsets of rows sorted by graph). The kernels work on rows sorted by graph;
an unsorted ``batch`` is stably sorted first (one ``argsort``, no loop over graphs) and the results
are mapped back, so every index refers to the caller's rows and ties still go to the lower row
(a stable sort keeps the order inside a graph). Any dimension ``D >= 1`` is accepted (the ``cuda``
kernels up to :data:`~pointlib.ops._ext_backends.CUDA_MAX_D`, ``auto`` falls back beyond).

dtypes: float32 / float64 are computed in their own precision; **float16 / bfloat16 are upcast
to float32** (exactly) and ``dist2`` comes back as float32. Indices are int64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pointlib.ops._dispatch import select
from pointlib.ops._validate import check_int

HALF_DTYPES = (torch.float16, torch.bfloat16)
DTYPES = (torch.float32, torch.float64, *HALF_DTYPES)

__all__ = ["ball_query_ragged", "fps_ragged", "knn_ragged", "resolve_graphs"]


def check_rows(x: object, name: str) -> Tensor:
    """Check an ``(N, D)`` floating tensor (``D >= 1``, ``N >= 0``) with finite entries."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, D) with D >= 1, got {tuple(x.shape)}")
    if x.device.type != "meta" and x.numel():
        lo, hi = torch.aminmax(x)  # one pass; NaN propagates, Inf shows as an extreme
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            row = int((~torch.isfinite(x)).any(-1).nonzero()[0, 0])
            raise ValueError(f"{name} contains NaN or Inf (first at row {row})")
    return x


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype distances are computed (and returned) in: float32 for half inputs."""
    return torch.float32 if dtype in HALF_DTYPES else dtype


class Graphs:
    """Rows of one input split into graphs: sorted order, offsets and the way back."""

    def __init__(self, n: int, ptr: Tensor, perm: Tensor | None) -> None:
        self.n, self.ptr, self.perm = n, ptr, perm  # perm: sorted position -> caller row

    def sort(self, x: Tensor) -> Tensor:
        return x if self.perm is None else x[self.perm]

    def rows(self, idx: Tensor) -> Tensor:
        """Sorted-row indices (``-1`` kept) -> the caller's row indices."""
        if self.perm is None:
            return idx
        return torch.where(idx >= 0, self.perm[idx.clamp(min=0)], idx)

    def unsort(self, out: Tensor) -> Tensor:
        """Per-row results in sorted order -> the caller's row order."""
        if self.perm is None:
            return out
        res = torch.empty_like(out)
        res[self.perm] = out
        return res


def _check_index_vector(v: object, name: str, n: int | None, device: torch.device) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if v.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name} must be an integer tensor, got {v.dtype}")
    if v.dim() != 1 or (n is not None and v.shape[0] != n):
        want = f"({n},)" if n is not None else "1-D"
        raise ValueError(f"{name} must have shape {want}, got {tuple(v.shape)}")
    if v.device != device:
        raise ValueError(f"{name} is on {v.device} but the points are on {device}")
    return v.long()


def resolve_graphs(
    n: int,
    device: torch.device,
    batch: Tensor | None,
    ptr: Tensor | None,
    num_graphs: int | None,
    name: str,
) -> Graphs:
    """Turn ``batch`` / ``ptr`` (or neither: one graph) into sorted offsets.

    ``num_graphs`` fixes ``B`` (else ``batch.max() + 1``, or ``ptr.numel() - 1``).
    """
    if batch is not None and ptr is not None:
        raise ValueError(f"give either batch_{name} or ptr_{name}, not both")
    if ptr is not None:
        ptr = _check_index_vector(ptr, f"ptr_{name}", None, device)
        if ptr.numel() < 1 or int(ptr[0]) != 0 or int(ptr[-1]) != n:
            raise ValueError(
                f"ptr_{name} must start at 0 and end at N={n}, got {ptr.tolist()[:4]}..."
                f"{ptr.tolist()[-2:]}"
            )
        if bool((ptr.diff() < 0).any()):
            raise ValueError(f"ptr_{name} must be non-decreasing")
        if num_graphs is not None and ptr.numel() - 1 != num_graphs:
            raise ValueError(f"ptr_{name} has {ptr.numel() - 1} graphs, expected {num_graphs}")
        return Graphs(n, ptr, None)
    if batch is None:
        B = 1 if num_graphs is None else num_graphs
        return Graphs(n, torch.tensor([0] + [n] * B, device=device), None)  # all in graph 0
    batch = _check_index_vector(batch, f"batch_{name}", n, device)
    if n and int(batch.min()) < 0:
        raise ValueError(f"batch_{name} has negative graph ids (min {int(batch.min())})")
    top = int(batch.max()) + 1 if n else 0
    B = top if num_graphs is None else num_graphs
    if top > B:
        raise ValueError(f"batch_{name} has graph id {top - 1} >= batch_size={B}")
    perm = None
    if n > 1 and bool((batch[1:] < batch[:-1]).any()):
        batch, perm = torch.sort(batch, stable=True)
    counts = torch.bincount(batch, minlength=B)
    ptr = torch.zeros(B + 1, dtype=torch.long, device=device)
    torch.cumsum(counts, 0, out=ptr[1:])
    return Graphs(n, ptr, perm)


def _pair(
    x: Tensor,
    y: Tensor | None,
    batch_x: Tensor | None,
    batch_y: Tensor | None,
    ptr_x: Tensor | None,
    ptr_y: Tensor | None,
    batch_size: int | None,
) -> tuple[Tensor, Tensor, Graphs, Graphs, bool]:
    check_rows(x, "x")
    self_query = y is None
    if y is None:
        y, batch_y, ptr_y = x, batch_x, ptr_x
    else:
        check_rows(y, "y")
        if y.device != x.device:
            raise ValueError(f"x is on {x.device} but y is on {y.device}")
        if y.dtype != x.dtype:
            raise TypeError(f"x is {x.dtype} but y is {y.dtype}")
        if y.shape[1] != x.shape[1]:
            raise ValueError(f"x has D={x.shape[1]} but y has D={y.shape[1]}")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    else:  # both sides must agree on B
        bx = (
            int(batch_x.max()) + 1
            if isinstance(batch_x, Tensor) and batch_x.numel()
            else (ptr_x.numel() - 1 if isinstance(ptr_x, Tensor) else 1)
        )
        by = (
            int(batch_y.max()) + 1
            if isinstance(batch_y, Tensor) and batch_y.numel()
            else (ptr_y.numel() - 1 if isinstance(ptr_y, Tensor) else 1)
        )
        if isinstance(ptr_x, Tensor) and isinstance(ptr_y, Tensor) and bx != by:
            raise ValueError(f"ptr_x has {bx} graphs but ptr_y has {by}")
        batch_size = max(bx, by)
    gx = resolve_graphs(x.shape[0], x.device, batch_x, ptr_x, batch_size, "x")
    gy = gx if self_query else resolve_graphs(y.shape[0], x.device, batch_y, ptr_y, batch_size, "y")
    cd = compute_dtype(x.dtype)
    xs = gx.sort(x).to(cd).contiguous()
    ys = xs if self_query else gy.sort(y).to(cd).contiguous()
    return xs, ys, gx, gy, self_query


def knn_ragged(
    x: Tensor,
    k: int,
    y: Tensor | None = None,
    *,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
    ptr_x: Tensor | None = None,
    ptr_y: Tensor | None = None,
    batch_size: int | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest rows of ``x`` (same graph) of every row of ``y``.

    Args:
        x: ``(N, D)`` points, any ``D >= 1``, float16/bfloat16/float32/float64.
        k: neighbours per query, ``>= 1`` (a graph with fewer rows gives fewer).
        y: ``(M, D)`` queries (same dtype and device); ``None`` queries ``x`` itself (each row
            is then its own first neighbour).
        batch_x, batch_y: ``(N,)`` / ``(M,)`` graph id per row, sorted or not.
        ptr_x, ptr_y: ``(B + 1,)`` offsets instead (rows sorted by graph).
        batch_size: number of graphs ``B`` (default: from ``batch``/``ptr``).
        backend: ``"auto"``, ``"torch"``, ``"cpu"``, ``"cuda"``.

    Returns:
        ``(idx, dist2)``, both ``(M, k)``: ``idx`` int64 rows of ``x`` ascending by
        ``(dist2, row)`` (ties to the lower row), ``-1`` where the graph has fewer than ``k``
        rows; ``dist2`` in the input dtype (float32 for half inputs), ``inf`` at padding.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [5.0], [6.0]])
        >>> knn_ragged(x, 2, batch_x=torch.tensor([0, 0, 1, 1]))[0].tolist()
        [[0, 1], [1, 0], [2, 3], [3, 2]]
    """
    xs, ys, gx, gy, _ = _pair(x, y, batch_x, batch_y, ptr_x, ptr_y, batch_size)
    k = check_int(k, "k", 1)
    _, impl = select("knn_ragged", xs, backend, k=k, d=xs.shape[1])
    idx, d2 = impl(xs, ys, gx.ptr, gy.ptr, k)
    return gy.unsort(gx.rows(idx)), gy.unsort(d2)


def _radius(radius: object) -> float:
    if isinstance(radius, Tensor):
        radius = float(radius)
    if not isinstance(radius, (int, float)) or isinstance(radius, bool):
        raise TypeError(f"radius must be a float, got {type(radius).__name__}")
    if not math.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius={radius} must be finite and > 0")
    return float(radius)


def ball_query_ragged(
    x: Tensor,
    radius: float,
    nsample: int,
    y: Tensor | None = None,
    *,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
    ptr_x: Tensor | None = None,
    ptr_y: Tensor | None = None,
    batch_size: int | None = None,
    backend: str = "auto",
) -> Tensor:
    """Up to ``nsample`` rows of ``x`` (same graph) within ``radius`` of every row of ``y``.

    Args:
        x, y, batch_x, batch_y, ptr_x, ptr_y, batch_size, backend: as for :func:`knn_ragged`.
        radius: finite, ``> 0``; membership is strict, ``dist2 < r2`` with ``r2 = radius**2``
            rounded once to the compute dtype.
        nsample: slots per query, ``>= 1``.

    Returns:
        ``idx (M, nsample)`` int64: the members with the lowest rows (in the caller's row
        order), ascending, then ``-1`` padding. Unlike :func:`pointlib.ops.ball_query` nothing is
        repeated and an empty ball stays empty.
    """
    xs, ys, gx, gy, _ = _pair(x, y, batch_x, batch_y, ptr_x, ptr_y, batch_size)
    radius = _radius(radius)
    nsample = check_int(nsample, "nsample", 1)
    _, impl = select("ball_query_ragged", xs, backend, nsample=nsample, d=xs.shape[1])
    idx = impl(xs, ys, gx.ptr, gy.ptr, radius, nsample)
    # The stable sort keeps each graph's rows in order, so the mapped members stay ascending.
    return gy.unsort(gx.rows(idx))


def fps_ragged(
    x: Tensor,
    *,
    ratio: float | None = None,
    npoint: int | None = None,
    batch: Tensor | None = None,
    ptr: Tensor | None = None,
    batch_size: int | None = None,
    start: Tensor | int = 0,
    backend: str = "auto",
) -> Tensor:
    """Farthest point sampling in every graph.

    Args:
        x: ``(N, D)`` points, any ``D >= 1``.
        ratio: sample ``ceil(ratio * n_b)`` rows of a graph of ``n_b`` rows (``0 < ratio <= 1``;
            a float, a 0-d tensor or one per graph ``(B,)``; the product is taken in float32, as
            torch-cluster does); or
        npoint: ``min(npoint, n_b)`` rows per graph.
        batch, ptr, batch_size: the graphs, as for :func:`knn_ragged` (``batch`` may be unsorted).
        start: first sample of each graph, as an index *within* the graph (in the graph's own row
            order); an int for all graphs or a ``(B,)`` tensor (e.g. random starts).
        backend: as for :func:`knn_ragged`.

    Returns:
        ``idx (S,)`` int64 rows of ``x``, graph after graph (graph 0's samples first, each graph's
        in sampling order). Each step takes the row farthest from the samples so far, ties to the
        lowest row of the graph.
    """
    check_rows(x, "x")
    if (ratio is None) == (npoint is None):
        raise ValueError("give exactly one of ratio or npoint")
    g = resolve_graphs(x.shape[0], x.device, batch, ptr, batch_size, "x")
    B = g.ptr.numel() - 1
    counts = g.ptr.diff()
    if ratio is not None:
        if isinstance(ratio, Tensor):  # 0-d, or (B,) per graph; product in float32
            if ratio.dim() > 1 or (ratio.dim() == 1 and ratio.numel() != B):
                raise ValueError(f"ratio must be a float, 0-d or ({B},), got {tuple(ratio.shape)}")
            r = ratio.to(counts.device)
            if not bool(((r > 0) & (r <= 1)).all()):
                raise ValueError("ratio must lie in (0, 1]")
            want = (counts.to(torch.float32) * r).ceil().long()
        else:
            if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 1:
                raise ValueError(f"ratio={ratio!r} must be a float in (0, 1]")
            want = (counts.to(torch.float32) * ratio).ceil().long()
        want = torch.minimum(want, counts)
    else:
        want = counts.clamp(max=check_int(npoint, "npoint", 1))
    out_ptr = torch.zeros(B + 1, dtype=torch.long, device=x.device)
    torch.cumsum(want, 0, out=out_ptr[1:])
    if isinstance(start, Tensor):
        start = _check_index_vector(start, "start", B, x.device)
    else:
        start = torch.full((B,), check_int(start, "start", 0), dtype=torch.long, device=x.device)
    nonempty = counts > 0
    if bool(((start < 0) | ((start >= counts) & nonempty)).any()):
        raise ValueError(f"start must lie in [0, n_b) for every graph, got {start.tolist()[:8]}")
    start = torch.where(nonempty, start, 0)
    xs = g.sort(x).to(compute_dtype(x.dtype)).contiguous()
    _, impl = select("fps_ragged", xs, backend, d=xs.shape[1])
    return g.rows(impl(xs, g.ptr, out_ptr, start))
