"""Neighbourhood queries: :func:`knn` and :func:`ball_query`."""

from __future__ import annotations

from torch import Tensor

from pointlib.ops._dispatch import select
from pointlib.ops._validate import check_int, check_pair, check_points
from pointlib.ops.ragged import compute_dtype


def _prepare(points: Tensor, queries: Tensor | None) -> tuple[Tensor, Tensor]:
    check_points(points, "points")
    if queries is not None:
        check_points(queries, "queries")
        check_pair(points, queries)
    cd = compute_dtype(points.dtype)  # float16/bfloat16 -> float32 (exact)
    points = points.to(cd).contiguous()
    return points, (points if queries is None else queries.to(cd).contiguous())


def knn(
    points: Tensor, k: int, queries: Tensor | None = None, *, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest points of each query, sorted by squared distance.

    Args:
        points: ``(B, N, D)`` coordinates or features to search, any ``D >= 1`` (``D = 3``:
            the grid kernels), float32/float64, or float16/bfloat16 (computed in float32).
        k: number of neighbours, ``1 <= k <= N``.
        queries: ``(B, M, D)`` query coordinates (same dtype and device); ``None`` queries the
            points themselves, so each point is its own first neighbour at distance 0.
        backend: ``"auto"``, ``"torch"``, ``"cpu"``, ``"cuda"`` or another name from
            :func:`available_backends`.

    Returns:
        ``(idx, dist2)``: ``idx (B, M, k)`` int64 indices into ``points`` and ``dist2 (B, M, k)``
        squared distances in the input dtype (float32 for float16/bfloat16 inputs), ascending.
        Equal distances keep the lower index first. ``dist2`` is computed from coordinate
        differences, ``(dx*dx + dy*dy) + dz*dz`` (any D: summed left to right).

    Example:
        >>> pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [3, 0, 0]]])
        >>> idx, d2 = knn(pts, 2)
        >>> idx[0].tolist()
        [[0, 1], [1, 0], [2, 1]]
    """
    points, queries = _prepare(points, queries)
    k = check_int(k, "k", 1, points.shape[1])
    _, impl = select("knn", points, backend, k=k, d=points.shape[-1])
    return impl(points, queries, k)


def ball_query(
    points: Tensor,
    radius: float,
    nsample: int,
    queries: Tensor | None = None,
    *,
    backend: str = "auto",
) -> Tensor:
    """Up to ``nsample`` points within ``radius`` of each query, in ascending index order.

    Args:
        points: ``(B, N, D)`` coordinates to search, any ``D >= 1``; float16/bfloat16 are
            computed in float32.
        radius: ball radius, finite and ``> 0``. Membership is strict: ``dist2 < r2`` with
            ``r2 = float(radius) ** 2`` rounded once to the input dtype.
        nsample: slots per query, ``>= 1`` (may exceed ``N``).
        queries: ``(B, M, D)`` ball centres; ``None`` uses the points themselves.
        backend: as for :func:`knn`.

    Returns:
        ``idx (B, M, nsample)`` int64: the first ``nsample`` members by index. A ball with fewer
        members is padded with its first (lowest-index) member. **An empty ball** (possible only
        when queries are not points) **is filled with the index of the nearest point**, so every
        index is valid; test emptiness with the distances if it matters.

    Example:
        >>> pts = torch.tensor([[[0.0, 0, 0], [0.5, 0, 0], [2, 0, 0]]])
        >>> ball_query(pts, 1.0, 3)[0].tolist()
        [[0, 1, 0], [0, 1, 0], [2, 2, 2]]
    """
    from pointlib.ops._validate import check_radius

    points, queries = _prepare(points, queries)
    radius = check_radius(radius)
    nsample = check_int(nsample, "nsample", 1)
    _, impl = select("ball_query", points, backend, nsample=nsample, d=points.shape[-1])
    return impl(points, queries, float(radius), nsample)
