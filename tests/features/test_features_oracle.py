"""pointlib.features against the independent NumPy oracle (features_oracle.py), float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from features_oracle import (
    lra,
    order_fixed,
    riconv2_faithful,
    risp_faithful,
    risp_given_order,
    third_moment,
)

import pointlib.features as F
from pointlib.ops import knn
from pointlib.testing import make_cloud


def shuffled_knn(xyz: torch.Tensor, centers: torch.Tensor, k: int, g: torch.Generator):
    """kNN lists in a random (unsorted) slot order, like the reference's topk(sorted=False)."""
    idx, _ = knn(xyz, k, centers)
    perm = torch.rand(idx.shape, generator=g).argsort(-1)
    return idx.gather(-1, perm)


def cloud(B, N, M, g, dtype=torch.float64):
    xyz, nrm = make_cloud(B, N, generator=g, dtype=dtype)
    return xyz, nrm, xyz[:, :M], nrm[:, :M]


@pytest.mark.parametrize(("K", "shift"), [(1, 1), (2, 1), (5, 1), (8, 2), (8, 3), (12, 5)])
def test_risp_faithful_matches_oracle(gen, K, shift):
    xyz, nrm, ctr, cnrm = cloud(2, 40, 6, gen)
    idx = shuffled_knn(xyz, ctr, K, gen)
    feats, idx_o = F.risp_features(xyz, nrm, ctr, cnrm, idx, shift=shift, faithful=True)
    ref_f, ref_i = risp_faithful(*(t.numpy() for t in (xyz, nrm, ctr, cnrm, idx)), shift)
    assert feats.shape == (2, 6, K, 14) and feats.dtype == torch.float64
    assert idx_o.dtype == torch.int64
    np.testing.assert_array_equal(idx_o.numpy(), ref_i)
    np.testing.assert_allclose(feats.numpy(), ref_f, rtol=0, atol=1e-12)


def test_risp_faithful_slot0_rule_matters(gen):
    """The same neighbour *set* in two slot orders gives different rings in faithful mode (the
    slot-0 quirk), and the oracle agrees for both orders."""
    xyz, nrm, ctr, cnrm = cloud(1, 60, 8, gen)
    idx = shuffled_knn(xyz, ctr, 10, gen)
    rolled = idx.roll(3, -1)
    a = F.risp_features(xyz, nrm, ctr, cnrm, idx, faithful=True)[1]
    b = F.risp_features(xyz, nrm, ctr, cnrm, rolled, faithful=True)[1]
    assert not torch.equal(a, b)
    ref_b = risp_faithful(*(t.numpy() for t in (xyz, nrm, ctr, cnrm, rolled)), 1)[1]
    np.testing.assert_array_equal(b.numpy(), ref_b)
    # fixed mode does not care about slot order for points in general position
    fa = F.risp_features(xyz, nrm, ctr, cnrm, idx)
    fb = F.risp_features(xyz, nrm, ctr, cnrm, rolled)
    assert torch.equal(fa[1], fb[1]) and torch.equal(fa[0], fb[0])


def test_risp_faithful_random_neighbour_lists(gen):
    """Arbitrary (non-kNN) neighbour lists, repeated indices, centre anywhere in the list."""
    xyz, nrm, ctr, cnrm = cloud(2, 30, 5, gen)
    idx = torch.randint(0, 30, (2, 5, 9), generator=gen)
    idx[:, :, 4] = torch.arange(5)  # the centre itself somewhere in the middle
    feats, idx_o = F.risp_features(xyz, nrm, ctr, cnrm, idx, shift=2, faithful=True)
    ref_f, ref_i = risp_faithful(*(t.numpy() for t in (xyz, nrm, ctr, cnrm, idx)), 2)
    np.testing.assert_array_equal(idx_o.numpy(), ref_i)
    np.testing.assert_allclose(feats.numpy(), ref_f, rtol=0, atol=1e-12)


def test_risp_faithful_origin_matches_oracle(gen):
    """origin= (the global layer's world-origin p) only changes the feature vectors."""
    xyz, nrm, ctr, cnrm = cloud(1, 30, 3, gen)
    xyz = xyz + torch.tensor([0.3, -0.2, 0.5], dtype=xyz.dtype)
    ctr = xyz[:, :3]
    idx = shuffled_knn(xyz, ctr, 7, gen)
    origin = torch.zeros_like(ctr)
    feats, idx_o = F.risp_features(xyz, nrm, ctr, cnrm, idx, faithful=True, origin=origin)
    arrs = [t.numpy() for t in (xyz, nrm, ctr, cnrm, idx)]
    ref_f, ref_i = risp_faithful(*arrs, 1, origin=origin.numpy())
    np.testing.assert_array_equal(idx_o.numpy(), ref_i)
    np.testing.assert_allclose(feats.numpy(), ref_f, rtol=0, atol=1e-12)


def test_risp_global_faithful_matches_oracle(gen):
    xyz, nrm = make_cloud(2, 24, generator=gen, dtype=torch.float64)
    xyz = xyz + 0.2  # off-origin, so origin-as-p is visible
    feats, idx_o = F.risp_features_global(xyz, nrm, faithful=True)
    assert feats.shape == (2, 1, 24, 14) and idx_o.shape == (2, 1, 24)
    axis = F.global_reference_axis(xyz, faithful=True)
    for b in range(2):
        x, n = xyz[b].numpy(), nrm[b].numpy()
        c = x.mean(0)
        ref_axis = lra(x, c)
        assert abs(abs(float(ref_axis @ axis[b].numpy())) - 1) < 1e-12
        ref_f, ref_i = risp_faithful(
            x[None], n[None], c[None, None], axis[b].numpy()[None, None],
            np.arange(24)[None, None], 1, origin=np.zeros((1, 1, 3)),
        )  # fmt: skip
        np.testing.assert_array_equal(idx_o[b].numpy(), ref_i[0])
        np.testing.assert_allclose(feats[b].numpy(), ref_f[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("K", [1, 3, 8])
def test_riconv2_faithful_matches_oracle(gen, K):
    xyz, nrm, ctr, cnrm = cloud(2, 40, 6, gen)
    idx = shuffled_knn(xyz, ctr, K, gen)
    feats, idx_o = F.riconv2_features(xyz, nrm, ctr, cnrm, idx, faithful=True)
    ref_f, ref_i = riconv2_faithful(*(t.numpy() for t in (xyz, nrm, ctr, cnrm, idx)))
    assert feats.shape == (2, 6, K, 8)
    np.testing.assert_array_equal(idx_o.numpy(), ref_i)
    np.testing.assert_allclose(feats.numpy(), ref_f, rtol=0, atol=1e-9)


def test_riconv2_global_faithful_matches_oracle(gen):
    xyz, nrm = make_cloud(1, 20, generator=gen, dtype=torch.float64)
    feats, idx_o = F.riconv2_features_global(xyz, nrm, faithful=True)
    axis = F.global_reference_axis(xyz, faithful=True)
    x, n = xyz.numpy(), nrm.numpy()
    ref_f, ref_i = riconv2_faithful(
        x, n, x.mean(1, keepdims=True), axis.numpy()[:, None], np.arange(20)[None, None],
        origin=np.zeros((1, 1, 3)),
    )  # fmt: skip
    np.testing.assert_array_equal(idx_o.numpy(), ref_i)
    np.testing.assert_allclose(feats.numpy(), ref_f, rtol=0, atol=1e-9)


def test_fixed_ordering_is_clockwise_angle_from_reference(gen):
    """Fixed mode == explicit atan2 angles: reference first, increasing clockwise angle about +n,
    the centre (zero tangent offset) last; the features are the spec formulas on that ring."""
    xyz, nrm, ctr, cnrm = cloud(2, 50, 7, gen)
    idx, _ = knn(xyz, 9, ctr)
    feats, idx_o = F.risp_features(xyz, nrm, ctr, cnrm, idx, shift=2)
    order = F.order_neighbors(xyz, ctr, cnrm, idx)
    assert torch.equal(order.idx, idx_o)
    assert torch.equal(idx.gather(-1, order.perm), idx_o)
    assert bool((order.key[..., :-1] >= order.key[..., 1:]).all())
    assert bool((order.key[..., 0] == 1).all()) and bool((order.key[..., -1] == -3).all())
    x, n, c, cn, ix = (t.numpy() for t in (xyz, nrm, ctr, cnrm, idx))
    for b in range(2):
        for m in range(7):
            perm = order_fixed(x[b, ix[b, m]], c[b, m], cn[b, m])
            o = ix[b, m][perm]
            np.testing.assert_array_equal(idx_o[b, m].numpy(), o)
            assert o[-1] == m  # the centre closes the ring
            ref = risp_given_order(x[b, o], n[b, o], c[b, m], cn[b, m], 2)
            np.testing.assert_allclose(feats[b, m].numpy(), ref, rtol=0, atol=1e-12)


def test_order_hand_example():
    """A square around the centre seen from +z: clockwise from +x is +x, -y, -x, +y."""
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]]])
    up = torch.tensor([[[0.0, 0, 1]]])
    idx = torch.tensor([[[0, 1, 2, 3, 4]]])
    assert F.order_neighbors(xyz, xyz[:, :1], up, idx).idx.tolist() == [[[1, 4, 3, 2, 0]]]
    # faithful: slot 0 (the centre) forced sigma=+1 -> key 0; the reference (sigma=0) and -x
    # (sigma=0) get key -1 and sit mid-ring, ties by slot.
    faithful = F.order_neighbors(xyz, xyz[:, :1], up, idx, faithful=True)
    assert faithful.idx.tolist() == [[[0, 4, 1, 3, 2]]]
    assert faithful.key.tolist() == [[[0.0, 0.0, -1.0, -1.0, -2.0]]]
    # flipping the axis reverses the rotation sense
    assert F.order_neighbors(xyz, xyz[:, :1], -up, idx).idx.tolist() == [[[1, 2, 3, 4, 0]]]


def test_risp_hand_values():
    """Regular square ring, s=1: distances 1, right angles at p, 45 degree angles at the rim."""
    xyz = torch.tensor([[[1.0, 0, 0], [0, -1, 0], [-1, 0, 0], [0, 1, 0]]], dtype=torch.float64)
    nrm = torch.tensor([[[0.0, 0, 1]]], dtype=torch.float64).expand(1, 4, 3)
    ctr = torch.zeros(1, 1, 3, dtype=torch.float64)
    feats, idx_o = F.risp_features(xyz, nrm, ctr, nrm[:, :1], torch.tensor([[[0, 1, 2, 3]]]))
    assert idx_o.tolist() == [[[0, 1, 2, 3]]]
    f = feats[0, 0, 0]
    u = 1 / (1 + 1e-7)
    torch.testing.assert_close(f[0], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(f[[1, 2, 4, 5, 7, 8, 11, 12]], torch.zeros(8, dtype=torch.float64))
    torch.testing.assert_close(f[[3, 9]], torch.zeros(2, dtype=torch.float64))  # right angles
    cos45 = u * (2**-0.5) * 2**0.5 / (2**0.5 + 1e-7)
    torch.testing.assert_close(f[[6, 10]], torch.full((2,), cos45, dtype=torch.float64))
    # dihedral term: crosses are (0,0,±u^2) -> product -u^4 (planes coincide, opposite sides)
    torch.testing.assert_close(f[13], torch.tensor(-(u**4), dtype=torch.float64))


@pytest.mark.parametrize("k", [1, 5, 16])
def test_lra_matches_oracle_and_fixed_sign_rule(gen, k):
    xyz, _ = make_cloud(2, 40, generator=gen, dtype=torch.float64)
    faithful = F.local_reference_axis(xyz, k, faithful=True)
    fixed = F.local_reference_axis(xyz, k)
    idx, _ = knn(xyz, k)
    for b in range(2):
        for i in range(40):
            pts = xyz[b, idx[b, i]].numpy()
            ref = lra(pts, xyz[b, i].numpy())
            for axis in (faithful, fixed):
                assert abs(abs(float(ref @ axis[b, i].numpy())) - 1) < 1e-9
            if k == 16:
                assert third_moment(pts, xyz[b, i].numpy(), fixed[b, i].numpy()) > 0
    torch.testing.assert_close(fixed.norm(dim=-1), torch.ones(2, 40, dtype=torch.float64))


def test_global_axis_matches_oracle(gen):
    xyz, _ = make_cloud(3, 50, generator=gen, dtype=torch.float64)
    fixed = F.global_reference_axis(xyz)
    assert fixed.shape == (3, 3)
    for b in range(3):
        x = xyz[b].numpy()
        ref = lra(x, x.mean(0))
        assert abs(abs(float(ref @ fixed[b].numpy())) - 1) < 1e-9
        assert third_moment(x, x.mean(0), fixed[b].numpy()) > 0


def test_estimate_normals_point_outward(gen):
    """On the ellipsoid of make_cloud the estimated normals match the true ones, oriented out."""
    xyz, nrm = make_cloud(2, 400, generator=gen, dtype=torch.float64)
    est = F.estimate_normals(xyz, 16)
    cos = (est * nrm).sum(-1)
    assert float(cos.min()) > 0.5  # outward everywhere
    assert float(cos.median()) > 0.95
    flips = (F.estimate_normals(xyz, 16, faithful=True) * nrm).sum(-1) < 0
    assert 0 < int(flips.sum()) < flips.numel()  # the raw eigensolver sign is arbitrary
