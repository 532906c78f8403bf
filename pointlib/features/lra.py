"""Local reference axes (LRA, weighted PCA, spec §1.6) and normal estimation.

For a query ``q`` and its neighbourhood ``{x_j}`` (the ``k`` nearest points including ``q``
itself for the local axis; all points around the centroid for the global one):

* ``g_j = x_j - q``, ``d_j = ‖g_j‖``, ``w_j = (d_max - d_j) / Σ_k (d_max - d_k)`` (the farthest
  neighbour gets weight 0; all-equal distances give 0/0, which becomes ``w_j = 1``);
* ``C = Σ_j w_j g_j g_jᵀ``; the axis is the eigenvector of the **smallest** eigenvalue of ``C``
  (``torch.linalg.eigh``, ascending), normalised.

**Sign.** An eigenvector's sign is arbitrary. ``faithful=True`` keeps whatever
``torch.linalg.eigh`` returns (the reference behaviour; it flips under rotation for many
clouds, which breaks exact rotation invariance, spec §1.6 / §8 item 2). ``faithful=False`` picks
the sign with a rotation-invariant rule: the first of these scores whose magnitude clears a
relative threshold (``1000·eps`` times its scale) decides ``score >= 0``:

===================  ======================================  =================================
rule                  score                                   scale
===================  ======================================  =================================
``"moment"``          ``Σ w_j (g_j·v)³`` (third moment)        ``Σ w_j ‖g_j‖³``
then                  ``Σ w_j (g_j·v)`` (weighted mean offset) ``Σ w_j ‖g_j‖``
then                  ``(q - c)·v`` (away from the centroid)   ``‖q - c‖``
===================  ======================================  =================================

``"outward"`` (used by :func:`estimate_normals`) tries the centroid rule first, then the two
moments. The global axis uses the two moments (its ``q`` *is* the centroid), then, when the
model passes its normals, the weighted mean normal ``Σ w_j (n_j·v)`` (a planar cloud: every
position moment is zero, the normals still point to one side). Each score is a
function of rotation-invariant quantities times ``v``, so with the rule ``R·v`` is chosen for the
rotated cloud exactly when ``v`` was chosen for the original.

**Symmetric clouds.** When every score is below its threshold (configurations that a half-turn
maps onto themselves with ``v -> -v``), no sign is a function of the geometry alone; fixed mode
then decides with an **index-weighted** mean offset ``Σ h_j w_j (g_j·v)``, where
``h_j = 1 + cos(2.39996·j)/2`` depends only on the point's index ``j`` (which a rotation does not
permute), so the choice is still rotation equivariant. Likewise, when the two smallest
eigenvalues of the global axis are (nearly) equal (bottles, cans, spheres, cubes: the axis is
not determined by the covariance), :func:`global_axis_with_tolerance` takes the axis from the
index-weighted covariance ``Σ h_j w_j g_j g_jᵀ``. Only when even that is degenerate (all points
on a line, duplicates only, ``k = 1``) is the axis arbitrary; the output is always finite.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from pointlib.features._common import check_cloud, check_int, dot, group
from pointlib.features.ordering import default_tie_rtol
from pointlib.ops import knn

__all__ = [
    "estimate_normals",
    "global_axis_with_tolerance",
    "global_reference_axis",
    "local_reference_axis",
]

Orient = Literal["moment", "outward"]

#: Relative threshold (times machine epsilon) for the sign scores in fixed mode.
SIGN_EPS = 1000.0

#: The global axis counts as degenerate when the gap between its two smallest eigenvalues,
#: relative to the largest, is at most this many tie tolerances.
DEGENERATE_GAP = 64.0

#: Golden angle: ``cos(GOLDEN * j)`` never repeats over integer ``j``.
GOLDEN = 2.399963229728653


def index_weights(idx: Tensor, dtype: torch.dtype) -> Tensor:
    """Fixed positive weights ``1 + cos(GOLDEN·j)/2 ∈ [0.5, 1.5]`` of point indices ``j``.

    A function of the index alone, so sums weighted by it are rotation equivariant while they
    break the symmetries of symmetric clouds. ``idx`` any shape, int64 -> same shape, ``dtype``.
    """
    return 1.0 + 0.5 * torch.cos(idx.to(torch.float64) * GOLDEN).to(dtype)


def _weights(d: Tensor) -> Tensor:
    """Spec §1.6 weights over the last dim of distances ``d``; 0/0 becomes 1 (as the reference)."""
    diff = d.amax(-1, keepdim=True) - d
    total = diff.sum(-1, keepdim=True)
    return torch.where(total > 0, diff / torch.where(total > 0, total, 1.0), 1.0)


def _smallest_axis(g: Tensor, w: Tensor) -> Tensor:
    """Unit eigenvector of the smallest eigenvalue of ``Σ_j w_j g_j g_jᵀ`` -> ``(..., 3)``."""
    cov = torch.einsum("...j,...ja,...jb->...ab", w, g, g)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    _, vecs = torch.linalg.eigh(cov)
    v = vecs[..., 0]
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(
        torch.finfo(v.dtype).tiny
    )


def _orient(v: Tensor, scores: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Flip ``v`` so that the first decisive score is ``>= 0`` (see the module docstring)."""
    tol = SIGN_EPS * torch.finfo(v.dtype).eps
    sign = torch.ones_like(v[..., 0])
    decided = torch.zeros_like(sign, dtype=torch.bool)
    for score, scale in scores:
        ok = ~decided & (score.abs() > tol * scale)
        sign = torch.where(ok, torch.where(score >= 0, 1.0, -1.0).to(v.dtype), sign)
        decided = decided | ok
    return v * sign.unsqueeze(-1)


def _moment_scores(v: Tensor, g: Tensor, w: Tensor) -> list[tuple[Tensor, Tensor]]:
    proj = dot(g, v.unsqueeze(-2))
    d = torch.linalg.vector_norm(g, dim=-1)
    return [
        ((w * proj**3).sum(-1), (w * d**3).sum(-1)),
        ((w * proj).sum(-1), (w * d).sum(-1)),
    ]


def _mean_score(v: Tensor, g: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """The weighted mean projection ``Σ w_j (g_j·v)`` and its scale ``Σ w_j ‖g_j‖``.

    With index weights ``w = h·w`` it is the last resort of the sign rule; with normals for
    ``g`` it is the mean-normal rule of the global axis.
    """
    proj = dot(g, v.unsqueeze(-2))
    return (w * proj).sum(-1), (w * torch.linalg.vector_norm(g, dim=-1)).sum(-1)


def local_reference_axis(
    xyz: Tensor,
    k: int = 32,
    *,
    faithful: bool = False,
    orient: Orient = "moment",
) -> Tensor:
    """Per-point LRA: weighted-PCA normal direction of the ``k`` nearest points (spec §1.6).

    Args:
        xyz: ``(B, N, 3)`` float32/float64 coordinates.
        k: neighbourhood size including the point itself (default 32, the reference's
            ``nsample``); clamped to ``N``.
        faithful: keep the raw ``torch.linalg.eigh`` sign (reference; not rotation invariant).
        orient: fixed-mode sign rule, ``"moment"`` (third moment first) or ``"outward"`` (away
            from the cloud centroid first); see the module docstring. Ignored when faithful.

    Returns:
        ``(B, N, 3)`` unit axes in the dtype of ``xyz``. Fixed mode: ``LRA(R x) = R LRA(x)``
        for every rotation ``R`` away from the degenerate cases of the module docstring.

    Example:
        >>> xyz, _ = pointlib.testing.make_cloud(1, 64)
        >>> local_reference_axis(xyz, k=16).shape
        torch.Size([1, 64, 3])
    """
    check_cloud(xyz, "xyz")
    k = check_int(k, "k", 1)
    if orient not in ("moment", "outward"):
        raise ValueError(f"orient must be 'moment' or 'outward', got {orient!r}")
    k = min(k, xyz.shape[1])
    idx, _ = knn(xyz, k)
    g = group(xyz, idx) - xyz.unsqueeze(-2)  # (B, N, k, 3)
    w = _weights(torch.linalg.vector_norm(g, dim=-1))
    v = _smallest_axis(g, w)
    if faithful:
        return v
    scores = _moment_scores(v, g, w)
    out = xyz - xyz.mean(1, keepdim=True)
    outward = (dot(out, v), torch.linalg.vector_norm(out, dim=-1))
    scores = [*scores, outward] if orient == "moment" else [outward, *scores]
    return _orient(v, [*scores, _mean_score(v, g, index_weights(idx, xyz.dtype) * w)])


def global_reference_axis(xyz: Tensor, *, faithful: bool = False) -> Tensor:
    """Global LRA: weighted PCA of all points about the centroid (spec §1.6, global layer).

    ``g_j = x_j - centroid``, ``d_j = ‖g_j‖``, weights and eigenvector as for
    :func:`local_reference_axis`.

    Args:
        xyz: ``(B, N, 3)`` float32/float64 coordinates.
        faithful: keep the raw eigensolver sign (reference); otherwise the moment rule.

    Returns:
        ``(B, 3)`` unit axes. Fixed mode: equivariant, ``axis(R x) = R axis(x)``; see
        :func:`global_axis_with_tolerance` for symmetric clouds.
    """
    check_cloud(xyz, "xyz")
    if not faithful:
        return global_axis_with_tolerance(xyz, default_tie_rtol(xyz.dtype))[0]
    g = xyz - xyz.mean(1, keepdim=True)  # (B, N, 3)
    w = _weights(torch.linalg.vector_norm(g, dim=-1))
    return _smallest_axis(g, w)


def global_axis_with_tolerance(
    xyz: Tensor, rtol: float, normals: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Fixed-mode global axis and how well rounding noise determines its direction.

    The weighted PCA of :func:`global_reference_axis` with the invariant sign rule. When the
    position moments cannot fix the sign (every point in one plane through the centroid, or a
    cloud that a half-turn maps onto itself) and ``normals`` are given, the weighted mean normal
    ``Σ w_j (n_j·v)`` decides next, before the index-weighted rules. When the
    gap between the two smallest eigenvalues, relative to the largest, is at most
    ``DEGENERATE_GAP · rtol`` (rotational symmetry: the covariance does not fix the axis), the
    axis comes from the index-weighted covariance ``Σ h_j w_j g_j g_jᵀ`` instead (module
    docstring), whose gap is then used.

    Args:
        xyz: ``(B, N, 3)`` float32/float64 coordinates (unchecked).
        rtol: relative rounding tolerance (see :func:`pointlib.features.ordering.tolerant_order`).
        normals: optional ``(B, N, 3)`` normals (rotated with ``xyz``), used by the sign rule.

    Returns:
        ``axis (B, 3)`` unit vectors and ``axis_rtol (B,)``: the direction's uncertainty in
        radians, ``rtol · (1 + 1 / gap)``.
    """
    N = xyz.shape[1]
    g = xyz - xyz.mean(1, keepdim=True)  # (B, N, 3)
    w = _weights(torch.linalg.vector_norm(g, dim=-1))
    h = index_weights(torch.arange(N, device=xyz.device), xyz.dtype)
    v, gap = _smallest_axis_gap(g, w)
    degenerate = gap <= DEGENERATE_GAP * rtol
    if bool(degenerate.any()):
        v_h, gap_h = _smallest_axis_gap(g, w * h)
        v = torch.where(degenerate.unsqueeze(-1), v_h, v)
        gap = torch.where(degenerate, gap_h, gap)
    scores = _moment_scores(v, g, w)
    if normals is not None:
        scores.append(_mean_score(v, normals, w))
    scores.append(_mean_score(v, g, w * h))
    if normals is not None:
        scores.append(_mean_score(v, normals, w * h))
    v = _orient(v, scores)
    tiny = torch.finfo(xyz.dtype).tiny
    return v, rtol * (1.0 + 1.0 / gap.clamp_min(tiny)).clamp_max(1.0 / max(rtol, tiny))


def _smallest_axis_gap(g: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """``_smallest_axis`` and the relative gap ``(λ₂ - λ₁) / λ₃`` of its eigenvalues."""
    cov = torch.einsum("...j,...ja,...jb->...ab", w, g, g)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    vals, vecs = torch.linalg.eigh(cov)
    v = vecs[..., 0]
    tiny = torch.finfo(v.dtype).tiny
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(tiny)
    return v, (vals[..., 1] - vals[..., 0]) / vals[..., 2].abs().clamp_min(tiny)


def estimate_normals(xyz: Tensor, k: int = 32, *, faithful: bool = False) -> Tensor:
    """Normals for clouds that have none: the LRA, oriented away from the cloud centroid.

    The reference code substitutes the LRA for missing normals (spec §1.6). Fixed mode orients
    each axis outward (``(q - centroid)·n >= 0``, falling back to the moment rules), which is
    rotation invariant and gives consistent normals on roughly star-shaped objects; faithful mode
    keeps the eigensolver's sign (identical to ``local_reference_axis(xyz, k, faithful=True)``).

    Args:
        xyz: ``(B, N, 3)`` float32/float64 coordinates.
        k: neighbourhood size including the point (default 32), clamped to ``N``.
        faithful: raw eigensolver sign.

    Returns:
        ``(B, N, 3)`` unit normals.
    """
    return local_reference_axis(xyz, k, faithful=faithful, orient="outward")
