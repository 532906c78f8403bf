"""The fixed mode's tie-tolerant ring order (``tolerant_order``) and the symmetric-cloud axis.

Away from ties it is the exact fixed order; at ties (equal tangent lengths, neighbours collinear
with the reference direction or with each other, zero offsets) it decides by neighbour index,
so rotating the input cannot change the ring.
"""

from __future__ import annotations

import math

import pytest
import torch

import pointlib.features as F
from pointlib.features._common import group_planes, planes
from pointlib.features.lra import global_axis_with_tolerance
from pointlib.features.ordering import default_tie_rtol, ordering_keys, sort_keys
from pointlib.geometry import apply_rotation, random_rotation
from pointlib.ops import knn
from pointlib.testing import ADVERSARIAL_KINDS, adversarial_cloud, make_cloud


def _exact_fixed_perm(xyz, centers, axis, idx):
    v = group_planes(xyz, idx.transpose(1, 2)) - planes(centers)
    return sort_keys(ordering_keys(v, planes(axis), faithful=False))


def test_tolerant_order_equals_exact_order_in_general_position():
    xyz, nrm = make_cloud(2, 300, dtype=torch.float64)
    idx, _ = knn(xyz, 16, xyz[:, :64])
    got = F.order_neighbors(xyz, xyz[:, :64], nrm[:, :64], idx)
    key, perm = _exact_fixed_perm(xyz, xyz[:, :64], nrm[:, :64], idx)
    assert torch.equal(got.perm, perm.transpose(1, 2))
    torch.testing.assert_close(got.key, key.transpose(1, 2), rtol=0, atol=1e-12)


def _square(center_first=True):
    """A centre with 4 neighbours on a square (exactly tied tangent lengths), normal +z."""
    pts = [[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]]
    return torch.tensor([pts], dtype=torch.float64)


def test_reference_is_the_lowest_index_among_tied_longest():
    xyz = _square()
    up = torch.tensor([[[0.0, 0, 1]]], dtype=torch.float64)
    for perm in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        out = F.order_neighbors(xyz, xyz[:, :1], up, torch.tensor([[perm]]))
        # reference = index 1 whatever the slot order; clockwise about +z: 1, 4, 3, 2; centre last
        assert out.idx[0, 0].tolist() == [1, 4, 3, 2, 0]


def test_neighbour_collinear_with_the_reference_follows_it():
    # index 2 lies on the reference ray (shorter), exactly or within rounding of it
    for eps in (0.0, 1e-15, -1e-15):
        xyz = torch.tensor(
            [[[0.0, 0, 0], [2, 0, 0], [1, eps, 0], [0, 1, 0], [-1, -1, 0]]], dtype=torch.float64
        )
        up = torch.tensor([[[0.0, 0, 1]]], dtype=torch.float64)
        out = F.order_neighbors(xyz, xyz[:, :1], up, torch.tensor([[[0, 1, 2, 3, 4]]]))
        assert out.idx[0, 0].tolist() == [1, 2, 4, 3, 0]


def test_zero_offsets_close_the_ring_by_index():
    # duplicates of the centre (3, 0) and a point straight above it along the normal (4)
    xyz = torch.tensor(
        [[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0.5]]], dtype=torch.float64
    )
    up = torch.tensor([[[0.0, 0, 1]]], dtype=torch.float64)
    out = F.order_neighbors(xyz, xyz[:, 3:4], up, torch.tensor([[[4, 3, 2, 1, 0]]]))
    assert out.idx[0, 0].tolist() == [1, 2, 0, 3, 4]
    assert out.key[0, 0, 2:].tolist() == [-3.0, -3.0, -3.0]


@pytest.mark.parametrize("kind", ADVERSARIAL_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ring_order_rotation_stable_on_tied_clouds(kind, dtype):
    """Same neighbour list before and after rotation: the ring (and the RISP features) agree."""
    xyz, nrm = adversarial_cloud(kind, 256, dtype=torch.float64)
    idx, _ = knn(xyz, 12)
    g = torch.Generator().manual_seed(0)
    base_f, base_i = F.risp_features(xyz.to(dtype), nrm.to(dtype), xyz.to(dtype), nrm.to(dtype),
                                     idx)  # fmt: skip
    exact_changed = 0
    for _ in range(4):
        R = random_rotation(1, g, dtype=torch.float64)
        rx, rn = (t.to(dtype) for t in apply_rotation(R, xyz, nrm))
        f, i = F.risp_features(rx, rn, rx, rn, idx)
        assert torch.equal(i, base_i)
        assert (f - base_f).abs().max() <= (1e-9 if dtype == torch.float64 else 1e-4)
        a = _exact_fixed_perm(xyz.to(dtype), xyz.to(dtype), nrm.to(dtype), idx)[1]
        b = _exact_fixed_perm(rx, rx, rn, idx)[1]
        exact_changed += int(not torch.equal(a, b))
    if kind != "duplicates":  # negative control: the exact rule flips on tied clouds
        assert exact_changed > 0


def test_tie_rtol_zero_keeps_exact_comparisons():
    xyz, nrm = make_cloud(1, 64, dtype=torch.float64)
    idx, _ = knn(xyz, 8)
    a = F.risp_features(xyz, nrm, xyz, nrm, idx, tie_rtol=0.0)
    b = F.risp_features(xyz, nrm, xyz, nrm, idx)
    assert torch.equal(a[1], b[1])


def test_default_tie_rtol_follows_dtype():
    assert default_tie_rtol(torch.float32) == 512 * torch.finfo(torch.float32).eps
    assert default_tie_rtol(torch.float64) == 512 * torch.finfo(torch.float64).eps


@pytest.mark.parametrize("kind", ["cube", "collinear_rings"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_global_axis_equivariant_on_symmetric_clouds(kind, dtype):
    """Cube (isotropic covariance) and cylinder (two equal eigenvalues): the covariance does not
    fix the axis, the index-weighted fallback does, equivariantly."""
    xyz, _ = adversarial_cloud(kind, 384, dtype=torch.float64)
    rtol = default_tie_rtol(dtype)
    axis, axis_rtol = global_axis_with_tolerance(xyz.to(dtype), rtol)
    assert float(axis_rtol.max()) < 1.0
    g = torch.Generator().manual_seed(2)
    for _ in range(4):
        R = random_rotation(1, g, dtype=torch.float64)
        rx = apply_rotation(R, xyz)[0].to(dtype)
        got = global_axis_with_tolerance(rx, rtol)[0]
        expect = (R[0].to(dtype) @ axis[0]).unsqueeze(0)
        assert (got - expect).abs().max() < (1e-9 if dtype == torch.float64 else 1e-4)


def test_global_axis_unchanged_for_generic_clouds():
    xyz, _ = make_cloud(3, 200, dtype=torch.float64)
    axis, axis_rtol = global_axis_with_tolerance(xyz, default_tie_rtol(torch.float64))
    raw = F.global_reference_axis(xyz, faithful=True)
    torch.testing.assert_close(axis.abs(), raw.abs(), rtol=0, atol=1e-12)  # same axis, up to sign
    assert float(axis_rtol.max()) < 1e-12


def test_global_features_rotation_stable_on_cube():
    xyz, nrm = adversarial_cloud("cube", 200, dtype=torch.float64)
    base, bi = F.risp_features_global(xyz, nrm)
    R = random_rotation(1, torch.Generator().manual_seed(5), dtype=torch.float64)
    f, i = F.risp_features_global(*apply_rotation(R, xyz, nrm))
    assert torch.equal(i, bi)
    assert (f - base).abs().max() < 1e-9
    assert math.isfinite(float(f.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_global_axis_sign_from_normals_on_planar_cloud(dtype):
    """A planar grid: every position moment is zero, so only the normals fix the axis sign.

    With the normals the axis is equivariant under every rotation; without them (negative
    control) the sign is left to rounding noise and flips for some of the same rotations.
    """
    xyz, nrm = adversarial_cloud("planar_grid", 256, dtype=torch.float64)
    rtol = default_tie_rtol(dtype)
    axis = global_axis_with_tolerance(xyz.to(dtype), rtol, nrm.to(dtype))[0]
    bare = global_axis_with_tolerance(xyz.to(dtype), rtol)[0]
    g = torch.Generator().manual_seed(3)
    flips = 0
    for _ in range(16):
        R = random_rotation(1, g, dtype=torch.float64)
        rx, rn = (t.to(dtype) for t in apply_rotation(R, xyz, nrm))
        expect = R[0].to(dtype) @ axis[0]
        got = global_axis_with_tolerance(rx, rtol, rn)[0][0]
        assert (got - expect).abs().max() < (1e-9 if dtype == torch.float64 else 1e-4)
        got_bare = global_axis_with_tolerance(rx, rtol)[0][0]
        flips += int(float(got_bare @ (R[0].to(dtype) @ bare[0])) < 0)
    assert flips > 0, "without normals the planar axis sign should be undetermined"
