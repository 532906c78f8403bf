"""Farthest point sampling."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pointlib.ops._dispatch import select
from pointlib.ops._validate import check_cloud, check_int


def fps(
    points: Tensor,
    npoint: int,
    *,
    start: int = 0,
    tie_rtol: float = 0.0,
    backend: str = "auto",
) -> Tensor:
    """Greedy farthest point sampling.

    Args:
        points: ``(B, N, 3)`` float32/float64 coordinates.
        npoint: samples per cloud, ``1 <= npoint <= N``.
        start: index of the first sample, ``0 <= start < N`` (deterministic; pointops uses 0).
        tie_rtol: tie tolerance relative to the cloud's radius ``R = max_i ‖x_i‖`` (default 0:
            exact ties only). A step then takes the **lowest index** whose distance to the
            selected set is within ``tie_rtol·R`` of the largest, so rounding noise (e.g. of a
            rotation) cannot reorder points whose distances are tied. The rotation-invariant
            models use ``512·eps`` of the dtype.
        backend: as for :func:`pointlib.ops.knn`.

    Returns:
        ``idx (B, npoint)`` int64. Step ``i`` takes the point whose squared distance to the
        already selected set is largest, ties to the **lowest index**. With duplicate points, once
        every remaining distance is 0 (with ``tie_rtol``: within the tolerance) the lowest index
        (0) repeats.

    Example:
        >>> pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [2, 0, 0]]])
        >>> fps(pts, 3)[0].tolist()
        [0, 2, 3]
    """
    check_cloud(points, "points")
    N = points.shape[1]
    npoint = check_int(npoint, "npoint", 1, N)
    start = check_int(start, "start", 0, N - 1)
    tie_rtol = float(tie_rtol)
    if not (tie_rtol >= 0 and math.isfinite(tie_rtol)):
        raise ValueError(f"tie_rtol must be a finite number >= 0, got {tie_rtol}")
    _, impl = select("fps", points, backend, npoint=npoint, start=start, tie_rtol=tie_rtol)
    return impl(points.contiguous(), npoint, start, tie_rtol)


def pointops_threads(n: int) -> int:
    """Threads per cloud of the pointops / PointNet++ CUDA FPS kernel for ``n`` points: the
    largest power of two ``<= n`` (computed as ``2 ** int(log(n) / log(2))`` in double, as the
    kernel's launcher does), at most 1024."""
    return max(min(1 << int(math.log(n) / math.log(2.0)), 1024), 1)


def pointops_tie_rank(n: int, device: torch.device | str | None = None) -> Tensor:
    """``(n,)`` int64 rank of each point among equal maxima in the pointops CUDA FPS kernel
    (the lowest rank wins).

    With ``T = pointops_threads(n)`` threads, point ``k`` belongs to thread ``k mod T``, which
    scans its points in ascending order and keeps the first maximum; the block then reduces the
    ``T`` per-thread maxima pairwise (slot ``t`` against ``t + s`` for ``s = T/2, ..., 1``),
    keeping the lower slot unless the upper one is strictly larger. Among threads with equal
    maxima this keeps the one whose id, **bit-reversed** over ``log2 T`` bits, is smallest.
    So the rank is ``(bitrev(k mod T), k div T)`` in lexicographic order.
    """
    T = pointops_threads(n)
    bits = T.bit_length() - 1
    k = torch.arange(n, device=device)
    tid = k % T
    rev = torch.zeros_like(k)
    for b in range(bits):
        rev |= ((tid >> b) & 1) << (bits - 1 - b)
    per_thread = (n + T - 1) // T
    return rev * per_thread + k // T


def fps_pointops(points: Tensor, npoint: int, *, start: int = 0) -> Tensor:
    """Farthest point sampling with the tie rule of the pointops CUDA kernel.

    The reference RISurConv code samples centres with pointops' ``furthestsampling`` (the
    PointNet++ CUDA kernel, start index 0). Its steps take the largest squared distance to the
    selected set like :func:`fps`, but exactly equal maxima go to the point of lowest
    :func:`pointops_tie_rank` (bit-reversed thread id, then position in the thread), not to the
    lowest index. Real shapes hold many such ties (symmetric CAD models), so the two rules
    pick different centres. Distances are evaluated as in the kernel,
    ``dx*dx + dy*dy + dz*dz`` left to right in the input dtype (float32 there; the GPU
    compiler may contract it into fused multiply-adds, which can differ in the last bit), and
    the running minimum starts at ``1e10``.

    Pure torch, one step at a time (``npoint`` small steps; slower than :func:`fps`).

    Args:
        points: ``(B, N, 3)`` float32/float64 coordinates.
        npoint: samples per cloud, ``1 <= npoint <= N``.
        start: index of the first sample (the kernel uses 0).

    Returns:
        ``idx (B, npoint)`` int64.

    Example:
        >>> pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0]]])
        >>> fps_pointops(pts, 3)[0].tolist()  # 1, 2, 3 tied: thread 2 (bit-reversed 1) first
        [0, 2, 1]
    """
    check_cloud(points, "points")
    B, N, _ = points.shape
    npoint = check_int(npoint, "npoint", 1, N)
    start = check_int(start, "start", 0, N - 1)
    pts = points.detach()
    rank = pointops_tie_rank(N, pts.device).expand(B, N)
    worst = rank.max() + 1  # above every rank (ranks are not a permutation of 0..N-1)
    x, y, z = pts.unbind(-1)  # (B, N) each
    temp = torch.full((B, N), 1e10, dtype=pts.dtype, device=pts.device)
    idx = torch.empty(B, npoint, dtype=torch.long, device=pts.device)
    batch = torch.arange(B, device=pts.device)
    last = torch.full((B,), start, dtype=torch.long, device=pts.device)
    idx[:, 0] = last
    for i in range(1, npoint):
        c = pts[batch, last]  # (B, 3)
        dx, dy, dz = x - c[:, 0:1], y - c[:, 1:2], z - c[:, 2:3]
        d = dx * dx + dy * dy + dz * dz
        torch.minimum(temp, d, out=temp)
        best = temp.amax(dim=1, keepdim=True)
        last = torch.where(temp == best, rank, worst).argmin(dim=1)
        idx[:, i] = last
    return idx
