"""The 14 rotation-invariant surface features of RISurConv (RISP, spec §1.4).

Per centre ``p`` (normal ``n_p``) and its neighbours in angular order ``x_0 … x_{K-1}`` (spec §1.3,
:mod:`pointlib.features.ordering`), cyclic in ``i``, with ring shift ``s``, ``v_i = x_i - p`` and
``û(a) = a / (‖a‖ + 1e-7)``, the two triangles ``T1 = (p, x_i, x_{i-s})`` and
``T2 = (p, x_i, x_{i+s})`` give:

====  ===============================================  ====================================
ch    formula                                          meaning
====  ===============================================  ====================================
0     ``‖v_i‖``                                         distance p–x_i
1     ``û(v_i)·n_p``                                    edge p→x_i vs n_p
2     ``-û(v_i)·n_i``                                   edge vs n_i
3     ``û(v_i)·û(v_{i-s})``                             T1 angle at p
4     ``û(v_{i-s})·n_p``                                edge p→x_{i-s} vs n_p
5     ``-û(v_{i-s})·n_{i-s}``                           edge p→x_{i-s} vs n_{i-s}
6     ``û(x_{i-s}-p)·û(x_{i-s}-x_i)``                   T1 angle at x_{i-s}
7     ``-û(x_i-x_{i-s})·n_i``                           edge x_{i-s}→x_i vs n_i
8     ``û(x_i-x_{i-s})·n_{i-s}``                        same edge vs n_{i-s}
9     ``û(v_{i+s})·û(v_i)``                             T2 angle at p
10    ``û(v_{i+s})·û(x_{i+s}-x_i)``                     T2 angle at x_{i+s}
11    ``û(x_{i+s}-x_i)·n_{i+s}``                        edge x_i→x_{i+s} vs n_{i+s}
12    ``û(v_i)·n_{i+s}``                                edge p→x_i vs n_{i+s}
13    ``(û(v_{i+s})×û(v_i))·(û(v_{i-s})×û(v_i))``       T2/T1 dihedral (un-normalised)
====  ===============================================  ====================================
"""

from __future__ import annotations

import torch
from torch import Tensor

from pointlib.features._common import (
    check_cloud,
    check_int,
    check_normals,
    check_same,
    dot,
    group_planes,
    norm,
    planes,
    unit,
)
from pointlib.features.lra import global_axis_with_tolerance, global_reference_axis
from pointlib.features.ordering import _check_idx, default_tie_rtol, order_planes

__all__ = ["RISP_CHANNELS", "risp_features", "risp_features_global"]

#: Channel names in output order (the reference code's variable names, spec §1.4).
RISP_CHANNELS: tuple[str, ...] = (
    "length_0",
    "sin_angle_1_0",
    "sin_angle_2_0",
    "angle_0",
    "sin_angle_1_1",
    "sin_angle_2_1",
    "angle_1",
    "sin_angle_1_2",
    "sin_angle_2_2",
    "new_sin_angle_1_1",
    "new_sin_angle_1_2",
    "new_sin_angle_2_1",
    "new_sin_angle_2_2",
    "sin_angle_3",
)


def _check_inputs(
    xyz: Tensor,
    normals: Tensor,
    centers: Tensor,
    center_normals: Tensor,
    idx: Tensor,
    origin: Tensor | None,
) -> Tensor:
    check_cloud(xyz, "xyz")
    check_normals(normals, xyz, "normals", "xyz")
    check_cloud(centers, "centers")
    check_same(centers, xyz, "centers", "xyz")
    check_normals(center_normals, centers, "center_normals", "centers")
    if origin is not None:
        check_cloud(origin, "origin")
        if origin.shape != centers.shape:
            raise ValueError(
                f"origin must have the shape of centers {tuple(centers.shape)}, "
                f"got {tuple(origin.shape)}"
            )
        check_same(origin, centers, "origin", "centers")
    return _check_idx(idx, xyz, centers)


def ordered_neighbourhood(
    xyz: Tensor,
    normals: Tensor,
    centers: Tensor,
    center_normals: Tensor,
    idx: Tensor,
    *,
    faithful: bool,
    tie_rtol: float | None = None,
    axis_rtol: Tensor | float | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Order (spec §1.3) and group: ``(x_ord, n_ord, idx_ordered, key)``, no input checks.

    ``x_ord``/``n_ord`` are coordinate planes ``(B, 3, K, M)``; ``key`` is ``(B, K, M)`` (the
    internal layout, see :func:`pointlib.features._common.group_planes`); ``idx_ordered`` is the
    public ``(B, M, K)`` int64. Fixed mode uses :func:`~pointlib.features.ordering.tolerant_order`
    with ``tie_rtol`` (default :func:`~pointlib.features.ordering.default_tie_rtol`) times the
    cloud's scale, and ``axis_rtol`` (``(B, M)`` or a float; default ``tie_rtol``) as the
    uncertainty of the axes' direction.
    """
    idx_t = idx.transpose(1, 2)
    xg = group_planes(xyz, idx_t)
    v = xg - planes(centers)
    key, perm = order_planes(
        v, planes(center_normals), idx_t, xyz,
        faithful=faithful, tie_rtol=tie_rtol, axis_rtol=axis_rtol,
    )  # fmt: skip
    idx_ord_t = idx_t.gather(1, perm)
    x_ord = xg.gather(2, perm.unsqueeze(1).expand_as(xg))
    idx_ordered = idx_ord_t.transpose(1, 2).contiguous()
    return x_ord, group_planes(normals, idx_ord_t), idx_ordered, key


def to_public(chans: tuple[Tensor, ...]) -> Tensor:
    """Stack ``(B, K, M)`` channels into the public ``(B, M, K, C)``.

    The result is a permuted view of a contiguous ``(B, C, K, M)`` tensor, so
    ``feats.permute(0, 3, 2, 1)`` (the networks' Conv2d layout, spec §1.5) is free; building a
    contiguous channels-last tensor instead would cost more than all the feature maths.
    """
    return torch.stack(chans, dim=1).permute(0, 3, 2, 1)


def risp_features(
    xyz: Tensor,
    normals: Tensor,
    centers: Tensor,
    center_normals: Tensor,
    idx: Tensor,
    *,
    shift: int = 1,
    faithful: bool = False,
    origin: Tensor | None = None,
    tie_rtol: float | None = None,
    axis_rtol: Tensor | float | None = None,
) -> tuple[Tensor, Tensor]:
    """The 14 RISP features of every centre's ordered neighbourhood (spec §1.3–1.4).

    Args:
        xyz: ``(B, N, 3)`` float32/float64 neighbour coordinates.
        normals: ``(B, N, 3)`` their normals (same dtype; unit length expected, zero allowed).
        centers: ``(B, M, 3)`` centres ``p`` (the ordering origin).
        center_normals: ``(B, M, 3)`` centre normals ``n_p`` (the ordering axis; the LRA in the
            global layer).
        idx: ``(B, M, K)`` int64 neighbour indices into ``xyz``. Faithful mode uses its order
            (slot-0 sign rule); fixed mode expects distance-sorted kNN (only exact ties depend
            on the order).
        shift: ring shift ``s >= 1`` (see :func:`pointlib.features.ring_shift`); cyclic mod ``K``.
        faithful: reference ordering (slot 0 forced, reference neighbour mid-ring) instead of
            the fixed ordering (reference first, centre last); see
            :mod:`pointlib.features.ordering`. The 14 formulas are the same in both modes.
        origin: optional ``(B, M, 3)`` point used as ``p`` in the feature formulas
            (``v_i = x_i - origin``) while the ordering stays centred at ``centers``. The
            reference's global layer uses the world origin (zeros); default ``centers``.
        tie_rtol: fixed mode's tie tolerance relative to the cloud's scale ``max‖x‖``
            (default ``None``: :func:`~pointlib.features.ordering.default_tie_rtol` of the
            dtype, 512 machine epsilons; ``0``: exact ties only). Comparisons of the ring order
            closer than the tolerance count as ties and are broken by neighbour index, so the
            order does not change when rounding noise of a rotation moves tied keys
            (:func:`~pointlib.features.ordering.tolerant_order`). Ignored when faithful.
        axis_rtol: direction uncertainty of ``center_normals`` in radians, ``(B, M)`` or a float
            (default ``tie_rtol``; the global layer passes the conditioning of its LRA).

    Returns:
        ``(feats, idx_ordered)``: ``feats (B, M, K, 14)`` in the channel order of
        :data:`RISP_CHANNELS` (module docstring table) and ``idx_ordered (B, M, K)`` int64, the
        neighbour indices in ring order (use it to group per-neighbour features). ``feats`` is
        a permuted view of a contiguous ``(B, 14, K, M)`` tensor: ``feats.permute(0, 3, 2, 1)``
        is the Conv2d input ``[B, 14, K, M]`` of spec §1.5 at no cost (use ``reshape``, not
        ``view``, on ``feats`` itself).

    Example:
        >>> xyz, nrm = pointlib.testing.make_cloud(2, 64)
        >>> idx, _ = pointlib.ops.knn(xyz, 8, xyz[:, :16])
        >>> feats, idx_o = risp_features(xyz, nrm, xyz[:, :16], nrm[:, :16], idx)
        >>> feats.shape, idx_o.shape
        (torch.Size([2, 16, 8, 14]), torch.Size([2, 16, 8]))
    """
    idx = _check_inputs(xyz, normals, centers, center_normals, idx, origin)
    s = check_int(shift, "shift", 1)
    x, n, idx_ordered, _ = ordered_neighbourhood(
        xyz, normals, centers, center_normals, idx,
        faithful=faithful, tie_rtol=tie_rtol, axis_rtol=axis_rtol,
    )  # fmt: skip
    p = planes(centers if origin is None else origin)
    return _risp_from_ordered(x, n, p, planes(center_normals), s), idx_ordered


def _risp_from_ordered(x: Tensor, n: Tensor, p: Tensor, n_p: Tensor, s: int) -> Tensor:
    """The 14 channels from ordered planes ``x, n (B, 3, K, M)``, ``p, n_p (B, 3, 1, M)``.

    Uses exact shift identities (e.g. ``û(v_{i-s})·n_p`` is channel 1 rolled by ``s``) so only
    four vector rolls are needed; channel 13 uses the Lagrange identity
    ``(a×b)·(c×b) = (a·c)(b·b) - (a·b)(b·c)``.
    """
    v = x - p
    u0 = unit(v, 1)
    um = u0.roll(s, 2)  # û(v_{i-s})
    dm = unit(x - x.roll(s, 2), 1)  # û(x_i - x_{i-s})
    a_p = dot(u0, n_p, 1)  # û(v_i)·n_p
    a_n = dot(u0, n, 1)  # û(v_i)·n_i
    c3 = dot(u0, um, 1)  # û(v_i)·û(v_{i-s})
    e = dot(um, dm, 1)  # û(v_{i-s})·û(x_i - x_{i-s})
    f = dot(dm, n, 1)  # û(x_i - x_{i-s})·n_i
    c9 = c3.roll(-s, 1)  # û(v_{i+s})·û(v_i)
    # û(v_{i+s})·û(v_{i-s}): q_j = û(v_j)·û(v_{j-2s}) at j = i + s
    q = dot(u0, u0.roll(2 * s, 2), 1).roll(-s, 1)
    chans = (
        norm(v, 1),
        a_p,
        -a_n,
        c3,
        a_p.roll(s, 1),  # û(v_{i-s})·n_p
        -a_n.roll(s, 1),  # -û(v_{i-s})·n_{i-s}
        -e,  # û(x_{i-s}-p)·û(x_{i-s}-x_i); û(-a) = -û(a) exactly
        -f,
        dot(dm, n.roll(s, 2), 1),  # û(x_i - x_{i-s})·n_{i-s}
        c9,
        dot(u0, dm, 1).roll(-s, 1),  # û(v_{i+s})·û(x_{i+s} - x_i)
        f.roll(-s, 1),  # û(x_{i+s} - x_i)·n_{i+s}
        dot(um, n, 1).roll(-s, 1),  # û(v_i)·n_{i+s}
        q * dot(u0, u0, 1) - c9 * c3,  # (û_{i+s}×û_i)·(û_{i-s}×û_i)
    )
    return to_public(chans)


def global_layer_inputs(
    xyz: Tensor,
    *,
    faithful: bool,
    tie_rtol: float | None = None,
    normals: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Centre, axis, neighbour list, feature origin and axis tolerance of the global layer.

    Returns ``(centroid (B, 1, 3), axis (B, 1, 3), idx (B, 1, N) = arange(N), origin,
    axis_rtol)`` where ``origin`` is zeros ``(B, 1, 3)`` (the world origin) in faithful mode and
    ``None`` (the centroid) in fixed mode, and ``axis_rtol`` is ``None`` (faithful) or the
    ``(B, 1)`` direction uncertainty of the fixed global axis
    (:func:`pointlib.features.lra.global_axis_with_tolerance`, which also takes the optional
    ``(B, N, 3)`` ``normals`` for its sign rule).
    """
    B, N, _ = xyz.shape
    centroid = xyz.mean(1, keepdim=True)
    idx = torch.arange(N, device=xyz.device).expand(B, 1, N)
    if faithful:
        axis = global_reference_axis(xyz, faithful=True).unsqueeze(1)
        return centroid, axis, idx, torch.zeros_like(centroid), None
    rtol = default_tie_rtol(xyz.dtype) if tie_rtol is None else float(tie_rtol)
    axis, axis_rtol = global_axis_with_tolerance(xyz, rtol, normals)
    return centroid, axis.unsqueeze(1), idx, None, axis_rtol.unsqueeze(1)


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
        tie_rtol: fixed mode's tie tolerance (see :func:`risp_features`).

    Returns:
        ``(feats (B, 1, N, 14), idx_ordered (B, 1, N))``.
    """
    check_cloud(xyz, "xyz")
    check_normals(normals, xyz, "normals", "xyz")
    centroid, axis, idx, origin, axis_rtol = global_layer_inputs(
        xyz, faithful=faithful, tie_rtol=tie_rtol, normals=normals
    )
    return risp_features(
        xyz, normals, centroid, axis, idx, shift=shift, faithful=faithful, origin=origin,
        tie_rtol=tie_rtol, axis_rtol=axis_rtol,
    )  # fmt: skip
