"""Tie tolerance of the ops: ``fps(tie_rtol=...)`` on every backend and ``knn_tolerant``.

The contract (pointlib/ops/reference.py): with ``tol = tie_rtol * max‖x‖``, an FPS step takes the
lowest index whose distance is within ``tol`` of the largest; ``knn_tolerant`` keeps every point
closer than ``d_k - tol`` and fills up with the lowest indices within ``tol`` of ``d_k``.
"""

from __future__ import annotations

import pytest
import torch

from pointlib.geometry import apply_rotation, random_rotation
from pointlib.ops import available_backends, fps, knn, knn_tolerant
from pointlib.ops import reference as ref
from pointlib.testing import ADVERSARIAL_KINDS, adversarial_cloud, make_cloud

RTOL32 = 512 * torch.finfo(torch.float32).eps


def _backends():
    return [b for b in available_backends("fps") if b != "torch_cluster"]


def test_fps_tolerance_hand_worked():
    # from 0: points 1 (distance 1) and 2 (distance 1 + 1e-4) are within tol = 1e-3 * R (R = 5)
    pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [-1.0001, 0, 0], [0, 0, 5]]], dtype=torch.float64)
    assert fps(pts, 3, backend="torch")[0].tolist() == [0, 3, 2]
    # step 2: mind = [0, 1, 1.0002, 0]: 2 is farthest, but 1 is within tol and has the lower index
    assert fps(pts, 3, tie_rtol=1e-3, backend="torch")[0].tolist() == [0, 3, 1]
    # a tolerance below the gap changes nothing
    assert fps(pts, 3, tie_rtol=1e-6, backend="torch")[0].tolist() == [0, 3, 2]


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tie_rtol", [0.0, 1e-5, 1e-2])
def test_fps_tolerance_backends_match_reference(backend, dtype, tie_rtol):
    clouds = [make_cloud(2, 300, dtype=dtype)[0]]
    clouds += [adversarial_cloud(k, 300, dtype=dtype)[0] for k in ADVERSARIAL_KINDS]
    for x in clouds:
        expect = ref.fps(x, 150, 0, tie_rtol)
        got = fps(x, 150, tie_rtol=tie_rtol, backend=backend)
        assert torch.equal(got, expect), backend


def test_fps_tolerance_zero_is_the_exact_rule():
    x = adversarial_cloud("cube", 400)[0]
    assert torch.equal(fps(x, 200, tie_rtol=0.0), fps(x, 200))


@pytest.mark.parametrize("kind", ["cube", "lattice", "planar_grid", "collinear_rings"])
def test_fps_tolerance_is_rotation_stable_where_exact_fps_is_not(kind):
    x = adversarial_cloud(kind, 512)[0]
    g = torch.Generator().manual_seed(0)
    exact_changed = 0
    for _ in range(4):
        rx = apply_rotation(random_rotation(1, g, dtype=torch.float64), x.double())[0].float()
        assert torch.equal(fps(x, 256, tie_rtol=RTOL32), fps(rx, 256, tie_rtol=RTOL32))
        exact_changed += int(not torch.equal(fps(x, 256), fps(rx, 256)))
    assert exact_changed > 0  # negative control: the exact rule flips on these clouds


def test_fps_tolerance_rejects_bad_values():
    x = make_cloud(1, 16)[0]
    for bad in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tie_rtol"):
            fps(x, 4, tie_rtol=bad)


def _brute_knn_tolerant(points, queries, k, tie_rtol):
    """The definition, one query at a time, from the full stable sort."""
    B, M = queries.shape[:2]
    out = torch.empty(B, M, k, dtype=torch.long)
    for b in range(B):
        R = points[b].norm(dim=-1).max()
        tol = tie_rtol * R
        for m in range(M):
            d2 = ref.sqdist(queries[b, m][None, None], points[b][None])[0, 0]
            vals, order = torch.sort(d2, stable=True)
            d = vals.clamp_min(0).sqrt()
            dk = d[k - 1]
            below = order[d < dk - tol].tolist()
            window = sorted(order[(d - dk).abs() <= tol].tolist())
            out[b, m] = torch.tensor((below + window)[:k])
    return out


@pytest.mark.parametrize("kind", ADVERSARIAL_KINDS)
def test_knn_tolerant_matches_definition(kind):
    x = adversarial_cloud(kind, 200, dtype=torch.float64)[0]
    q = x[:, ::7]
    for k in (1, 6, 13):
        idx, d2 = knn_tolerant(x, k, q, tie_rtol=1e-9)
        assert torch.equal(idx, _brute_knn_tolerant(x, q, k, 1e-9))
        torch.testing.assert_close(d2, ref.sqdist(q, x).gather(-1, idx), rtol=0, atol=0)


def test_knn_tolerant_wide_window_beyond_the_extra_candidates():
    # a planar grid: 4 neighbours at each lattice distance, so the window at k=6 holds 8 points
    x = adversarial_cloud("planar_grid", 144, dtype=torch.float64)[0]
    idx, _ = knn_tolerant(x, 6, tie_rtol=1e-9)
    assert torch.equal(idx, _brute_knn_tolerant(x, x, 6, 1e-9))
    # a tolerance wider than the lattice spacing: the window spans many shells
    idx, _ = knn_tolerant(x, 6, tie_rtol=0.2)
    assert torch.equal(idx, _brute_knn_tolerant(x, x, 6, 0.2))


def test_knn_tolerant_equals_knn_without_ties():
    x, _ = make_cloud(2, 256, dtype=torch.float64)
    a, da = knn_tolerant(x, 16, tie_rtol=1e-9)
    b, db = knn(x, 16)
    assert torch.equal(a, b) and torch.equal(da, db)


@pytest.mark.parametrize("kind", ["lattice", "cube", "planar_grid"])
def test_knn_tolerant_set_is_rotation_stable(kind):
    x = adversarial_cloud(kind, 400)[0]
    g = torch.Generator().manual_seed(1)
    base = knn_tolerant(x, 12, tie_rtol=RTOL32)[0].sort(-1).values
    plain = knn(x, 12)[0].sort(-1).values
    plain_changed = 0
    for _ in range(3):
        rx = apply_rotation(random_rotation(1, g, dtype=torch.float64), x.double())[0].float()
        assert torch.equal(knn_tolerant(rx, 12, tie_rtol=RTOL32)[0].sort(-1).values, base)
        plain_changed += int(not torch.equal(knn(rx, 12)[0].sort(-1).values, plain))
    assert plain_changed > 0  # negative control


def test_knn_tolerant_errors():
    x = make_cloud(1, 16)[0]
    with pytest.raises(ValueError, match="tie_rtol"):
        knn_tolerant(x, 4, tie_rtol=-1.0)
    with pytest.raises(ValueError):
        knn_tolerant(x, 17, tie_rtol=1e-6)
    with pytest.raises(ValueError):
        knn_tolerant(x[0], 4, tie_rtol=1e-6)
