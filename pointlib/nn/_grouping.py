"""Sampling and neighbourhood helpers shared by the rotation-invariant layers (private)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from pointlib import features as ri_features
from pointlib import ops

KnnOrder = Literal["sorted", "unsorted"]
LraSign = Literal["invariant", "raw"]
GlobalCenter = Literal["centroid", "origin"]
FeatureKind = Literal["risp", "riconv2"]
FpsTies = Literal["index", "pointops"]


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
    ties: FpsTies = "index",
) -> tuple[Tensor, Tensor]:
    """FPS (start index 0) of ``npoint`` centres and their input normals: ``(B, S, 3)`` twice.

    ``ties="pointops"``: :func:`pointlib.ops.fps_pointops` (exact ties, broken as the reference
    CUDA kernel does; centres in FPS order, ``tolerant`` does not apply).

    ``tolerant`` (fixed mode): FPS with the tie tolerance of
    :func:`pointlib.features.ordering.default_tie_rtol`, and the centres in **ascending index
    order** rather than in FPS order. The centre set is then all that the next layers see: the
    order in which FPS met tied points, which rounding noise decides, cannot reach the next
    layer's index-based tie-breaking. (Every later operation is permutation equivariant over
    the centres, so this changes nothing else.)
    """
    N = xyz.shape[1]
    if npoint > N:
        raise ValueError(
            f"{name} samples npoint={npoint} centres but the input has only N={N} points; "
            f"use at least {npoint} points (or a model with a smaller `npoints`/`n`)"
        )
    if ties == "pointops":
        idx = ops.fps_pointops(xyz.detach(), npoint)
    elif tolerant:
        idx = ops.fps(xyz.detach(), npoint, tie_rtol=tie_rtol(xyz)).sort(dim=1).values
    else:
        idx = ops.fps(xyz.detach(), npoint)
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


def static_ring_shift(nominal_centers: int) -> int:
    """The reference rule evaluated once, at construction, on a layer's nominal centre count."""
    return ring_shift_for(None, nominal_centers)


def check_features_dim(feats: Tensor | None, expected: int, name: str) -> None:
    got = 0 if feats is None else feats.shape[-1]
    if got != expected:
        raise ValueError(f"{name} expects {expected} input feature channels, got {got}")


def zeros_like_normals(xyz: Tensor) -> Tensor:
    return torch.zeros_like(xyz)


def global_group(
    xyz: Tensor,
    normals: Tensor,
    *,
    kind: FeatureKind,
    knn_order: KnnOrder,
    lra_sign: LraSign,
    global_center: GlobalCenter,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``group_all`` grouping: one centre (the centroid) with all ``N`` points.

    The ordering axis is the global LRA (:func:`pointlib.features.global_reference_axis`, raw or
    invariant sign per ``lra_sign``), the neighbour list ``arange(N)``, the ordering centred at
    the centroid, and the feature origin ``p`` the centroid (``global_center="centroid"``) or the
    world origin (``"origin"``, the reference).

    Returns:
        ``(center (B, 1, 3), axis (B, 1, 3), feats (B, 1, N, F), idx_ordered (B, 1, N))`` with
        ``F = 14`` (``kind="risp"``) or ``8`` (``kind="riconv2"``).
    """
    if lra_sign not in ("invariant", "raw"):
        raise ValueError(f"lra_sign must be 'invariant' or 'raw', got {lra_sign!r}")
    if global_center not in ("centroid", "origin"):
        raise ValueError(f"global_center must be 'centroid' or 'origin', got {global_center!r}")
    B, N, _ = xyz.shape
    center = xyz.mean(dim=1, keepdim=True)
    axis_rtol = None
    if lra_sign == "raw":
        axis = ri_features.global_reference_axis(xyz, faithful=True)
    else:
        axis, axis_rtol = ri_features.lra.global_axis_with_tolerance(xyz, tie_rtol(xyz), normals)
        axis_rtol = axis_rtol.unsqueeze(1)  # (B, 1)
    axis = axis.reshape(B, 1, 3)
    idx = torch.arange(N, device=xyz.device).expand(B, 1, N)
    origin = torch.zeros_like(center) if global_center == "origin" else None
    fn = ri_features.risp_features if kind == "risp" else ri_features.riconv2_features
    feats, idx_ordered = fn(
        xyz, normals, center, axis, idx, faithful=knn_order == "unsorted", origin=origin,
        axis_rtol=axis_rtol,
    )  # fmt: skip
    return center, axis, feats, idx_ordered
