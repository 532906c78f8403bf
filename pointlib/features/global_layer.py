"""The global (``group_all``) layer's grouping: one centre, all ``N`` points (spec §1.5).

One implementation for the feature functions (:func:`risp_features_global`,
:func:`riconv2_features_global`) and the layers of :mod:`pointlib.nn` (their ``group_all``
mode), with three switches:

=================  ==============================  ============================================
switch             fixed (default)                 reference (``faithful=True``)
=================  ==============================  ============================================
``lra_sign``       ``"invariant"``: the global     ``"raw"``: the eigensolver's sign
                   axis with its sign rule and     (:func:`global_reference_axis`)
                   direction tolerance
``global_center``  ``"centroid"`` as feature       ``"origin"``: the world origin as ``p``
                   origin ``p``                    (``v_i = x_i``; not translation invariant)
``faithful_        ``False``: tolerant ordering    ``True``: the reference's ordering quirks
ordering``
=================  ==============================  ============================================

The ordering is always centred at the centroid, with the neighbour list ``arange(N)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from pointlib.features._common import check_cloud, check_normals
from pointlib.features.lra import global_axis_with_tolerance, global_reference_axis
from pointlib.features.ordering import default_tie_rtol
from pointlib.features.riconv2 import riconv2_features
from pointlib.features.risp import risp_features

__all__ = ["global_grouping", "riconv2_features_global", "risp_features_global"]

FeatureKind = Literal["risp", "riconv2"]
LraSign = Literal["invariant", "raw"]
GlobalCenter = Literal["centroid", "origin"]


def global_grouping(
    xyz: Tensor,
    normals: Tensor,
    *,
    kind: FeatureKind = "risp",
    lra_sign: LraSign = "invariant",
    global_center: GlobalCenter = "centroid",
    faithful_ordering: bool = False,
    shift: int = 1,
    tie_rtol: float | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Centre, axis, features and ring order of the global layer (see the module table).

    Args:
        xyz: ``(B, N, 3)`` coordinates; ``normals`` ``(B, N, 3)`` (also the sign rule's input).
        kind: ``"risp"`` (14 channels, ring shift ``shift``) or ``"riconv2"`` (8 channels).
        lra_sign, global_center, faithful_ordering: the switches of the module table.
        shift: RISP ring shift (the reference uses 1 here).
        tie_rtol: the fixed mode's tie tolerance (default: the dtype's,
            :func:`pointlib.features.ordering.default_tie_rtol`).

    Returns:
        ``(center (B, 1, 3), axis (B, 1, 3), feats (B, 1, N, F), idx_ordered (B, 1, N))``.
    """
    if kind not in ("risp", "riconv2"):
        raise ValueError(f"kind must be 'risp' or 'riconv2', got {kind!r}")
    if lra_sign not in ("invariant", "raw"):
        raise ValueError(f"lra_sign must be 'invariant' or 'raw', got {lra_sign!r}")
    if global_center not in ("centroid", "origin"):
        raise ValueError(f"global_center must be 'centroid' or 'origin', got {global_center!r}")
    B, N, _ = xyz.shape
    center = xyz.mean(dim=1, keepdim=True)
    idx = torch.arange(N, device=xyz.device).expand(B, 1, N)
    axis_rtol = None
    if lra_sign == "raw":
        axis = global_reference_axis(xyz, faithful=True)
    else:
        rtol = default_tie_rtol(xyz.dtype) if tie_rtol is None else float(tie_rtol)
        axis, axis_rtol = global_axis_with_tolerance(xyz, rtol, normals)
        axis_rtol = axis_rtol.unsqueeze(1)  # (B, 1)
    axis = axis.reshape(B, 1, 3)
    origin = torch.zeros_like(center) if global_center == "origin" else None
    common = dict(faithful=faithful_ordering, origin=origin, tie_rtol=tie_rtol, axis_rtol=axis_rtol)
    if kind == "risp":
        feats, idx_ordered = risp_features(xyz, normals, center, axis, idx, shift=shift, **common)
    else:
        feats, idx_ordered = riconv2_features(xyz, normals, center, axis, idx, **common)
    return center, axis, feats, idx_ordered


def _switches(faithful: bool) -> dict:
    """The three switches of ``faithful`` (all reference, or all fixed)."""
    if faithful:
        return {"lra_sign": "raw", "global_center": "origin", "faithful_ordering": True}
    return {"lra_sign": "invariant", "global_center": "centroid", "faithful_ordering": False}


def risp_features_global(
    xyz: Tensor,
    normals: Tensor,
    *,
    shift: int = 1,
    faithful: bool = False,
    tie_rtol: float | None = None,
) -> tuple[Tensor, Tensor]:
    """RISP features of the global (``group_all``) layer: one centre, all ``N`` points.

    The centre is the centroid, its axis the global LRA
    (:func:`pointlib.features.global_reference_axis`, same ``faithful``), the neighbour list
    ``arange(N)`` (slot 0 = point 0 in faithful mode), and the ordering is centred at the
    centroid. Feature origin ``p``: the **world origin** in faithful mode (the reference's
    ``v_i = x_i``; invariant only to rotations about the origin, not to translations), the
    **centroid** in fixed mode (invariant to rotations and translations).

    Args:
        xyz: ``(B, N, 3)`` float32/float64 coordinates.
        normals: ``(B, N, 3)`` normals.
        shift: ring shift (the reference uses 1 here).
        faithful: reference behaviour (raw eigensolver sign, origin as ``p``).
        tie_rtol: fixed mode's tie tolerance (see :func:`pointlib.features.risp_features`).

    Returns:
        ``(feats (B, 1, N, 14), idx_ordered (B, 1, N))``.
    """
    check_cloud(xyz, "xyz")
    check_normals(normals, xyz, "normals", "xyz")
    out = global_grouping(
        xyz, normals, kind="risp", shift=shift, tie_rtol=tie_rtol, **_switches(faithful)
    )
    return out[2], out[3]


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
    out = global_grouping(xyz, normals, kind="riconv2", tie_rtol=tie_rtol, **_switches(faithful))
    return out[2], out[3]
