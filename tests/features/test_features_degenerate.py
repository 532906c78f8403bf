"""Degenerate inputs give finite outputs; bad inputs give clear errors."""

from __future__ import annotations

import pytest
import torch

import pointlib.features as F
from pointlib.ops import knn
from pointlib.testing import make_cloud

MODES = [False, True]
DTYPES = [torch.float32, torch.float64]


def local_outputs(xyz, nrm, idx, M, faithful, shift=1):
    ctr, cn = xyz[:, :M], nrm[:, :M]
    return [
        *F.risp_features(xyz, nrm, ctr, cn, idx, shift=shift, faithful=faithful),
        *F.riconv2_features(xyz, nrm, ctr, cn, idx, faithful=faithful),
    ]


def cloud_outputs(xyz, nrm, faithful):
    return [
        *F.risp_features_global(xyz, nrm, faithful=faithful),
        *F.riconv2_features_global(xyz, nrm, faithful=faithful),
        F.local_reference_axis(xyz, 8, faithful=faithful),
        F.estimate_normals(xyz, 8, faithful=faithful),
        F.global_reference_axis(xyz, faithful=faithful),
    ]


def all_outputs(xyz, nrm, idx, M, faithful, shift=1):
    return local_outputs(xyz, nrm, idx, M, faithful, shift) + cloud_outputs(xyz, nrm, faithful)


def assert_finite(outs):
    for o in outs:
        if o.is_floating_point():
            assert bool(torch.isfinite(o).all()), o


def degenerate_clouds(dtype):
    g = torch.Generator().manual_seed(3)
    xyz, nrm = make_cloud(1, 16, generator=g, dtype=dtype)
    cases = {}
    dup = xyz.clone()
    dup[:, 8:] = dup[:, :8]  # every point twice
    cases["duplicates"] = (dup, nrm)
    cases["all_same"] = (torch.ones_like(xyz) * 0.5, nrm)
    line = torch.zeros_like(xyz)
    line[..., 0] = torch.linspace(-1, 1, 16, dtype=dtype)
    cases["collinear"] = (line, nrm)
    cases["collinear_along_normal"] = (line, torch.tensor([1.0, 0, 0], dtype=dtype).expand_as(nrm))
    plane = xyz.clone()
    plane[..., 2] = 0
    cases["coplanar"] = (plane, torch.tensor([0.0, 0, 1], dtype=dtype).expand_as(nrm).clone())
    cases["zero_normals"] = (xyz, torch.zeros_like(nrm))
    grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1)
    grid = torch.cat([grid.reshape(16, 2), torch.zeros(16, 1)], -1).to(dtype)[None]
    cases["lattice_ties"] = (grid, torch.tensor([0.0, 0, 1], dtype=dtype).expand_as(nrm))
    return cases


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("faithful", MODES)
@pytest.mark.parametrize(
    "case",
    [
        "duplicates",
        "all_same",
        "collinear",
        "collinear_along_normal",
        "coplanar",
        "zero_normals",
        "lattice_ties",
    ],
)
def test_degenerate_inputs_are_finite(case, faithful, dtype):
    xyz, nrm = degenerate_clouds(dtype)[case]
    assert_finite(cloud_outputs(xyz, nrm, faithful))
    for K, shifts in ((1, (1,)), (2, (1,)), (8, (1, 2, 7)), (16, (1,))):
        idx, _ = knn(xyz, K, xyz[:, :5])  # the centre is among its own neighbours
        for shift in shifts:
            assert_finite(local_outputs(xyz, nrm, idx, 5, faithful, shift))


@pytest.mark.parametrize("faithful", MODES)
def test_single_point_and_k_larger_than_n(faithful):
    xyz = torch.tensor([[[0.1, 0.2, 0.3]]])
    nrm = torch.tensor([[[0.0, 0.0, 1.0]]])
    idx = torch.zeros(1, 1, 1, dtype=torch.int64)
    outs = all_outputs(xyz, nrm, idx, 1, faithful)
    assert_finite(outs)
    assert outs[0].shape == (1, 1, 1, 14)
    # k is clamped to N for the LRA
    assert F.local_reference_axis(xyz, 32).shape == (1, 1, 3)


def test_k1_centre_only_features_are_zero_except_normals():
    xyz, nrm = make_cloud(1, 10, dtype=torch.float64)
    idx = torch.arange(10).view(1, 10, 1)
    f, io = F.risp_features(xyz, nrm, xyz, nrm, idx)
    assert torch.equal(io, idx)
    assert float(f.abs().max()) == 0.0  # v = 0 and every edge is zero


@pytest.mark.parametrize("faithful", MODES)
def test_gradients_are_finite_on_degenerate_input(faithful):
    xyz, nrm = degenerate_clouds(torch.float64)["duplicates"]
    xyz = xyz.clone().requires_grad_(True)
    idx, _ = knn(xyz.detach(), 6, xyz.detach()[:, :5])
    f, _ = F.risp_features(xyz, nrm, xyz[:, :5], nrm[:, :5], idx, faithful=faithful)
    g, _ = F.riconv2_features(xyz, nrm, xyz[:, :5], nrm[:, :5], idx, faithful=faithful)
    (f.sum() + g.sum()).backward()
    assert bool(torch.isfinite(xyz.grad).all())


def test_ring_shift():
    assert F.ring_shift(1024, faithful=True) == 2
    assert F.ring_shift(1023, faithful=True) == 1
    assert F.ring_shift(2048, faithful=False) == 1
    assert F.ring_shift(2048, faithful=False, fixed=3) == 3


def test_shift_is_cyclic(gen):
    xyz, nrm = make_cloud(1, 30, generator=gen, dtype=torch.float64)
    idx, _ = knn(xyz, 6, xyz[:, :4])
    a = F.risp_features(xyz, nrm, xyz[:, :4], nrm[:, :4], idx, shift=1)[0]
    b = F.risp_features(xyz, nrm, xyz[:, :4], nrm[:, :4], idx, shift=7)[0]
    assert torch.equal(a, b)


def test_float32_matches_float64(gen):
    xyz, nrm = make_cloud(2, 64, generator=gen, dtype=torch.float64)
    idx, _ = knn(xyz, 8, xyz[:, :10])
    f64, i64 = F.risp_features(xyz, nrm, xyz[:, :10], nrm[:, :10], idx)
    x32, n32 = xyz.float(), nrm.float()
    f32, i32 = F.risp_features(x32, n32, x32[:, :10], n32[:, :10], idx)
    assert f32.dtype == torch.float32
    assert torch.equal(i32, i64)
    torch.testing.assert_close(f32.double(), f64, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------- bad input


@pytest.fixture
def ok():
    xyz, nrm = make_cloud(2, 20, dtype=torch.float64)
    idx, _ = knn(xyz, 4, xyz[:, :5])
    return xyz, nrm, xyz[:, :5], nrm[:, :5], idx


@pytest.mark.parametrize("fn", [F.risp_features, F.riconv2_features])
def test_bad_inputs(ok, fn):
    xyz, nrm, ctr, cn, idx = ok
    with pytest.raises(ValueError, match=r"xyz must have shape \(B, N, 3\)"):
        fn(xyz[..., :2], nrm, ctr, cn, idx)
    with pytest.raises(ValueError, match="normals must have the shape of xyz"):
        fn(xyz, nrm[:, :10], ctr, cn, idx)
    with pytest.raises(TypeError, match=r"normals is torch\.float32 but xyz is torch\.float64"):
        fn(xyz, nrm.float(), ctr, cn, idx)
    with pytest.raises(TypeError, match=r"centers is torch\.float32"):
        fn(xyz, nrm, ctr.float(), cn, idx)
    with pytest.raises(ValueError, match="center_normals must have the shape of centers"):
        fn(xyz, nrm, ctr, cn[:, :3], idx)
    with pytest.raises(ValueError, match="batch sizes differ"):
        fn(xyz, nrm, ctr[:1], cn[:1], idx)
    with pytest.raises(IndexError, match=r"outside \[0, 20\)"):
        fn(xyz, nrm, ctr, cn, idx + 20)
    with pytest.raises(IndexError, match=r"outside \[0, 20\)"):
        fn(xyz, nrm, ctr, cn, idx - 100)
    with pytest.raises(TypeError, match="idx must be int64"):
        fn(xyz, nrm, ctr, cn, idx.double())
    with pytest.raises(ValueError, match=r"idx must have shape \(B, M=5, K>=1\)"):
        fn(xyz, nrm, ctr, cn, idx[:, :3])
    with pytest.raises(ValueError, match=r"idx must have shape \(B, M=5, K>=1\)"):
        fn(xyz, nrm, ctr, cn, idx[:, :, :0])
    with pytest.raises(TypeError, match=r"xyz must be a torch\.Tensor"):
        fn(xyz.numpy(), nrm, ctr, cn, idx)
    bad = nrm.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="normals contains NaN"):
        fn(xyz, bad, ctr, cn, idx)
    with pytest.raises(ValueError, match="origin must have the shape of centers"):
        fn(xyz, nrm, ctr, cn, idx, origin=ctr[:, :2])


def test_bad_shift_and_lra_args(ok):
    xyz, nrm, ctr, cn, idx = ok
    with pytest.raises(ValueError, match="shift=0 is out of range"):
        F.risp_features(xyz, nrm, ctr, cn, idx, shift=0)
    with pytest.raises(TypeError, match="shift must be an int"):
        F.risp_features(xyz, nrm, ctr, cn, idx, shift=1.5)
    with pytest.raises(ValueError, match="k=0 is out of range"):
        F.local_reference_axis(xyz, 0)
    with pytest.raises(ValueError, match="orient must be"):
        F.local_reference_axis(xyz, orient="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="contains NaN or Inf coordinates"):
        F.global_reference_axis(xyz * float("inf"))
    with pytest.raises(ValueError, match=r"normals must have the shape of xyz"):
        F.risp_features_global(xyz, nrm[:, :3])
    with pytest.raises(ValueError, match=r"axis must have the shape of centers"):
        F.order_neighbors(xyz, ctr, cn[:, :1], idx)


def test_int32_idx_accepted(ok):
    xyz, nrm, ctr, cn, idx = ok
    a = F.risp_features(xyz, nrm, ctr, cn, idx)
    b = F.risp_features(xyz, nrm, ctr, cn, idx.int())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and b[1].dtype == torch.int64
