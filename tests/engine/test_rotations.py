"""Seeded rotation protocols and the invariance-error column."""

from __future__ import annotations

import math

import pytest
import torch
from _toy import toy_bundle, toy_config

from pointlib.engine.rotations import mix_seed, sample_rotations, sweep_rotation, tilted_axis
from pointlib.engine.trainer import evaluate_test
from pointlib.models import create_model


def test_rotations_are_per_sample_and_reproducible():
    a = sample_rotations("so3", [3, 7, 11], seed=5, copy=1)
    b = sample_rotations("so3", [11, 3], seed=5, copy=1)  # other batch, other order
    assert torch.equal(a[2], b[0]) and torch.equal(a[0], b[1])
    assert not torch.allclose(a[0], sample_rotations("so3", [3], seed=5, copy=2)[0])
    assert not torch.allclose(a[0], sample_rotations("so3", [3], seed=6, copy=1)[0])
    R = sample_rotations("so3", list(range(50)), seed=0, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(50, dtype=torch.float64))
    assert torch.equal(sample_rotations("none", [1, 2], seed=0), torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="rotation mode"):
        sample_rotations("xyz", [0], seed=0)
    assert mix_seed(1, 2, 3) == mix_seed(1, 2, 3) != mix_seed(1, 3, 2)


@pytest.mark.parametrize("up", ["x", "y", "z"])
def test_z_protocol_rotates_about_the_up_axis(up):
    R = sample_rotations("z", list(range(20)), seed=1, up_axis=up, dtype=torch.float64)
    e = torch.zeros(3, dtype=torch.float64)
    e["xyz".index(up)] = 1
    assert torch.allclose(R @ e, e.expand(20, 3), atol=1e-12)
    angles = torch.acos(((R.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))
    assert angles.std() > 0.3  # genuinely different angles


def _euler_uniform(n: int, seed: int) -> torch.Tensor:
    """The biased sampler: ZYZ Euler angles each uniform (not Haar), as a negative control."""
    g = torch.Generator().manual_seed(seed)
    spans = (2 * math.pi, math.pi, 2 * math.pi)
    a, b, c = (torch.rand(n, generator=g, dtype=torch.float64) * s for s in spans)

    def rz(t):
        z, o = torch.zeros_like(t), torch.ones_like(t)
        return torch.stack([t.cos(), -t.sin(), z, t.sin(), t.cos(), z, z, z, o], -1).view(-1, 3, 3)

    def ry(t):
        z, o = torch.zeros_like(t), torch.ones_like(t)
        return torch.stack([t.cos(), z, t.sin(), z, o, z, -t.sin(), z, t.cos()], -1).view(-1, 3, 3)

    return rz(a) @ ry(b) @ rz(c)


def _ks(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov-Smirnov distance between ``samples`` and the distribution with ``cdf``."""
    x = samples.sort().values
    n = len(x)
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=x.dtype)
    return float(torch.maximum(i / n - f, f - (i - 1) / n).max())


def _haar_distances(R: torch.Tensor) -> list[float]:
    """KS distances of the Haar marginals: every entry of ``R e_k`` (an image of a basis vector
    is uniform on the sphere, so each coordinate is uniform on [-1, 1]) and the rotation angle
    (density ``(1 - cos t) / pi``, CDF ``(t - sin t) / pi``)."""
    uniform = lambda v: ((v + 1) / 2).clamp(0, 1)  # noqa: E731
    out = [_ks(R[:, i, k], uniform) for i in range(3) for k in range(3)]
    angle = torch.acos(((R.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))
    out.append(_ks(angle, lambda t: (t - torch.sin(t)) / math.pi))
    return out


def test_so3_is_haar():
    n = 4000
    crit = 1.95 / math.sqrt(n)  # KS critical value at p = 0.001
    R = sample_rotations("so3", list(range(n)), seed=2, dtype=torch.float64)
    assert R.mean(0).abs().max() < 0.05  # E[R] = 0
    assert max(_haar_distances(R)) < crit
    # the test can fail: uniform Euler angles have E[R] = 0 as well, but not these marginals
    biased = _euler_uniform(n, seed=2)
    assert biased.mean(0).abs().max() < 0.05
    assert max(_haar_distances(biased)) > 2 * crit


def test_sweep_axis_is_tilted():
    a = tilted_axis("z", 45.0)
    assert torch.allclose(a, torch.tensor([math.sqrt(0.5), 0, math.sqrt(0.5)], dtype=a.dtype))
    R = sweep_rotation(90.0, "z", 45.0)
    assert torch.allclose(R @ a, a, atol=1e-12)


def test_invariance_error_column():
    cfg = toy_config(eval={"num_rotations": 3})
    data = toy_bundle(cfg)
    torch.manual_seed(0)
    inv = create_model("toy_invariant_cls", num_classes=3).double().eval()
    data.test.base.xyz = data.test.base.xyz.double()
    data.test.base.normals = data.test.base.normals.double()
    res = evaluate_test(cfg, inv, data, rotations=["none", "so3"])
    assert math.isnan(res["none"].invariance_error)
    assert res["so3"].invariance_error < 1e-12  # invariant model: identical logits
    assert res["so3"].mean_std("oa")[1] == 0.0  # so every copy has the same accuracy
    plain = create_model("toy_cls", num_classes=3).double().eval()
    res = evaluate_test(cfg, plain, data, rotations=["so3"])
    assert res["so3"].invariance_error > 1e-3  # the negative control moves


def test_prediction_changes_column():
    """Samples whose label differs between rotated copies: 0 for an invariant model, > 0 for the
    negative control, and it reaches the robustness table."""
    from pointlib.engine.robustness import format_table, rows_from_results

    cfg = toy_config(eval={"num_rotations": 4})
    data = toy_bundle(cfg)
    torch.manual_seed(0)
    inv = create_model("toy_invariant_cls", num_classes=3).double().eval()
    data.test.base.xyz = data.test.base.xyz.double()
    data.test.base.normals = data.test.base.normals.double()
    res = evaluate_test(cfg, inv, data, rotations=["none", "so3"])
    n = len(data.test)
    assert res["so3"].prediction_changes == 0 and res["so3"].num_samples == n
    assert res["none"].prediction_changes == 0
    assert res["so3"].as_dict()["prediction_changes"] == 0
    plain = create_model("toy_cls", num_classes=3).double().eval()
    res_plain = evaluate_test(cfg, plain, data, rotations=["so3"])
    changed = res_plain["so3"].prediction_changes
    assert 0 < changed <= n
    rows = rows_from_results("toy", "z", {**res, **res_plain}, "cls")
    table = format_table(rows)
    assert "pred. changes" in table and f"{changed}/{n}" in table
