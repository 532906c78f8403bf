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


def test_so3_is_haar_on_average():
    # E[R] = 0 for the Haar measure (Euler-angle sampling is biased); E[trace R] = 0 too
    R = sample_rotations("so3", list(range(4000)), seed=2, dtype=torch.float64)
    assert R.mean(0).abs().max() < 0.05
    assert abs(float(R.diagonal(dim1=1, dim2=2).sum(-1).mean())) < 0.06


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
