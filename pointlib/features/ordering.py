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

Fixed mode (``faithful=False``) expects a kNN list sorted by distance (as :func:`pointlib.ops.knn`
returns it) but does not depend on its order except for exact ties: no slot is special; the
reference neighbour gets key ``+1`` (first); other ``σ = 0`` neighbours get the key of their true
angle (``+1`` if ``c ≥ 0``, else ``-1``); neighbours with a (numerically) zero tangent offset
(``ℓ_j <= 64·eps·max ℓ``, e.g. the centre itself) get key ``-3`` (last, closing the ring before
the reference). Ties keep input order (stable sort), so the result is deterministic and, for
points in general position, invariant under rotations of points and normals.
"""

from __future__ import annotations

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
    planes,
    sq_norm,
    triple,
)

__all__ = ["NeighborOrder", "order_neighbors", "ring_shift"]

#: Relative threshold (times machine epsilon) under which a tangent offset counts as zero in
#: fixed mode.
ZERO_TANGENT_EPS = 64.0


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
        faithful: reference rule (slot-0 sign forced) or fixed rule; see the module docstring.

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


def order_neighbors(
    xyz: Tensor,
    centers: Tensor,
    axis: Tensor,
    idx: Tensor,
    *,
    faithful: bool = False,
) -> NeighborOrder:
    """Order each centre's neighbours by clockwise angle about its axis (spec §1.3).

    Args:
        xyz: ``(B, N, 3)`` float32/float64 point coordinates.
        centers: ``(B, M, 3)`` centre positions ``p`` (the ordering origin; the centroid in the
            global layer).
        axis: ``(B, M, 3)`` reference axes ``n`` (centre normals, or the LRA), used as given.
        idx: ``(B, M, K)`` int64 (or int32) neighbour indices into ``xyz``. Faithful mode
            depends on its order through slot 0; fixed mode only through exact ties.
        faithful: reproduce the reference ordering (module docstring) instead of the fixed one.

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
    key, perm = sort_keys(ordering_keys(v, planes(axis), faithful=faithful))
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
