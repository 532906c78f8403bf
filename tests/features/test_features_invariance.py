"""Rotation invariance (Haar SO(3), float64 <= 1e-9) of features, orderings and axes."""

from __future__ import annotations

import pytest
import torch

import pointlib.features as F
from pointlib.geometry import apply_rotation, random_rotation
from pointlib.ops import knn
from pointlib.testing import assert_rotation_invariant, make_cloud, rotation_error

M, K = 12, 10


def local_fn(kind: str, faithful: bool, shift: int = 1):
    """xyz, normals -> features (with kNN recomputed on the given cloud) and idx_ordered."""

    def fn(xyz, nrm):
        ctr, cn = xyz[:, :M], nrm[:, :M]
        idx, _ = knn(xyz, K, ctr)
        if faithful:  # an unsorted slot order, the same for every rotation
            idx = idx.roll(4, -1)
        if kind == "risp":
            f, io = F.risp_features(xyz, nrm, ctr, cn, idx, shift=shift, faithful=faithful)
        else:
            f, io = F.riconv2_features(xyz, nrm, ctr, cn, idx, faithful=faithful)
        return torch.cat([f.flatten(1), io.flatten(1).to(f.dtype)], 1)

    return fn


@pytest.mark.parametrize("kind", ["risp", "riconv2"])
@pytest.mark.parametrize("faithful", [False, True])
def test_local_features_rotation_invariant(gen, kind, faithful):
    """With dataset normals both modes are exactly invariant (the ordering uses invariants only;
    the slot-0 rule concerns a fixed slot)."""
    xyz, nrm = make_cloud(3, 64, generator=gen, dtype=torch.float64)
    fn = local_fn(kind, faithful, shift=2)
    err = assert_rotation_invariant(fn, xyz, nrm, atol=1e-9, trials=4, generator=gen)
    assert err < 1e-9


def test_float32_invariance_and_negative_control(gen):
    xyz, nrm = make_cloud(2, 64, generator=gen, dtype=torch.float32)

    def feats_only(x, n):
        ctr, cn = x[:, :M], n[:, :M]
        return F.risp_features(x, n, ctr, cn, knn(x, K, ctr)[0])[0]

    assert rotation_error(feats_only, xyz, nrm, generator=gen) < 1e-4

    # negative control: raw relative coordinates are not invariant -> the check must fail
    def raw(x, n):
        return x[:, :M, None] - x[:, None, :K]

    with pytest.raises(AssertionError, match="not rotation invariant"):
        assert_rotation_invariant(raw, xyz.double(), nrm.double(), generator=gen)


@pytest.mark.parametrize("kind", ["risp", "riconv2"])
def test_global_fixed_invariant_to_rotation_and_translation(gen, kind):
    xyz, nrm = make_cloud(3, 48, generator=gen, dtype=torch.float64)
    glob = F.risp_features_global if kind == "risp" else F.riconv2_features_global

    def fn(x, n):
        f, io = glob(x, n)
        return torch.cat([f.flatten(1), io.flatten(1).to(f.dtype)], 1)

    assert_rotation_invariant(fn, xyz, nrm, atol=1e-9, trials=4, generator=gen)
    shift = torch.tensor([0.4, -1.0, 0.25], dtype=xyz.dtype)
    assert (fn(xyz + shift, nrm) - fn(xyz, nrm)).abs().max() < 1e-9


def test_global_faithful_not_translation_invariant_and_sign_flips(gen):
    """Faithful global layer: the origin is p (translation changes ch0 etc.), and the raw
    eigensolver sign of the global LRA flips under some rotations, changing the features."""
    xyz, nrm = make_cloud(1, 48, generator=gen, dtype=torch.float64)
    f0 = F.risp_features_global(xyz, nrm, faithful=True)[0]
    f1 = F.risp_features_global(xyz + 0.3, nrm, faithful=True)[0]
    assert (f1 - f0).abs().max() > 0.1
    a0 = F.global_reference_axis(xyz, faithful=True)
    flips = 0
    R = random_rotation(40, gen, dtype=torch.float64)
    for r in R:
        rx, _ = apply_rotation(r, xyz)
        flips += int(float((F.global_reference_axis(rx, faithful=True) * (a0 @ r.T)).sum()) < 0)
    assert 0 < flips < 40


def test_lra_fixed_equivariant_faithful_flips(gen):
    """Fixed: LRA(R x) = R LRA(x) to 1e-9 for every rotation; faithful: the same axis up to
    sign, and the sign flips for some points/rotations (the documented reference bug)."""
    xyz, _ = make_cloud(2, 128, generator=gen, dtype=torch.float64)
    R = random_rotation(2, gen, dtype=torch.float64)
    total_flips = 0
    for trial in range(4):
        R = random_rotation(2, gen, dtype=torch.float64)
        rx, _ = apply_rotation(R, xyz)
        for fn in (F.local_reference_axis, F.estimate_normals):
            a, ra = fn(xyz, 16), fn(rx, 16)
            expect = apply_rotation(R, a)[0]
            assert float((ra - expect).abs().max()) < 1e-9, (trial, fn.__name__)
        g, rg = F.global_reference_axis(xyz), F.global_reference_axis(rx)
        assert float((rg - (R @ g[..., None])[..., 0]).abs().max()) < 1e-9
        fa, rfa = (
            F.local_reference_axis(xyz, 16, faithful=True),
            F.local_reference_axis(rx, 16, faithful=True),
        )
        dots = (rfa * apply_rotation(R, fa)[0]).sum(-1)
        assert float((dots.abs() - 1).abs().max()) < 1e-9
        total_flips += int((dots < 0).sum())
    assert total_flips > 0


def test_lra_normals_feed_invariant_features(gen):
    """Estimated normals (fixed) keep RISP invariant; faithful LRA normals do not (the sign
    flips break it, spec §1.6) - the negative control for the fixed sign rule."""
    xyz, _ = make_cloud(2, 96, generator=gen, dtype=torch.float64)

    def make_fn(faithful):
        def fn(x, _n):
            n = F.estimate_normals(x, 16, faithful=faithful)
            ctr, cn = x[:, :M], n[:, :M]
            return F.risp_features(x, n, ctr, cn, knn(x, K, ctr)[0])[0]

        return fn

    assert_rotation_invariant(make_fn(False), xyz, atol=1e-9, generator=gen)
    assert rotation_error(make_fn(True), xyz, trials=4, generator=gen) > 0.1


@pytest.mark.cuda
@pytest.mark.parametrize("faithful", [False, True])
def test_cuda_matches_cpu(gen, faithful):
    xyz, nrm = make_cloud(2, 64, generator=gen, dtype=torch.float64)
    idx, _ = knn(xyz, K, xyz[:, :M])
    args = (xyz, nrm, xyz[:, :M], nrm[:, :M], idx)
    for fn in (F.risp_features, F.riconv2_features):
        f, io = fn(*args, faithful=faithful)
        fc, ioc = fn(*(a.cuda() for a in args), faithful=faithful)
        assert torch.equal(ioc.cpu(), io)
        torch.testing.assert_close(fc.cpu(), f, rtol=0, atol=1e-12)
    a = F.local_reference_axis(xyz, 16, faithful=faithful)
    ac = F.local_reference_axis(xyz.cuda(), 16, faithful=faithful).cpu()
    if faithful:  # the raw eigensolver sign may differ between devices
        a, ac = a.abs(), ac.abs()
    torch.testing.assert_close(ac, a, rtol=0, atol=1e-9)
