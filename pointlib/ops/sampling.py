"""Farthest point sampling."""

from __future__ import annotations

import math

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
