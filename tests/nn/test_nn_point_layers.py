"""RISurConv / RIConv++ / PointNet++ layers: shapes, errors, quirk switches, layer invariance."""

from __future__ import annotations

import pytest
import torch

from pointlib import ops
from pointlib.nn import (
    PointNetSetAbstraction,
    RIConv2FeaturePropagation,
    RIConv2SetAbstraction,
    RISPEmbedding,
    RISurConvFeaturePropagation,
    RISurConvSetAbstraction,
)
from pointlib.nn._grouping import knn_indices, ring_shift_for
from pointlib.nn.quirks import FAITHFUL, FIXED, Quirks
from pointlib.testing import assert_rotation_invariant, make_cloud


def test_risp_embedding_layout():
    e = RISPEmbedding()
    assert [type(m).__name__ for m in e.children()] == [
        "Linear", "BatchNormLast", "Linear", "BatchNormLast",
    ]  # fmt: skip
    assert e.lin1.bias is None and e.lin2.bias is None
    assert sum(p.numel() for p in e.parameters()) == 14 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    # no nonlinearity between the two linear maps: with identity BN the map is linear
    e.eval()
    x = torch.randn(5, 14, dtype=torch.float32)
    pre = e.bn2(e.lin2(e.bn1(e.lin1(x))))
    torch.testing.assert_close(e(x), torch.relu(pre))


@pytest.mark.parametrize("cls", [RISurConvSetAbstraction, RIConv2SetAbstraction])
def test_set_abstraction_shapes(cls, gen):
    xyz, nrm = make_cloud(2, 64, generator=gen)
    out_arg = 24 if cls is RISurConvSetAbstraction else [24]
    sa = cls(16, 8, 0, out_arg, embed_channels=(8, 16)).eval()
    new_xyz, new_nrm, f = sa(xyz, nrm)
    assert new_xyz.shape == (2, 16, 3) and new_nrm.shape == (2, 16, 3) and f.shape == (2, 16, 24)
    # fixed mode: tie-tolerant FPS, centres in ascending index order (the FPS set, not its order)
    idx = ops.fps(xyz, 16, tie_rtol=512 * torch.finfo(xyz.dtype).eps).sort(1).values
    torch.testing.assert_close(new_xyz, ops.gather(xyz, idx))
    torch.testing.assert_close(new_nrm, ops.gather(nrm, idx))  # input normals, not re-estimated
    sa2 = cls(None, None, 24, out_arg, group_all=True, embed_channels=(8, 16)).eval()
    c, a, g = sa2(new_xyz, new_nrm, f)
    assert c.shape == (2, 1, 3) and a.shape == (2, 1, 3) and g.shape == (2, 1, 24)
    torch.testing.assert_close(c, new_xyz.mean(1, keepdim=True))
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("kind", ["risurconv", "riconv2"])
def test_feature_propagation_shapes(kind, gen):
    xyz, nrm = make_cloud(2, 48, generator=gen)
    sparse, sn = xyz[:, :12], nrm[:, :12]
    f2 = torch.randn(2, 12, 10, generator=gen)
    f1 = torch.randn(2, 48, 6, generator=gen)
    if kind == "risurconv":
        fp = RISurConvFeaturePropagation(8, 10, 16, 6, (12,), embed_channels=(8, 16))
        fp_noskip = RISurConvFeaturePropagation(8, 10, 16, 6, (), embed_channels=(8, 16))
    else:
        fp = RIConv2FeaturePropagation(8, 10, [16], 6, (12,), embed_channels=(8, 16))
        fp_noskip = RIConv2FeaturePropagation(8, 10, [16], 6, (), embed_channels=(8, 16))
    assert fp.eval()(xyz, nrm, sparse, sn, f1, f2).shape == (2, 48, 12)
    assert fp_noskip.eval()(xyz, nrm, sparse, sn, f1, f2).shape == (2, 48, 22)  # [C, D1]
    with pytest.raises(ValueError, match="expects 10 input feature channels"):
        fp(xyz, nrm, sparse, sn, f1, f2[..., :9])


def test_set_abstraction_errors(gen):
    xyz, nrm = make_cloud(1, 20, generator=gen)
    sa = RISurConvSetAbstraction(32, 8, 0, 16, embed_channels=(8, 16))
    with pytest.raises(ValueError, match="only N=20 points"):
        sa(xyz, nrm)
    sa = RISurConvSetAbstraction(8, 4, 5, 16, embed_channels=(8, 16))
    with pytest.raises(ValueError, match="expects 5 input feature channels, got 0"):
        sa(xyz, nrm)
    with pytest.raises(ValueError, match="normals must have shape"):
        sa(xyz, nrm[:, :10], torch.zeros(1, 20, 5))
    with pytest.raises(ValueError, match="npoint and nsample"):
        RISurConvSetAbstraction(None, 8, 0, 16)


def test_k_larger_than_points_is_clipped(gen):
    """A layer whose k exceeds the available points uses all of them (documented), no NaN."""
    xyz, nrm = make_cloud(2, 12, generator=gen, dtype=torch.float64)
    sa = RISurConvSetAbstraction(6, 32, 0, 16, embed_channels=(8, 16)).double().eval()
    _, _, f = sa(xyz, nrm)
    assert f.shape == (2, 6, 16) and torch.isfinite(f).all()
    assert knn_indices(xyz, 32, xyz[:, :3], "sorted").shape == (2, 3, 12)


def test_unsorted_knn_is_the_same_set(gen):
    xyz, _ = make_cloud(2, 50, generator=gen)
    a = knn_indices(xyz, 8, xyz[:, :10], "sorted")
    b = knn_indices(xyz, 8, xyz[:, :10], "unsorted")
    assert torch.equal(a.sort(-1).values, b.sort(-1).values)
    with pytest.raises(ValueError, match="knn_order"):
        knn_indices(xyz, 8, xyz, "random")  # type: ignore[arg-type]


def test_ring_shift_rules():
    assert ring_shift_for(None, 1023) == 1 and ring_shift_for(None, 1024) == 2
    assert ring_shift_for(1, 2048) == 1
    assert FIXED.layer_shift(1024) == 2 and FIXED.layer_shift(512) == 1
    assert FAITHFUL.layer_shift(1024) is None


def test_quirks_resolve():
    assert Quirks.resolve(False) == FIXED
    assert Quirks.resolve(True) == FAITHFUL
    q = Quirks.resolve(True, sa2d_norm_axis="query", transformer_over_batch=None)
    assert q.sa2d_norm_axis == "query" and q.transformer_over_batch is True
    with pytest.raises(ValueError, match="knn_order"):
        Quirks.resolve(False, knn_order="sometimes")
    with pytest.raises(TypeError, match="unknown quirk"):
        Quirks.resolve(False, cross_dim=0)


@pytest.mark.parametrize("kind", ["risurconv", "riconv2"])
def test_layer_rotation_invariance_float64(kind, gen):
    xyz, nrm = make_cloud(2, 96, generator=gen, dtype=torch.float64)
    if kind == "risurconv":
        sa1 = RISurConvSetAbstraction(24, 8, 0, 16, embed_channels=(8, 16))
        sa2 = RISurConvSetAbstraction(None, None, 16, 16, group_all=True, embed_channels=(8, 16))
    else:
        sa1 = RIConv2SetAbstraction(24, 8, 0, [16], embed_channels=(8, 16))
        sa2 = RIConv2SetAbstraction(None, None, 16, [16], group_all=True, embed_channels=(8, 16))
    sa1, sa2 = sa1.double().eval(), sa2.double().eval()

    def fn(x, n):
        x1, n1, f1 = sa1(x, n)
        return torch.cat([f1.flatten(1), sa2(x1, n1, f1)[2].flatten(1)], 1)

    with torch.no_grad():
        assert_rotation_invariant(fn, xyz, nrm, atol=1e-9)


def test_pointnet_set_abstraction(gen):
    xyz, nrm = make_cloud(2, 64, generator=gen)
    sa = PointNetSetAbstraction(16, 0.5, 8, 3, (8, 16)).eval()
    new_xyz, f = sa(xyz, nrm)
    assert new_xyz.shape == (2, 16, 3) and f.shape == (2, 16, 16)
    g = PointNetSetAbstraction(None, None, None, 16, (32,), group_all=True).eval()
    c, h = g(new_xyz, f)
    assert c.shape == (2, 1, 3) and h.shape == (2, 1, 32)
    with pytest.raises(ValueError, match="expected 3 feature channels"):
        sa(xyz)
