"""The 8 rotation-invariant features of RIConv++ (spec §7.1).

Same neighbour ordering as RISP (:mod:`pointlib.features.ordering`), ring shift always 1. Per
ordered neighbour ``x_i`` with ``v_i = x_i - p``, sort key ``key_i`` and ``û`` as in RISP:

====  ==========================================================  ===========================
ch    formula                                                     meaning
====  ==========================================================  ===========================
0     ``‖v_i‖``                                                    distance
1     ``φ_i = key_i - key_{i-1}`` (``φ_0 = -3 - key_{K-1}``)       angular gap to the previous
2     ``û(v_i)·n_p``                                               edge vs centre normal
3     ``û(v_i)·n_i``                                               edge vs neighbour normal
4     ``±acos(clamp(n_i·n_p, ±(1-1e-7)))``, ``+`` iff ch2 < ch3    signed normal–normal angle
5     ``û(x_i - x_{i-1})·n_i``                                     ring edge vs n_i
6     ``û(x_i - x_{i-1})·n_{i-1}``                                 ring edge vs n_{i-1}
7     ``±acos(clamp(n_i·n_{i-1}, ±(1-1e-7)))``, ``+`` iff ch5 < ch6 signed ring normal angle
====  ==========================================================  ===========================

``acos`` arguments are clamped in both modes (unit normals can round past 1), so no NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pointlib.features._common import check_cloud, check_normals, dot, norm, planes, unit
from pointlib.features.ordering import cloud_scale, default_tie_rtol
from pointlib.features.risp import (
    _check_inputs,
    global_layer_inputs,
    ordered_neighbourhood,
    to_public,
)

__all__ = ["RICONV2_CHANNELS", "riconv2_features", "riconv2_features_global"]

#: Channel names in output order.
RICONV2_CHANNELS: tuple[str, ...] = (
    "length",
    "phi",
    "edge_dot_center_normal",
    "edge_dot_normal",
    "signed_normal_angle",
    "ring_edge_dot_normal",
    "ring_edge_dot_prev_normal",
    "signed_ring_normal_angle",
)

_ACOS_CLAMP = 1.0 - 1e-7


def _signed_angle(a: Tensor, b: Tensor, cos: Tensor, tol: Tensor | None = None) -> Tensor:
    """``±acos(cos)``, ``+`` iff ``a < b``. Fixed mode passes ``tol``: ``|a - b| <= tol`` is a
    tie (e.g. coplanar CAD faces, whose normals are equal) and takes ``+``, so rounding noise
    cannot flip the sign."""
    less = a < b if tol is None else (a < b) | ((a - b).abs() <= tol)
    sign = torch.where(less, 1.0, -1.0).to(cos.dtype)
    return sign * torch.acos(cos.clamp(-_ACOS_CLAMP, _ACOS_CLAMP))


def riconv2_features(
    xyz: Tensor,
    normals: Tensor,
    centers: Tensor,
    center_normals: Tensor,
    idx: Tensor,
    *,
    faithful: bool = False,
    origin: Tensor | None = None,
    tie_rtol: float | None = None,
    axis_rtol: Tensor | float | None = None,
) -> tuple[Tensor, Tensor]:
    """The 8 RIConv++ features of every centre's ordered neighbourhood (spec §7.1).

    Args:
        xyz: ``(B, N, 3)`` float32/float64 coordinates.
        normals: ``(B, N, 3)`` normals.
        centers: ``(B, M, 3)`` centres (ordering origin).
        center_normals: ``(B, M, 3)`` centre normals (ordering axis).
        idx: ``(B, M, K)`` int64 neighbour indices into ``xyz`` (see
            :func:`pointlib.features.risp_features` for how the order matters).
        faithful: reference ordering instead of the fixed one (the 8 formulas are the same).
        origin: optional ``(B, M, 3)`` feature origin ``p`` (default ``centers``).
        tie_rtol, axis_rtol: fixed mode's tie tolerances (see
            :func:`pointlib.features.risp_features`).

    Returns:
        ``(feats (B, M, K, 8), idx_ordered (B, M, K))``; channels as :data:`RICONV2_CHANNELS`.
        ``feats`` is a permuted view of a contiguous ``(B, 8, K, M)`` tensor (see
        :func:`pointlib.features.risp_features`).

    Example:
        >>> xyz, nrm = pointlib.testing.make_cloud(1, 32)
        >>> idx, _ = pointlib.ops.knn(xyz, 8, xyz[:, :4])
        >>> riconv2_features(xyz, nrm, xyz[:, :4], nrm[:, :4], idx)[0].shape
        torch.Size([1, 4, 8, 8])
    """
    idx = _check_inputs(xyz, normals, centers, center_normals, idx, origin)
    x, n, idx_ordered, key = ordered_neighbourhood(
        xyz, normals, centers, center_normals, idx,
        faithful=faithful, tie_rtol=tie_rtol, axis_rtol=axis_rtol,
    )  # fmt: skip
    p = planes(centers if origin is None else origin)
    n_p = planes(center_normals)
    v = x - p
    u0 = unit(v, 1)
    phi = key - key.roll(1, 1)
    phi[:, 0] = -3.0 - key[:, -1]
    nm = n.roll(1, 2)
    d = unit(x - x.roll(1, 2), 1)
    c2, c3 = dot(u0, n_p, 1), dot(u0, n, 1)
    c5, c6 = dot(d, n, 1), dot(d, nm, 1)
    tol2 = tol5 = None
    if not faithful:  # sign ties: noise of a unit vector's direction ~ rtol * R / length
        rtol = default_tie_rtol(xyz.dtype) if tie_rtol is None else float(tie_rtol)
        scale = cloud_scale(xyz).view(-1, 1, 1)
        tiny = torch.finfo(xyz.dtype).tiny
        tol2 = 4 * rtol * (1 + scale / norm(v, 1).clamp_min(tiny))
        tol5 = 4 * rtol * (1 + scale / norm(x - x.roll(1, 2), 1).clamp_min(tiny))
    feats = to_public(
        (
            norm(v, 1),
            phi,
            c2,
            c3,
            _signed_angle(c2, c3, dot(n, n_p, 1), tol2),
            c5,
            c6,
            _signed_angle(c5, c6, dot(n, nm, 1), tol5),
        )
    )
    return feats, idx_ordered


def riconv2_features_global(
    xyz: Tensor, normals: Tensor, *, faithful: bool = False, tie_rtol: float | None = None
) -> tuple[Tensor, Tensor]:
    """RIConv++ features of the global layer (as :func:`risp_features_global`).

    Centroid as ordering centre, global LRA as axis, all points as neighbours; feature origin
    ``p`` = world origin in faithful mode, the centroid in fixed mode.

    Returns:
        ``(feats (B, 1, N, 8), idx_ordered (B, 1, N))``.
    """
    check_cloud(xyz, "xyz")
    check_normals(normals, xyz, "normals", "xyz")
    centroid, axis, idx, origin, axis_rtol = global_layer_inputs(
        xyz, faithful=faithful, tie_rtol=tie_rtol, normals=normals
    )
    return riconv2_features(
        xyz, normals, centroid, axis, idx, faithful=faithful, origin=origin,
        tie_rtol=tie_rtol, axis_rtol=axis_rtol,
    )  # fmt: skip
