"""Behaviour under reflections and normal flips: RISP is SO(3)- but not O(3)-invariant.

Findings pinned here (generic clouds, float64):

* All 14 formulas are dot products of vectors (or of two cross products), so as functions of an
  *ordered ring* they are O(3)-invariant. What a reflection changes is the ring: the ordering sign
  ``σ = sign((û × r)·n)`` is a triple product and flips under ``det = -1``, so the ring is
  **reversed** (fixed mode: the reference stays first, the centre last, the rest reversed). The
  features are then exactly those of the original cloud on the reversed ring, which swaps the
  roles of T1 and T2 and changes the features by O(1).
* Reflecting the points **and negating every normal** (``x -> Px``, ``n -> -Pn``) keeps ``σ`` and
  hence the ring; the 8 tangent-space channels (1, 2, 4, 5, 7, 8, 11, 12) change sign and the 6
  Euclidean ones are unchanged (both modes).
* Negating every normal (no reflection) reverses the ring and negates the tangent channels.
  Negating only the centre normal reverses the ring and negates channels 1 and 4 only.
* The fixed LRA sign rules use O(3)-invariant scores, so ``LRA(Px) = P LRA(x)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from features_oracle import risp_given_order

import pointlib.features as F
from pointlib.geometry import apply_rotation, random_rotation
from pointlib.ops import knn
from pointlib.testing import make_cloud

TANGENT = [1, 2, 4, 5, 7, 8, 11, 12]
EUCLID = [0, 3, 6, 9, 10, 13]


def reflection(gen: torch.Generator) -> torch.Tensor:
    """A random improper orthogonal matrix (det = -1): a rotation composed with a mirror."""
    R = random_rotation(1, gen, dtype=torch.float64)[0]
    return R @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))


def setup(gen, B=2, N=60, M=8, K=9):
    xyz, nrm = make_cloud(B, N, generator=gen, dtype=torch.float64)
    idx, _ = knn(xyz, K, xyz[:, :M])
    return xyz, nrm, idx, M


def ring_features(xyz, nrm, ctr, cnrm, order, s):
    """Oracle features of every centre on a *given* ring order (B, M, K) (NumPy)."""
    x, n, c, cn, o = (t.numpy() for t in (xyz, nrm, ctr, cnrm, order))
    out = np.zeros((*o.shape, 14))
    for b in range(o.shape[0]):
        for m in range(o.shape[1]):
            out[b, m] = risp_given_order(x[b, o[b, m]], n[b, o[b, m]], c[b, m], cn[b, m], s)
    return torch.from_numpy(out)


def reverse_middle(order: torch.Tensor) -> torch.Tensor:
    """[ref, a_1, ..., a_m, centre] -> [ref, a_m, ..., a_1, centre] (fixed-mode reversal)."""
    return torch.cat([order[..., :1], order[..., 1:-1].flip(-1), order[..., -1:]], -1)


def test_reflection_reverses_ring(gen):
    xyz, nrm, idx, M = setup(gen)
    P = reflection(gen)
    px, pn = apply_rotation(P, xyz, nrm)
    assert torch.det(P) < 0
    f, io = F.risp_features(xyz, nrm, xyz[:, :M], nrm[:, :M], idx, shift=2)
    pf, pio = F.risp_features(px, pn, px[:, :M], pn[:, :M], idx, shift=2)
    assert torch.equal(pio, reverse_middle(io))
    # exactly the original cloud's features on the reversed ring ...
    ref = ring_features(xyz, nrm, xyz[:, :M], nrm[:, :M], pio, 2)
    torch.testing.assert_close(pf, ref, rtol=0, atol=1e-12)
    # ... which differ from the unreflected features by O(1): not O(3)-invariant
    assert float((pf - f).abs().max()) > 0.5
    # the Euclidean channel that does not involve the ring (distance) is unchanged
    torch.testing.assert_close(pf[..., 0].sort(-1)[0], f[..., 0].sort(-1)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("faithful", [False, True])
def test_reflection_with_negated_normals_negates_tangent_channels(gen, faithful):
    xyz, nrm, idx, M = setup(gen)
    idx = idx.roll(2, -1)
    P = reflection(gen)
    px, pn = apply_rotation(P, xyz, nrm)
    pn = -pn
    f, io = F.risp_features(xyz, nrm, xyz[:, :M], nrm[:, :M], idx, faithful=faithful)
    pf, pio = F.risp_features(px, pn, px[:, :M], pn[:, :M], idx, faithful=faithful)
    assert torch.equal(pio, io)
    torch.testing.assert_close(pf[..., EUCLID], f[..., EUCLID], rtol=0, atol=1e-12)
    torch.testing.assert_close(pf[..., TANGENT], -f[..., TANGENT], rtol=0, atol=1e-12)


def test_negating_all_normals(gen):
    xyz, nrm, idx, M = setup(gen)
    f, io = F.risp_features(xyz, nrm, xyz[:, :M], nrm[:, :M], idx)
    ff, fio = F.risp_features(xyz, -nrm, xyz[:, :M], -nrm[:, :M], idx)
    assert torch.equal(fio, reverse_middle(io))
    ref = ring_features(xyz, nrm, xyz[:, :M], nrm[:, :M], fio, 1)
    torch.testing.assert_close(ff[..., EUCLID], ref[..., EUCLID], rtol=0, atol=1e-12)
    torch.testing.assert_close(ff[..., TANGENT], -ref[..., TANGENT], rtol=0, atol=1e-12)
    assert float((ff - f).abs().max()) > 0.5


@pytest.mark.parametrize("faithful", [False, True])
def test_negating_centre_normal(gen, faithful):
    xyz, nrm, idx, M = setup(gen)
    f, io = F.risp_features(xyz, nrm, xyz[:, :M], nrm[:, :M], idx, faithful=faithful)
    ff, fio = F.risp_features(xyz, nrm, xyz[:, :M], -nrm[:, :M], idx, faithful=faithful)
    assert not torch.equal(fio, io)
    if not faithful:
        assert torch.equal(fio, reverse_middle(io))
    ref = ring_features(xyz, nrm, xyz[:, :M], nrm[:, :M], fio, 1)
    ref[..., [1, 4]] *= -1
    torch.testing.assert_close(ff, ref, rtol=0, atol=1e-12)
    assert float((ff - f).abs().max()) > 0.5


def test_lra_fixed_is_o3_equivariant(gen):
    xyz, _ = make_cloud(2, 80, generator=gen, dtype=torch.float64)
    P = reflection(gen)
    px, _ = apply_rotation(P, xyz)
    for a, pa in (
        (F.local_reference_axis(xyz, 16), F.local_reference_axis(px, 16)),
        (F.estimate_normals(xyz, 16), F.estimate_normals(px, 16)),
        (F.global_reference_axis(xyz)[:, None], F.global_reference_axis(px)[:, None]),
    ):
        torch.testing.assert_close(pa, apply_rotation(P, a)[0], rtol=0, atol=1e-9)
