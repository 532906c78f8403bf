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
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_ELEMS = 1 << 23  # distances materialised at once (B * m * N)


def sqdist(queries: Tensor, points: Tensor) -> Tensor:
    """Squared distances ``(B, M, N)`` between ``queries (B, M, 3)`` and ``points (B, N, 3)``."""
    acc = None
    for c in range(3):
        d = queries[:, :, c, None] - points[:, None, :, c]
        acc = d * d if acc is None else acc + d * d
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
