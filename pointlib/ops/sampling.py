"""Farthest point sampling."""

from __future__ import annotations

from torch import Tensor

from pointlib.ops._dispatch import select
from pointlib.ops._validate import check_cloud, check_int


def fps(points: Tensor, npoint: int, *, start: int = 0, backend: str = "auto") -> Tensor:
    """Greedy farthest point sampling.

    Args:
        points: ``(B, N, 3)`` float32/float64 coordinates.
        npoint: samples per cloud, ``1 <= npoint <= N``.
        start: index of the first sample, ``0 <= start < N`` (deterministic; pointops uses 0).
        backend: as for :func:`pointlib.ops.knn`.

    Returns:
        ``idx (B, npoint)`` int64. Step ``i`` takes the point whose squared distance to the
        already selected set is largest, ties to the **lowest index**. With duplicate points, once
        every remaining distance is 0 the lowest such index (0) repeats.

    Example:
        >>> pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [2, 0, 0]]])
        >>> fps(pts, 3)[0].tolist()
        [0, 2, 3]
    """
    check_cloud(points, "points")
    N = points.shape[1]
    npoint = check_int(npoint, "npoint", 1, N)
    start = check_int(start, "start", 0, N - 1)
    _, impl = select("fps", points, backend, npoint=npoint, start=start)
    return impl(points.contiguous(), npoint, start)
