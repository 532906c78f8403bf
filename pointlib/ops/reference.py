"""Pure-torch reference implementations: they *are* the op semantics.

Every other backend must return bit-identical indices. The rules, in one place:

* Squared distances are computed from coordinate differences, accumulated as
  ``(dx*dx + dy*dy) + dz*dz`` in the input dtype (no ``|a|^2 + |b|^2 - 2ab`` expansion, no FMA).
* ``knn``: the ``k`` smallest ``dist2``, ascending; equal distances keep the lower index first.
* ``ball_query``: members are points with ``dist2 < r2`` (strict), ``r2 = float(radius)**2``
  rounded once to the input dtype; the first ``nsample`` members in ascending index order; a ball
  with fewer members repeats its first (lowest-index) member; an empty ball is filled with the
  index of the nearest point (lowest index among equally near ones).
* ``fps``: greedy farthest-point sampling from ``start``; each step keeps, per point, the minimum
  squared distance to the selected set and takes the argmax, ties to the lowest index. Once every
  remaining distance is 0 (duplicates), the lowest index with distance 0 is taken, i.e. index 0.
  With a tie tolerance ``tie_rtol > 0``: ``tol = tie_rtol * sqrt(max_i |x_i|^2)`` (``|x|^2``
  accumulated like a squared distance, in the input dtype), and each step takes the **lowest
  index** ``j`` with ``mind_j >= t*t``, ``t = sqrt(max mind) - tol`` (every index when
  ``t <= 0``), i.e. distances within ``tol`` of the largest count as tied.

Memory is bounded by processing queries in chunks of at most ``CHUNK_ELEMS`` distances.

Any dimension, ragged batches, half precision (the ``*_ragged`` ops and ``D != 3``):

* Points may have any dimension ``D >= 1``; ``dist2`` accumulates left to right,
  ``((d0*d0 + d1*d1) + d2*d2) + ...`` (for ``D = 3`` the expression above).
* Ragged inputs are flat ``(N, D)`` points sorted by graph, with ``ptr (B + 1,)`` offsets
  (graph ``b`` owns rows ``ptr[b]:ptr[b + 1]``); queries only see the points of their own graph.
  Results hold **global** row indices, padded with ``-1`` (and ``dist2 = inf``) where a graph has
  fewer than ``k`` points / a ball fewer than ``nsample`` members (no repetition, no nearest-point
  fill). ``fps_ragged`` takes ``out_ptr[b + 1] - out_ptr[b]`` samples of graph ``b`` starting at
  its local row ``start[b]``.
* float16 / bfloat16 inputs are computed in float32 (callers upcast; exact) and return float32
  ``dist2``.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_ELEMS = 1 << 23  # distances materialised at once (B * m * N)


def sqdist(queries: Tensor, points: Tensor) -> Tensor:
    """Squared distances ``(B, M, N)`` between ``queries (B, M, D)`` and ``points (B, N, D)``."""
    qt = queries.transpose(1, 2)  # (B, D, M): one coordinate plane per step
    pt = points.transpose(1, 2)
    if points.shape[-1] > 3:  # contiguous planes (a no-op cost for D = 3 is not worth it)
        qt, pt = qt.contiguous(), pt.contiguous()
    inplace = not (torch.is_grad_enabled() and (queries.requires_grad or points.requires_grad))
    acc = None
    for c in range(points.shape[-1]):
        d = qt[:, c, :, None] - pt[:, c, None, :]
        d = d.mul_(d) if inplace else d * d  # same rounding either way
        acc = d if acc is None else (acc.add_(d) if inplace else acc + d)
    return acc


def _chunks(points: Tensor, queries: Tensor):
    B, N, _ = points.shape
    M = queries.shape[1]
    step = max(1, CHUNK_ELEMS // max(1, B * N))
    for s in range(0, M, step):
        yield s, min(M, s + step)


def knn(points: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Reference kNN. ``points (B, N, 3)``, ``queries (B, M, 3)`` -> ``idx, dist2 (B, M, k)``."""
    B, M = queries.shape[:2]
    idx = torch.empty(B, M, k, dtype=torch.long, device=points.device)
    dist2 = torch.empty(B, M, k, dtype=points.dtype, device=points.device)
    for s, e in _chunks(points, queries):
        d2 = sqdist(queries[:, s:e], points)
        idx[:, s:e], dist2[:, s:e] = _smallest_k(d2, k)
    return idx, dist2


def _smallest_k(d2: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest entries of each row of ``d2 (..., N)`` ordered by ``(value, index)``.

    Equal to ``torch.sort(d2, stable=True)[..., :k]`` (the definition), computed with ``topk``:
    the selection is put in (value, index) order, and rows where points tied with the k-th value
    were left out (``topk`` may keep any of them) are redone with the full stable sort.
    """
    N = d2.shape[-1]
    if k == N or N <= 64:
        vals, order = torch.sort(d2, dim=-1, stable=True)
        return order[..., :k], vals[..., :k]
    vals, cand = d2.topk(k, dim=-1, largest=False, sorted=False)
    cand, perm = cand.sort(dim=-1)
    vals = vals.gather(-1, perm)
    vals, perm = vals.sort(dim=-1, stable=True)
    cand = cand.gather(-1, perm)
    # topk is exact, so a left-out point with d2 <= kth has d2 == kth: a boundary tie.
    tied = (d2 <= vals[..., -1:]).sum(-1) > k
    if bool(tied.any()):
        rows = tied.nonzero(as_tuple=True)
        v, o = torch.sort(d2[rows], dim=-1, stable=True)
        cand[rows], vals[rows] = o[..., :k], v[..., :k]
    return cand, vals


def _order_rows(d2: Tensor, other: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` first entries of each row of ``d2 (m, n)`` by ``(other, d2, index)``.

    ``other`` marks entries of another graph; they sort after every entry of the row's graph
    (even an overflowed ``inf`` one).
    """
    masked = d2.masked_fill(other, float("inf"))
    cand, vals = _smallest_k(masked, k)
    # A member whose dist2 overflowed to inf ties with the other-graph entries: redo those rows
    # with the full lexicographic order.
    redo = (torch.isinf(d2) & ~other).any(-1)
    if bool(redo.any()):
        rows = redo.nonzero(as_tuple=True)
        o = torch.sort(masked[rows], dim=-1, stable=True)[1]
        flag = other[rows].gather(-1, o).to(torch.int8)
        o = o.gather(-1, torch.sort(flag, dim=-1, stable=True)[1])
        cand[rows], vals[rows] = o[..., :k], masked[rows].gather(-1, o[..., :k])
    return cand, vals


def _ragged_windows(ptr_x: Tensor, ptr_y: Tensor):
    """Chunks ``(q0, q1, p0, p1, graph_of_query, graph_of_point)`` of sorted ragged queries."""
    B = ptr_x.numel() - 1
    M = int(ptr_y[-1])
    gy = torch.repeat_interleave(torch.arange(B, device=ptr_y.device), ptr_y.diff())
    gx = torch.repeat_interleave(torch.arange(B, device=ptr_x.device), ptr_x.diff())
    px, py = ptr_x.tolist(), ptr_y.tolist()
    gyl = gy.tolist()
    q0 = 0
    while q0 < M:
        p0 = px[gyl[q0]]
        q1 = q0
        while q1 < M:  # add whole graphs while the (queries x window) block fits
            g = gyl[q1]
            cap = max(1, CHUNK_ELEMS // max(1, px[g + 1] - p0))
            if py[g + 1] - q0 <= cap:
                q1 = py[g + 1]
                continue
            q1 = max(q1 + (q1 == q0), min(py[g + 1], q0 + cap))
            break
        p1 = px[gyl[q1 - 1] + 1]
        yield q0, q1, p0, p1, gy[q0:q1], gx[p0:p1]
        q0 = q1


def knn_ragged(
    points: Tensor, queries: Tensor, ptr_x: Tensor, ptr_y: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Reference ragged kNN. ``points (N, D)``, ``queries (M, D)`` sorted by graph with offsets
    ``ptr_x``, ``ptr_y (B + 1,)`` -> ``idx (M, k)`` int64 global rows (``-1`` padding) and
    ``dist2 (M, k)`` (``inf`` padding), ascending by ``(dist2, index)`` within the graph."""
    M = queries.shape[0]
    idx = torch.full((M, k), -1, dtype=torch.long, device=points.device)
    dist2 = torch.full((M, k), float("inf"), dtype=points.dtype, device=points.device)
    for q0, q1, p0, p1, gq, gp in _ragged_windows(ptr_x, ptr_y):
        if p1 == p0:
            continue
        d2 = sqdist(queries[None, q0:q1], points[None, p0:p1])[0]
        other = gq[:, None] != gp[None, :]
        kk = min(k, p1 - p0)
        cand, vals = _order_rows(d2, other, kk)
        count = (~other).sum(-1, keepdim=True)  # graph size of each query
        keep = torch.arange(kk, device=points.device) < count
        idx[q0:q1, :kk] = torch.where(keep, cand + p0, -1)
        dist2[q0:q1, :kk] = torch.where(keep, vals, float("inf"))
    return idx, dist2


def ball_query_ragged(
    points: Tensor, queries: Tensor, ptr_x: Tensor, ptr_y: Tensor, radius: float, nsample: int
) -> Tensor:
    """Reference ragged ball query -> ``idx (M, nsample)`` int64: the first ``nsample`` rows of
    the query's graph with ``dist2 < r2`` (strict, ``r2`` rounded once to the dtype), by index,
    padded with ``-1``."""
    M = queries.shape[0]
    r2 = torch.tensor(float(radius) ** 2, dtype=points.dtype, device=points.device)
    out = torch.full((M, nsample), -1, dtype=torch.long, device=points.device)
    for q0, q1, p0, p1, gq, gp in _ragged_windows(ptr_x, ptr_y):
        if p1 == p0:
            continue
        d2 = sqdist(queries[None, q0:q1], points[None, p0:p1])[0]
        inside = (d2 < r2) & (gq[:, None] == gp[None, :])
        n = p1 - p0
        key = torch.where(inside, torch.arange(n, device=points.device), n)
        ns = min(nsample, n)
        first = key.topk(ns, dim=-1, largest=False, sorted=True).values
        out[q0:q1, :ns] = torch.where(first < n, first + p0, -1)
    return out


def fps_ragged(points: Tensor, ptr: Tensor, out_ptr: Tensor, start: Tensor) -> Tensor:
    """Reference ragged farthest point sampling -> ``idx (out_ptr[-1],)`` int64 global rows.

    Graph ``b`` takes ``out_ptr[b + 1] - out_ptr[b]`` (at most its size) samples from its local
    row ``start[b]``, with the rules of :func:`fps` (first maximum, so ties go to the lowest row).
    """
    B = ptr.numel() - 1
    dev = points.device
    counts, want = ptr.diff(), out_ptr.diff()
    out = torch.empty(int(out_ptr[-1]), dtype=torch.long, device=dev)
    if B == 0 or out.numel() == 0:
        return out
    nmax = int(counts.max())
    D = points.shape[-1]
    local = torch.arange(nmax, device=dev)
    valid = local[None, :] < counts[:, None]  # (B, nmax)
    rows = (ptr[:-1, None] + local[None, :]).clamp(max=max(points.shape[0] - 1, 0))
    dense = points[rows.reshape(-1)].view(B, nmax, D)
    mind = torch.full((B, nmax), float("inf"), dtype=points.dtype, device=dev)
    mind.masked_fill_(~valid, -1.0)  # padding never wins the argmax
    last = start.to(dev).long().clone()
    batch = torch.arange(B, device=dev)
    for i in range(int(want.max())):
        take = want > i
        pos = out_ptr[:-1] + i
        out[pos[take]] = (ptr[:-1] + last)[take]
        centre = dense[batch, last]  # (B, D)
        d2 = sqdist(centre[:, None, :], dense)[:, 0]
        torch.minimum(mind, d2.masked_fill(~valid, -1.0), out=mind)
        last = mind.argmax(dim=1)
    return out


def ball_query(points: Tensor, queries: Tensor, radius: float, nsample: int) -> Tensor:
    """Reference ball query -> ``idx (B, M, nsample)`` int64 (see the module docstring)."""
    B, N, _ = points.shape
    M = queries.shape[1]
    r = float(radius)
    r2 = torch.tensor(r * r, dtype=points.dtype, device=points.device)  # r * r: inf, never raises
    ns = min(nsample, N)
    slots = torch.arange(nsample, device=points.device)
    arange = torch.arange(N, device=points.device)
    out = torch.empty(B, M, nsample, dtype=torch.long, device=points.device)
    for s, e in _chunks(points, queries):
        d2 = sqdist(queries[:, s:e], points)
        inside = d2 < r2
        count = inside.sum(-1, keepdim=True)
        key = torch.where(inside, arange, N)
        first = key.topk(ns, dim=-1, largest=False, sorted=True).values
        fill = torch.where(count > 0, first[..., :1], d2.argmin(-1, keepdim=True))
        if nsample > ns:
            first = torch.cat([first, fill.expand(-1, -1, nsample - ns)], dim=-1)
        out[:, s:e] = torch.where(slots < count, first, fill)
    return out


def fps(points: Tensor, npoint: int, start: int = 0, tie_rtol: float = 0.0) -> Tensor:
    """Reference farthest point sampling -> ``idx (B, npoint)`` int64."""
    points = points.detach()  # indices only: no graph (and ``out=`` refuses tensors with grad)
    B, N, _ = points.shape
    batch = torch.arange(B, device=points.device)
    idx = torch.empty(B, npoint, dtype=torch.long, device=points.device)
    mind = torch.full((B, N), float("inf"), dtype=points.dtype, device=points.device)
    last = torch.full((B,), start, dtype=torch.long, device=points.device)
    if tie_rtol > 0:
        r2 = sqdist(torch.zeros_like(points[:, :1]), points)[:, 0].amax(1)  # (B,)
        tol = torch.tensor(tie_rtol, dtype=points.dtype, device=points.device) * r2.sqrt()
    for i in range(npoint):
        idx[:, i] = last
        centre = points[batch, last]  # (B, 3)
        d2 = sqdist(centre[:, None, :], points)[:, 0]  # (B, N)
        torch.minimum(mind, d2, out=mind)
        if tie_rtol > 0:
            t = mind.amax(dim=1).sqrt() - tol
            thr = torch.where(t > 0, t * t, float("-inf"))
            last = (mind >= thr[:, None]).to(torch.uint8).argmax(dim=1)  # lowest candidate
        else:
            last = mind.argmax(dim=1)  # first maximum: lowest index on ties
    return idx
