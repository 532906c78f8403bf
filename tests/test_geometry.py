"""pointlib.geometry: Haar-uniform rotations (with a negative control), Rodrigues, application."""

from __future__ import annotations

import math

import pytest
import torch

from pointlib.geometry import (
    apply_rotation,
    quaternion_to_matrix,
    random_rotation,
    random_rotation_about_axis,
    random_rotation_euler,
    rotation_about_axis,
    rotation_angle,
)

N_HAAR = 20_000
# Kolmogorov-Smirnov critical value at alpha = 0.001 is 1.95 / sqrt(n) (~0.0138 for n = 20k).
KS_CRIT = 1.95 / math.sqrt(N_HAAR)


def ks_statistic(samples: torch.Tensor, cdf) -> float:
    """Two-sided one-sample Kolmogorov-Smirnov statistic of ``samples`` against ``cdf``."""
    x = samples.double().sort().values
    n = x.numel()
    F = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return max(float((i / n - F).max()), float((F - (i - 1) / n).max()))


def haar_angle_cdf(theta: torch.Tensor) -> torch.Tensor:
    """CDF of the rotation angle of a Haar-random rotation: density (1 - cos t) / pi on [0, pi]."""
    return (theta - torch.sin(theta)) / math.pi


def uniform_pm1_cdf(z: torch.Tensor) -> torch.Tensor:
    """A coordinate of a uniform point on S^2 is uniform on [-1, 1] (Archimedes)."""
    return (z + 1) / 2


def test_random_rotation_is_special_orthogonal():
    R = random_rotation(500, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert R.shape == (500, 3, 3) and R.dtype == torch.float64
    eye = torch.eye(3, dtype=torch.float64).expand(500, 3, 3)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(500, dtype=torch.float64))


def test_random_rotation_is_seeded():
    a = random_rotation(8, torch.Generator().manual_seed(3))
    b = random_rotation(8, torch.Generator().manual_seed(3))
    c = random_rotation(8, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert random_rotation(0).shape == (0, 3, 3)
    with pytest.raises(ValueError, match="n=-1"):
        random_rotation(-1)


def test_random_rotation_is_haar_uniform():
    R = random_rotation(N_HAAR, torch.Generator().manual_seed(0), dtype=torch.float64)
    d_angle = ks_statistic(rotation_angle(R), haar_angle_cdf)
    assert d_angle < KS_CRIT, f"angle KS {d_angle:.4f} >= {KS_CRIT:.4f}"
    # every column is uniform on the sphere: each coordinate uniform on [-1, 1]
    for col in range(3):
        for coord in range(3):
            d = ks_statistic(R[:, coord, col], uniform_pm1_cdf)
            assert d < KS_CRIT, f"R[:, {coord}, {col}] KS {d:.4f}"
    # E[R] = 0 (standard error of each entry is 1/sqrt(3 n) ~ 0.004)
    assert R.mean(0).abs().max() < 0.02


def test_euler_sampling_fails_the_haar_test():
    """Negative control: the official Rz Ry Rx with uniform angles is not Haar, and the same
    statistics must say so (otherwise the test above could not catch a wrong sampler)."""
    E = random_rotation_euler(N_HAAR, torch.Generator().manual_seed(0), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(N_HAAR, 3, 3)
    torch.testing.assert_close(E @ E.transpose(1, 2), eye, atol=1e-12, rtol=0)
    assert ks_statistic(rotation_angle(E), haar_angle_cdf) > 2 * KS_CRIT
    # first column is (cos c cos b, sin c cos b, -sin b): its z is not uniform on [-1, 1]
    assert ks_statistic(E[:, 2, 0], uniform_pm1_cdf) > 5 * KS_CRIT


def test_rotation_angle_matches_construction():
    angles = torch.tensor(
        [0.0, 1e-4, 0.3, 1.0, math.pi / 2, 3.0, math.pi - 1e-6], dtype=torch.float64
    )
    R = rotation_about_axis(angles, torch.tensor([1.0, 2.0, -0.5]))
    torch.testing.assert_close(rotation_angle(R), angles, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        rotation_angle(torch.zeros(4, 3))


def test_rotation_about_axis_matches_rodrigues_by_hand():
    t = 0.7
    c, s = math.cos(t), math.sin(t)
    expected_z = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
    expected_y = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    expected_x = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    torch.testing.assert_close(rotation_about_axis(t, "z"), expected_z)
    torch.testing.assert_close(rotation_about_axis(t, "y"), expected_y)
    torch.testing.assert_close(rotation_about_axis(t, "x"), expected_x)
    # general axis: v' = v cos t + (k x v) sin t + k (k.v)(1 - cos t)
    k = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64) / 3
    v = torch.tensor([0.3, -1.2, 0.5], dtype=torch.float64)
    by_hand = v * c + torch.linalg.cross(k, v) * s + k * (k @ v) * (1 - c)
    torch.testing.assert_close(rotation_about_axis(t, k * 3) @ v, by_hand)
    # the axis is fixed and a quarter turn about z maps x to y
    torch.testing.assert_close(rotation_about_axis(t, k) @ k, k)
    q = rotation_about_axis(math.pi / 2, "z") @ torch.tensor([1.0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(q, torch.tensor([0.0, 1, 0], dtype=torch.float64))
    # batched angles
    assert rotation_about_axis(torch.zeros(5, 2), "y").shape == (5, 2, 3, 3)
    with pytest.raises(ValueError, match="axis"):
        rotation_about_axis(0.1, "w")
    with pytest.raises(ValueError, match="non-zero 3-vector"):
        rotation_about_axis(0.1, torch.zeros(3))


def test_quaternion_identity_and_sign():
    q = torch.tensor([[1.0, 0, 0, 0], [0.6, 0.0, 0.8, 0.0]], dtype=torch.float64)
    R = quaternion_to_matrix(q)
    torch.testing.assert_close(R[0], torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(quaternion_to_matrix(-q), R)  # q and -q: the same rotation
    torch.testing.assert_close(
        rotation_angle(R[1]), torch.tensor(2 * math.acos(0.6), dtype=torch.float64)
    )


def test_random_rotation_about_axis_fixes_the_axis():
    R = random_rotation_about_axis(64, "y", torch.Generator().manual_seed(0), dtype=torch.float64)
    e_y = torch.tensor([0.0, 1, 0], dtype=torch.float64)
    torch.testing.assert_close(R @ e_y, e_y.expand(64, 3))
    angles = rotation_angle(R)
    assert angles.max() > 2.5 and angles.min() < 0.5  # angles spread over [0, pi]
    same = random_rotation_about_axis(
        64, "y", torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert torch.equal(R, same)


def test_apply_rotation_points_and_normals_together():
    g = torch.Generator().manual_seed(0)
    R = random_rotation(2, g, dtype=torch.float64)
    xyz = torch.randn(2, 10, 3, generator=g, dtype=torch.float64)
    nrm = torch.nn.functional.normalize(
        torch.randn(2, 10, 3, generator=g, dtype=torch.float64), dim=-1
    )
    x2, n2 = apply_rotation(R, xyz, nrm)
    torch.testing.assert_close(x2[1, 4], R[1] @ xyz[1, 4])
    torch.testing.assert_close(n2[0, 7], R[0] @ nrm[0, 7])
    # inner products between points and normals are preserved
    torch.testing.assert_close((x2 * n2).sum(-1), (xyz * nrm).sum(-1))
    single, none = apply_rotation(R[0], xyz[0])
    assert none is None and single.shape == (10, 3)


@pytest.mark.parametrize(
    ("rot", "xyz", "normals", "match"),
    [
        ((3, 4), (10, 3), None, "rotation must be"),
        ((3, 3), (10, 2), None, "xyz must end in 3"),
        ((3, 3), (10, 3), (9, 3), r"normals \(9, 3\) must match xyz \(10, 3\)"),
    ],
)
def test_apply_rotation_shape_errors(rot, xyz, normals, match):
    with pytest.raises(ValueError, match=match):
        apply_rotation(
            torch.zeros(rot), torch.zeros(xyz), None if normals is None else torch.zeros(normals)
        )
