"""Angular ordering of neighbours around a reference axis (spec §1.3) and the ring shift rule.

The sort key of neighbour ``j`` of a centre ``p`` with axis ``n`` (the centre's normal, or the
global LRA in the global layer) is built from its tangent-plane direction ``û_j``:

* ``t_j = v_j - (v_j·n) n`` with ``v_j = x_j - p``; ``ℓ_j = ‖t_j‖``; ``û_j = t_j / ℓ_j``
  (0 when ``ℓ_j = 0``);
* reference direction ``r = û_{j*}``, ``j* = argmax_j ℓ_j`` (first maximum on ties);
* ``c_j = û_j·r``, ``σ_j = sign((û_j × r)·n)``; key ``k_j = σ_j c_j - (1 - σ_j)``.

The key decreases monotonically with the clockwise angle ``ψ ∈ [0, 2π)`` about ``+n`` measured
from ``r`` (``σ=+1``: ``ψ ∈ (0, π)``, key ``cos ψ ∈ (-1, 1)``; ``σ=-1``: ``ψ ∈ (π, 2π)``, key
``-cos ψ - 2 ∈ (-3, -1)``), so sorting by key *descending* sorts by increasing ``ψ``.

Faithful mode (``faithful=True``) reproduces the reference code for the ``idx`` order it is
given: ``σ`` of **slot 0** of the input is forced to ``+1``; every ``σ = 0`` neighbour (the
reference itself, the centre, exactly collinear points) gets key ``-1``, i.e. the ``ψ ≈ π`` slot.
The reference's sort is unstable; here ties are broken deterministically by input slot (a stable
descending sort). Cross products are always taken along ``dim=-1`` (the reference's
"first size-3 dimension" bug is fixed unconditionally, spec §9), and ``(û_{j*} × r)`` is exactly
zero (the reference's CPU ``torch.cross`` can round it to ``±tiny``, spec §8 item 17; that
platform noise is not reproduced).

Fixed mode (``faithful=False``) does not depend on the order of ``idx``: no slot is special; the
reference neighbour comes first (key ``+1``); other ``σ = 0`` neighbours get the key of their true
angle (``+1`` if ``c ≥ 0``, else ``-1``); neighbours with a (numerically) zero tangent offset
(the centre itself, duplicates, points along the axis) come last (key ``-3``). Every comparison
is made with a **tie tolerance** (:func:`tolerant_order`): tangent lengths, angles and the
"collinear with the reference" test treat differences below the rounding noise of the input
(``TIE_EPS`` machine epsilons times ``max‖x‖``) as ties, and ties are broken by the neighbour's
index. Real CAD shapes are full of exact ties, which a rotation's rounding noise would otherwise
decide differently each time; with the tolerance the ring order, hence the features, are the
same for every rotation of the input, and away from ties the order is exactly the rule above.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from pointlib.features._common import (
    check_cloud,
    check_index,
    check_normals,
    check_same,
    dot,
    group_planes,
    norm,
    planes,
    sq_norm,
    triple,
)

__all__ = ["NeighborOrder", "order_neighbors", "ring_shift"]

#: Relative threshold (times machine epsilon) under which a tangent offset counts as zero in
#: the exact fixed rule (:func:`ordering_keys`).
ZERO_TANGENT_EPS = 64.0

#: Fixed mode's tie tolerance in machine epsilons of the input dtype (see :func:`tolerant_order`):
#: comparisons closer than ``TIE_EPS · eps · max‖x‖`` (lengths) count as ties.
TIE_EPS = 512.0

#: Angle given to zero tangent offsets: beyond ``2π`` plus any angular tolerance, so they close
#: the ring.
ZERO_PSI = 16.0


class NeighborOrder(NamedTuple):
    """Result of :func:`order_neighbors` (all ``(B, M, K)``).

    Attributes:
        idx: int64 neighbour indices into ``xyz`` in the new (angular) order.
        perm: int64 positions into the input ``idx``: ``idx_ordered = idx.gather(-1, perm)``.
        key: sort keys in the new order (non-increasing along ``K``), input dtype.
    """

    idx: Tensor
    perm: Tensor
    key: Tensor


def ring_shift(num_centers: int, *, faithful: bool, fixed: int = 1) -> int:
    """The ring shift ``s`` of spec §1.4 for a layer with ``num_centers`` centres ``M``.

    Faithful: ``2`` if ``M >= 1024`` else ``1`` (the reference's rule, spec §9 ``ring_shift``).
    Fixed: the constant ``fixed`` chosen per layer (default 1), independent of ``M``.
    """
    if faithful:
        return 2 if num_centers >= 1024 else 1
    return int(fixed)


def ordering_keys(v: Tensor, axis: Tensor, *, faithful: bool) -> Tensor:
    """Sort keys of grouped relative vectors (no checks; internal building block).

    Args:
        v: ``(B, 3, K, M)`` neighbour offsets ``x_j - p`` as coordinate planes, input slot order.
        axis: ``(B, 3, 1, M)`` reference axes ``n`` (used as given, not normalised).
        faithful: reference rule (slot-0 sign forced) or the exact fixed rule without tie
            tolerance (kept for comparison; the models use :func:`tolerant_order`).

    Returns:
        ``(B, K, M)`` keys in input slot order; sort descending along ``K`` (dim 1).
    """
    t = v - dot(v, axis, 1).unsqueeze(1) * axis
    ell2 = sq_norm(t, 1)
    ell = ell2.clamp_min(torch.finfo(v.dtype).tiny).sqrt()
    ell_max, jstar = ell.max(1, keepdim=True)  # (B, 1, M); first maximum on ties
    if faithful:
        zero = ell2 == 0
    else:
        zero = ell <= (ZERO_TANGENT_EPS * torch.finfo(v.dtype).eps) * ell_max
    u = torch.where(zero.unsqueeze(1), 0.0, t / ell.unsqueeze(1))
    r = u.gather(2, jstar.unsqueeze(1).expand(-1, 3, -1, -1))  # (B, 3, 1, M)
    c = dot(u, r, 1)
    sigma = torch.sign(triple(u, r, axis, 1))
    if faithful:
        sigma[:, 0] = 1.0
        return sigma * c - (1.0 - sigma)
    sigma = torch.where(sigma == 0, torch.where(c >= 0, 1.0, -1.0).to(v.dtype), sigma)
    key = sigma * c - (1.0 - sigma)
    key = key.scatter(1, jstar, 1.0)
    return torch.where(zero, -3.0, key)


def sort_keys(key: Tensor) -> tuple[Tensor, Tensor]:
    """Stable descending sort along ``K`` (dim 1 of ``(B, K, M)``): ``(sorted_key, perm)``.

    Ties keep input slot order.
    """
    sorted_key, perm = torch.sort(key, dim=1, descending=True, stable=True)
    return sorted_key, perm


def default_tie_rtol(dtype: torch.dtype) -> float:
    """The fixed mode's relative tie tolerance for ``dtype``: ``TIE_EPS`` machine epsilons."""
    return TIE_EPS * torch.finfo(dtype).eps


def cloud_scale(xyz: Tensor) -> Tensor:
    """``(B,)`` largest ``‖x_i‖`` of each cloud ``xyz (B, N, 3)``: the magnitude that sets the
    rounding error of rotated coordinates (rotations about the origin keep it)."""
    return torch.linalg.vector_norm(xyz, dim=-1).amax(-1)


def tolerant_order(
    v: Tensor,
    axis: Tensor,
    idx_t: Tensor,
    num_points: int,
    atol: Tensor,
    axis_rtol: Tensor | float,
) -> tuple[Tensor, Tensor]:
    """Fixed-mode ring order that is stable under rounding noise (no checks; internal).

    The order is the fixed rule of the module docstring (reference first, then increasing
    clockwise angle ``ψ``, numerically zero tangent offsets last) with every comparison made
    tolerant, and ties broken by the neighbour's **index** (which a rotation does not permute):

    * zero tangent offset: ``ℓ_j <= atol + axis_rtol·‖v_j‖``;
    * reference: the lowest index among the neighbours with ``ℓ_j >= max ℓ - atol``;
    * ``ψ_j = atan2((t_j × r)·n, t_j·r)`` has the uncertainty
      ``w_j = (atol + axis_rtol·‖v_j‖) / ℓ_j``; a neighbour within ``w_j + w_r`` of the
      reference direction (either side of it) counts as collinear with it;
    * after sorting by ``ψ``, consecutive neighbours closer than ``w_a + w_b`` are chained into
      one tie group; groups keep their ``ψ`` order, members are ordered by index (the
      reference first in its group).

    Where no comparison falls within its tolerance, the result is the exact fixed order.

    Args:
        v: ``(B, 3, K, M)`` offsets ``x_j - p`` as coordinate planes.
        axis: ``(B, 3, 1, M)`` unit reference axes.
        idx_t: ``(B, K, M)`` int64 neighbour indices (the tie-breaker).
        num_points: ``N``, the number of points ``idx_t`` indexes.
        atol: ``(B, 1, 1)`` absolute tolerance on lengths (``rtol · cloud_scale``).
        axis_rtol: uncertainty of the axis direction in radians, a float or ``(B, 1, M)``.

    Returns:
        ``(key, perm)``, each ``(B, K, M)``: the fixed-mode sort keys (``σc - (1 - σ)`` of the
        module docstring, ``+1`` for the reference and ``-3`` for zero offsets) in the new order,
        non-increasing up to the tolerance, and the positions into the input slots.
    """
    K = v.shape[2]
    two_pi = 2.0 * math.pi
    t = v - dot(v, axis, 1).unsqueeze(1) * axis
    ell = norm(t, 1)  # (B, K, M)
    noise = atol + axis_rtol * norm(v, 1)
    zero = ell <= noise
    ell_nz = torch.where(zero, -1.0, ell)
    ell_max = ell_nz.amax(1, keepdim=True)
    big = torch.iinfo(torch.int64).max
    cand = ~zero & (ell_nz >= ell_max - atol)
    jstar = torch.where(cand, idx_t, big).argmin(1, keepdim=True)  # (B, 1, M) slot
    r = t.gather(2, jstar.unsqueeze(1).expand(-1, 3, -1, -1))  # (B, 3, 1, M)
    psi = torch.atan2(triple(t, r, axis, 1), dot(t, r, 1))
    psi = torch.where(psi < 0, psi + two_pi, psi)
    w = torch.where(zero, 0.0, noise / torch.where(zero, 1.0, ell))
    w_r = w.gather(1, jstar)
    slot = torch.arange(K, device=v.device).view(1, K, 1)
    is_ref = (slot == jstar) & ~zero  # no reference when every offset is zero
    psi = torch.where(two_pi - psi <= w + w_r, psi - two_pi, psi)
    psi = torch.where(is_ref, 0.0, torch.where(zero, ZERO_PSI, psi))
    psi_s, order = torch.sort(psi, dim=1, stable=True)
    w_s = w.gather(1, order)
    link = (psi_s[:, 1:] - psi_s[:, :-1] <= w_s[:, 1:] + w_s[:, :-1]) | (psi_s[:, :-1] < 0)
    start = torch.zeros_like(psi_s[:, :1], dtype=torch.bool)
    group = torch.cat([start, ~link], 1).to(torch.int64).cumsum(1)
    tie = torch.where(is_ref.gather(1, order), 0, idx_t.gather(1, order) + 1)
    order = order.gather(1, (group * (num_points + 1) + tie).argsort(1))
    psi = psi.gather(1, order)
    key = torch.where(psi <= math.pi, torch.cos(psi), -torch.cos(psi) - 2.0)
    key = torch.where(psi == ZERO_PSI, -3.0, key)
    return key, order


def order_planes(
    v: Tensor,
    axis: Tensor,
    idx_t: Tensor,
    xyz: Tensor,
    *,
    faithful: bool,
    tie_rtol: float | None = None,
    axis_rtol: Tensor | float | None = None,
) -> tuple[Tensor, Tensor]:
    """``(key, perm)`` ``(B, K, M)`` of offsets ``v (B, 3, K, M)`` about ``axis (B, 3, 1, M)``.

    Faithful: the reference keys, stable descending sort. Fixed: :func:`tolerant_order` with
    ``tie_rtol`` (default :func:`default_tie_rtol`) times ``cloud_scale(xyz)`` and the axis
    uncertainty ``axis_rtol`` (``(B, M)`` or a float; default ``tie_rtol``). No checks.
    """
    if faithful:
        return sort_keys(ordering_keys(v, axis, faithful=True))
    rtol = default_tie_rtol(xyz.dtype) if tie_rtol is None else float(tie_rtol)
    a_rtol: Tensor | float = rtol if axis_rtol is None else axis_rtol
    if isinstance(a_rtol, Tensor):
        a_rtol = a_rtol.to(xyz.dtype).unsqueeze(1)  # (B, 1, M)
    atol = (rtol * cloud_scale(xyz)).view(-1, 1, 1)
    return tolerant_order(v, axis, idx_t, xyz.shape[1], atol, a_rtol)


def order_neighbors(
    xyz: Tensor,
    centers: Tensor,
    axis: Tensor,
    idx: Tensor,
    *,
    faithful: bool = False,
    tie_rtol: float | None = None,
) -> NeighborOrder:
    """Order each centre's neighbours by clockwise angle about its axis (spec §1.3).

    Args:
        xyz: ``(B, N, 3)`` float32/float64 point coordinates.
        centers: ``(B, M, 3)`` centre positions ``p`` (the ordering origin; the centroid in the
            global layer).
        axis: ``(B, M, 3)`` reference axes ``n`` (centre normals, or the LRA), used as given.
        idx: ``(B, M, K)`` int64 (or int32) neighbour indices into ``xyz``. Faithful mode
            depends on its order through slot 0; fixed mode does not depend on it (ties are
            broken by index).
        faithful: reproduce the reference ordering (module docstring) instead of the fixed one.
        tie_rtol: fixed mode's tie tolerance relative to ``max‖x‖`` (default
            :func:`default_tie_rtol`; see :func:`tolerant_order`).

    Returns:
        :class:`NeighborOrder` ``(idx, perm, key)``, each ``(B, M, K)``.

    Example:
        >>> xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]]])
        >>> up = torch.tensor([[[0.0, 0, 1]]])
        >>> order_neighbors(xyz, xyz[:, :1], up, torch.tensor([[[0, 1, 2, 3, 4]]])).idx.tolist()
        [[[1, 4, 3, 2, 0]]]
    """
    check_cloud(xyz, "xyz")
    check_cloud(centers, "centers")
    check_same(centers, xyz, "centers", "xyz")
    check_normals(axis, centers, "axis", "centers")
    idx = _check_idx(idx, xyz, centers)
    idx_t = idx.transpose(1, 2)
    v = group_planes(xyz, idx_t) - planes(centers)
    key, perm = order_planes(v, planes(axis), idx_t, xyz, faithful=faithful, tie_rtol=tie_rtol)
    return NeighborOrder(
        idx_t.gather(1, perm).transpose(1, 2).contiguous(),
        perm.transpose(1, 2).contiguous(),
        key.transpose(1, 2).contiguous(),
    )


def _check_idx(idx: object, xyz: Tensor, centers: Tensor) -> Tensor:
    """Check ``idx`` is ``(B, M, K)`` with ``K >= 1`` and entries in ``[0, N)``; returns int64."""
    out = check_index(idx, "idx", xyz.shape[1], xyz.shape[0], xyz.device)
    if out.dim() != 3 or out.shape[1] != centers.shape[1] or out.shape[2] < 1:
        raise ValueError(
            f"idx must have shape (B, M={centers.shape[1]}, K>=1), got {tuple(out.shape)}"
        )
    return out
