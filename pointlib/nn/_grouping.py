"""Sampling and neighbourhood helpers shared by the rotation-invariant layers (private)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from pointlib import features as ri_features
from pointlib import ops
from pointlib.features.global_layer import FeatureKind, GlobalCenter, LraSign

__all__ = [
    "FeatureKind",
    "GlobalCenter",
    "KnnOrder",
    "LraSign",
    "check_features_dim",
    "check_inputs",
    "global_group",
    "knn_indices",
    "ring_shift_for",
    "sample_centers",
    "tie_rtol",
]

KnnOrder = Literal["sorted", "unsorted"]


def check_inputs(xyz: Tensor, normals: Tensor, feats: Tensor | None, name: str) -> None:
    """Validate channels-last ``xyz``/``normals`` ``(B, N, 3)`` and ``feats`` ``(B, N, D)``."""
    if not isinstance(xyz, Tensor) or xyz.dim() != 3 or xyz.shape[-1] != 3:
        shape = tuple(xyz.shape) if isinstance(xyz, Tensor) else type(xyz).__name__
        raise ValueError(f"{name}: xyz must have shape (B, N, 3), got {shape}")
    if not xyz.is_floating_point():
        raise TypeError(f"{name}: xyz must be floating point, got {xyz.dtype}")
    if not isinstance(normals, Tensor) or normals.shape != xyz.shape:
        shape = tuple(normals.shape) if isinstance(normals, Tensor) else type(normals).__name__
        raise ValueError(f"{name}: normals must have shape {tuple(xyz.shape)}, got {shape}")
    if feats is not None and (feats.dim() != 3 or feats.shape[:2] != xyz.shape[:2]):
        raise ValueError(
            f"{name}: features must have shape (B, N, D) with (B, N) = {tuple(xyz.shape[:2])}, "
            f"got {tuple(feats.shape)}"
        )


def sample_centers(
    xyz: Tensor,
    normals: Tensor,
    npoint: int,
    name: str,
    *,
    tolerant: bool = False,
    fps_ties: str = "lowest",
) -> tuple[Tensor, Tensor]:
    """FPS (start index 0) of ``npoint`` centres and their input normals: ``(B, S, 3)`` twice.

    ``tolerant`` (fixed mode): FPS with the tie tolerance of
    :func:`pointlib.features.ordering.default_tie_rtol`, and the centres in **ascending index
    order** rather than in FPS order. The centre set is then all that the next layers see: the
    order in which FPS met tied points, which rounding noise decides, cannot reach the next
    layer's index-based tie-breaking. (Every later operation is permutation equivariant over
    the centres, so this changes nothing else.) Otherwise ``fps_ties`` picks the exact tie rule
    (``"lowest"`` index or the official ``"cuda"`` kernel's, :func:`pointlib.ops.fps`).
    """
    N = xyz.shape[1]
    if npoint > N:
        raise ValueError(
            f"{name} samples npoint={npoint} centres but the input has only N={N} points; "
            f"use at least {npoint} points (or a model with a smaller `npoints`/`n`)"
        )
    if tolerant:
        idx = ops.fps(xyz.detach(), npoint, tie_rtol=tie_rtol(xyz)).sort(dim=1).values
    else:
        idx = ops.fps(xyz.detach(), npoint, tie_break=fps_ties)
    return ops.gather(xyz, idx), ops.gather(normals, idx)


def tie_rtol(x: Tensor) -> float:
    """The fixed mode's tie tolerance for ``x``'s dtype (``TIE_EPS`` machine epsilons)."""
    return ri_features.ordering.default_tie_rtol(x.dtype)


def knn_indices(points: Tensor, k: int, queries: Tensor, order: KnnOrder) -> Tensor:
    """``(B, M, k)`` int64 neighbour indices of ``queries`` in ``points``.

    ``k`` larger than the number of points is clipped to it (documented handling of tiny clouds).

    - ``"sorted"``: :func:`pointlib.ops.knn_tolerant` with the fixed mode's tie tolerance
      (ascending distance; distances tied within the tolerance at the ``k``-th neighbour are
      decided by index, so rounding noise cannot change the neighbour set).
    - ``"unsorted"``: the reference code's ``|a|^2 + |b|^2 - 2 a.b`` distances and
      ``topk(sorted=False)``; the order of the ``k`` indices is whatever ``topk`` returns.
    """
    k = min(k, points.shape[1])
    points, queries = points.detach(), queries.detach()
    if order == "sorted":
        return ops.knn_tolerant(points, k, queries, tie_rtol=tie_rtol(points))[0]
    if order != "unsorted":
        raise ValueError(f"knn_order must be 'sorted' or 'unsorted', got {order!r}")
    d2 = (
        -2 * queries @ points.transpose(1, 2)
        + (queries * queries).sum(-1, keepdim=True)
        + (points * points).sum(-1)[:, None, :]
    )
    return d2.topk(k, dim=-1, largest=False, sorted=False).indices


def ring_shift_for(shift: int | None, num_centers: int) -> int:
    """``shift`` if given, else the reference rule: 2 when ``num_centers >= 1024``, else 1."""
    if shift is not None:
        return shift
    return ri_features.ring_shift(num_centers, faithful=True)


def check_features_dim(feats: Tensor | None, expected: int, name: str) -> None:
    got = 0 if feats is None else feats.shape[-1]
    if got != expected:
        raise ValueError(f"{name} expects {expected} input feature channels, got {got}")


def global_group(
    xyz: Tensor,
    normals: Tensor,
    *,
    kind: FeatureKind,
    knn_order: KnnOrder,
    lra_sign: LraSign,
    global_center: GlobalCenter,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``group_all`` grouping of a layer: :func:`pointlib.features.global_grouping` with the
    layer's switches (``knn_order="unsorted"``, the reference's, selects the reference ordering).

    Returns:
        ``(center (B, 1, 3), axis (B, 1, 3), feats (B, 1, N, F), idx_ordered (B, 1, N))`` with
        ``F = 14`` (``kind="risp"``) or ``8`` (``kind="riconv2"``).
    """
    return ri_features.global_grouping(
        xyz, normals, kind=kind, lra_sign=lra_sign, global_center=global_center,
        faithful_ordering=knn_order == "unsorted",
    )  # fmt: skip
