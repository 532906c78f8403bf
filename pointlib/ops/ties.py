"""Neighbour search whose result does not change when rounding noise moves tied distances.

Real clouds (CAD models, lattices, scans with duplicates) hold many *exactly* tied distances.
Rotating such a cloud adds rounding noise of about ``eps · max‖x‖`` to every coordinate, which
decides those ties differently from one rotation to the next. :func:`knn_tolerant` treats
distances closer than ``tie_rtol · R`` (``R = max_i ‖x_i‖`` of the cloud) as tied and breaks the
tie by point index, which a rotation does not permute. :func:`pointlib.ops.fps` has the same rule
through its ``tie_rtol`` argument.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pointlib.ops._validate import check_cloud, check_int
from pointlib.ops.neighbors import knn
from pointlib.ops.reference import sqdist

__all__ = ["knn_tolerant"]

#: Candidates fetched beyond ``k`` before checking whether the tie window may extend further.
EXTRA_CANDIDATES = 4


def knn_tolerant(
    points: Tensor,
    k: int,
    queries: Tensor | None = None,
    *,
    tie_rtol: float,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """``k`` nearest neighbours, with distances within a tolerance of the ``k``-th one tied.

    With ``d_k`` the ``k``-th smallest distance of a query and ``tol = tie_rtol · R``
    (``R = max_i ‖points_i‖`` of its cloud), the result holds every point with
    ``d < d_k - tol`` (in ascending distance), then the **lowest-index** points with
    ``|d - d_k| <= tol`` (by index) up to ``k``. Away from near-ties this is :func:`knn`; with
    ties, the neighbour set no longer depends on which of the tied distances rounding made
    smallest. ``tie_rtol = 0`` keeps only exact ties (which :func:`knn` already breaks by index).

    Args:
        points: ``(B, N, 3)`` float32/float64 coordinates.
        k: neighbours per query, ``1 <= k <= N``.
        queries: ``(B, M, 3)`` query points, or ``None`` for the points themselves.
        tie_rtol: tolerance relative to ``R``, ``>= 0`` (the rotation-invariant models use
            ``512·eps`` of the dtype).
        backend: backend of the underlying :func:`knn` call.

    Returns:
        ``idx (B, M, k)`` int64 and ``dist2 (B, M, k)`` (squared distances of those points;
        ascending except inside the tie window, which is ordered by index).

    Example:
        >>> pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 2, 0]]])
        >>> knn_tolerant(pts, 2, pts[:, :1], tie_rtol=1e-6)[0].tolist()
        [[[0, 1]]]
    """
    tie_rtol = float(tie_rtol)
    if not (tie_rtol >= 0 and math.isfinite(tie_rtol)):
        raise ValueError(f"tie_rtol must be a finite number >= 0, got {tie_rtol}")
    check_cloud(points, "points")
    N = points.shape[1]
    k = check_int(k, "k", 1, N)
    kk = min(N, k + EXTRA_CANDIDATES)
    idx, d2 = knn(points, kk, queries, backend=backend)  # validates the other arguments
    if kk == k and k == N:
        return idx, d2  # every point is a neighbour: the set cannot change
    q = points if queries is None else queries
    tol = (tie_rtol * torch.linalg.vector_norm(points, dim=-1).amax(-1)).view(-1, 1, 1)
    d = d2.clamp_min(0).sqrt()
    dk = d[..., k - 1 : k]
    full = (d[..., -1:] <= dk + tol).squeeze(-1) & (kk < N)  # the window may go beyond kk
    idx_out, d2_out = _select(idx, d2, d, dk, tol, k)
    if bool(full.any()):
        b, m = full.nonzero(as_tuple=True)
        rows_d2 = sqdist(q[b, m].unsqueeze(1), points[b])[:, 0]  # (R, N), exact as the kernels
        rows_d2, rows_idx = torch.sort(rows_d2, dim=-1, stable=True)
        rows_d = rows_d2.clamp_min(0).sqrt()
        i2, v2 = _select(
            rows_idx[:, None], rows_d2[:, None], rows_d[:, None],
            rows_d[:, None, k - 1 : k], tol[b], k,
        )  # fmt: skip
        idx_out[b, m], d2_out[b, m] = i2[:, 0], v2[:, 0]
    return idx_out, d2_out


def _select(
    idx: Tensor, d2: Tensor, d: Tensor, dk: Tensor, tol: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """The tolerant choice from ascending candidates ``idx, d2, d (..., L)`` (see above)."""
    L = idx.shape[-1]
    pos = torch.arange(L, device=idx.device)
    below = d < dk - tol
    window = (d - dk).abs() <= tol
    big = idx.new_tensor(2**62)
    key = torch.where(below, pos, torch.where(window, L + idx, big))
    order = key.topk(k, dim=-1, largest=False, sorted=True).indices
    return idx.gather(-1, order), d2.gather(-1, order)
