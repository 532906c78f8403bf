"""Farthest point sampling."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pointlib.ops._dispatch import select
from pointlib.ops._validate import check_int, check_points
from pointlib.ops.ragged import compute_dtype


def fps(
    points: Tensor,
    npoint: int,
    *,
    start: int = 0,
    tie_rtol: float = 0.0,
    tie_break: str = "lowest",
    backend: str = "auto",
) -> Tensor:
    """Greedy farthest point sampling.

    Args:
        points: ``(B, N, D)`` coordinates or features, any ``D >= 1``; float32/float64, or
            float16/bfloat16 (distances computed in float32, exactly as for the rounded inputs).
        npoint: samples per cloud, ``1 <= npoint <= N``.
        start: index of the first sample, ``0 <= start < N`` (deterministic; pointops uses 0).
        tie_rtol: tie tolerance relative to the cloud's radius ``R = max_i ‖x_i‖`` (default 0:
            exact ties only). A step then takes the **lowest index** whose distance to the
            selected set is within ``tie_rtol·R`` of the largest, so rounding noise (e.g. of a
            rotation) cannot reorder points whose distances are tied. The rotation-invariant
            models use ``512·eps`` of the dtype.
        tie_break: ``"lowest"`` (the contract: exact ties to the lowest index) or ``"cuda"``:
            the official pointops CUDA kernel's rule, the smallest bit-reversed thread id
            (:func:`pointlib.ops.reference.cuda_fps_tie_keys`), for faithful reproduction of
            the reference code's centres (every backend: FPS on the points permuted into the
            kernel's tie order); needs ``tie_rtol == 0``.
        backend: as for :func:`pointlib.ops.knn`. ``D != 3`` runs on the compiled backends'
            ragged kernel (one graph per cloud) when ``tie_rtol == 0``; with a tie tolerance it
            needs the ``torch`` backend (``auto`` falls back to it).

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
    check_points(points, "points")
    N, D = points.shape[1], points.shape[2]
    npoint = check_int(npoint, "npoint", 1, N)
    start = check_int(start, "start", 0, N - 1)
    tie_rtol = float(tie_rtol)
    if not (tie_rtol >= 0 and math.isfinite(tie_rtol)):
        raise ValueError(f"tie_rtol must be a finite number >= 0, got {tie_rtol}")
    points = points.to(compute_dtype(points.dtype)).contiguous()
    if tie_break != "lowest":
        return _fps_cuda_ties(points, npoint, start, tie_rtol, tie_break, backend)
    params = {"npoint": npoint, "start": start, "tie_rtol": tie_rtol, "d": D}
    _, impl = select("fps", points, backend, **params)
    return impl(points, npoint, start, tie_rtol)


def _fps_cuda_ties(
    points: Tensor, npoint: int, start: int, tie_rtol: float, tie_break: str, backend: str
) -> Tensor:
    """The CUDA kernel's tie rule on any backend: ``lowest index`` FPS on the points permuted
    into key order (:func:`pointlib.ops.reference.cuda_fps_tie_keys` is a bijection onto
    ranks, so the lowest permuted index among ties is the smallest key), indices mapped back.
    Distances are those of the unpermuted points, so the result equals
    :func:`pointlib.ops.reference.fps_cuda_ties` exactly (tested)."""
    from pointlib.ops.reference import cuda_fps_tie_keys

    if tie_break != "cuda":
        raise ValueError(f"tie_break must be 'lowest' or 'cuda', got {tie_break!r}")
    if tie_rtol != 0:
        raise ValueError("tie_break='cuda' reproduces exact ties only: use tie_rtol=0")
    N, D = points.shape[1], points.shape[2]
    perm = torch.argsort(cuda_fps_tie_keys(N, points.device))
    inv = torch.argsort(perm)
    permuted = points[:, perm].contiguous()
    first = int(inv[start])
    _, impl = select("fps", permuted, backend, npoint=npoint, start=first, tie_rtol=0.0, d=D)
    return perm[impl(permuted, npoint, first, 0.0)]
