"""Finite input gives finite output: huge coordinates, huge radii, inputs that require grad."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ops_helpers import cpu_backends, gaussian

import pointlib.ops as ops
from pointlib.ops._validate import check_radius
from pointlib.ops.reference import ball_query as reference_ball_query


def _oracle_interpolate(unknown, known, feats, k=3):
    """NumPy float64 oracle on coordinates rescaled to unit size (the weights are scale-free
    once eps is negligible)."""
    u, kn, f = (np.asarray(t, np.float64) for t in (unknown, known, feats))
    s = max(np.abs(u).max(), np.abs(kn).max())
    u, kn = u / s, kn / s
    out = np.empty((u.shape[0], u.shape[1], f.shape[2]))
    for b in range(u.shape[0]):
        d2 = ((u[b, :, None, :] - kn[b, None, :, :]) ** 2).sum(-1)
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        w = 1.0 / np.take_along_axis(d2, order, 1)
        w /= w.sum(1, keepdims=True)
        out[b] = (f[b][order] * w[..., None]).sum(1)
    return out


@pytest.mark.parametrize(("dtype", "scale"), [(torch.float32, 1e19), (torch.float64, 1e155)])
def test_three_nn_interpolate_huge_coordinates(dtype, scale):
    unknown = gaussian(2, 30, 1, dtype=torch.float64)
    known = gaussian(2, 9, 2, dtype=torch.float64)
    feats = torch.randn(2, 9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    big_u, big_k = (unknown * scale).to(dtype), (known * scale).to(dtype)
    _, d2 = ops.knn(big_k, 3, big_u)
    assert not torch.isfinite(d2).all()  # the naive squared distances do overflow here
    out = ops.three_nn_interpolate(big_u, big_k, feats.to(dtype))
    assert torch.isfinite(out).all()
    want = _oracle_interpolate(big_u, big_k, feats)
    np.testing.assert_allclose(out.double().numpy(), want, rtol=1e-4, atol=1e-5)


def test_three_nn_interpolate_huge_with_coincident_point():
    known = gaussian(1, 6, 4) * 1e19
    unknown = known[:, :2].clone()  # exactly on known points 0 and 1
    feats = torch.arange(12.0).reshape(1, 6, 2)
    out = ops.three_nn_interpolate(unknown, known, feats)
    torch.testing.assert_close(out, feats[:, :2])


def test_three_nn_interpolate_ordinary_scale_unchanged():
    unknown, known = gaussian(2, 20, 1), gaussian(2, 7, 2)
    feats = torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(3))
    idx, d2 = ops.knn(known, 3, unknown)
    w = 1.0 / (d2 + 1e-8)
    w = w / w.sum(-1, keepdim=True)
    want = (ops.group(feats, idx) * w[..., None]).sum(2)
    assert torch.equal(ops.three_nn_interpolate(unknown, known, feats), want)  # bit for bit


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_fps_accepts_inputs_that_require_grad(backend):
    pts = gaussian(2, 50, 5).requires_grad_()
    idx = ops.fps(pts, 10, backend=backend)
    assert torch.equal(idx, ops.fps(pts.detach(), 10, backend="torch"))
    assert not idx.requires_grad


@pytest.mark.parametrize("backend", ["torch", *cpu_backends("ball_query")])
@pytest.mark.parametrize("radius", [1e154, 1e200, 1.7e308])
def test_ball_query_huge_radius(radius, backend):
    pts = gaussian(2, 12, 6, dtype=torch.float64)
    idx = ops.ball_query(pts, radius, 5, backend=backend)
    assert torch.equal(idx, torch.arange(5).expand(2, 12, 5))  # every point is inside
    idx32 = ops.ball_query(pts.float(), radius, 5, backend=backend)
    assert torch.equal(idx32, idx)


def test_reference_ball_query_radius_squared_overflows_to_inf():
    pts = gaussian(1, 4, 7, dtype=torch.float64)
    assert torch.equal(reference_ball_query(pts, pts, 1e300, 2), torch.tensor([[[0, 1]] * 4]))


@pytest.mark.parametrize(
    "value", [0.5, 1, np.float32(0.5), np.float64(0.5), np.float16(0.5), np.int64(2),
              torch.tensor(0.5), torch.tensor([0.5])],
)  # fmt: skip
def test_check_radius_accepts_real_scalars(value):
    assert check_radius(value) == pytest.approx(float(np.asarray(value).reshape(())))


@pytest.mark.parametrize(
    ("value", "exc", "match"),
    [
        (True, TypeError, "radius must be a float, got bool"),
        (np.bool_(True), TypeError, "got bool"),
        ("0.5", TypeError, "got str"),
        (torch.tensor([0.5, 1.0]), TypeError, "real scalar"),
        (0.0, ValueError, "finite and > 0"),
        (np.float32("inf"), ValueError, "finite and > 0"),
        (-1, ValueError, "finite and > 0"),
    ],
)
def test_check_radius_rejects(value, exc, match):
    with pytest.raises(exc, match=match):
        check_radius(value)


def test_ball_query_accepts_numpy_float32_radius():
    """``radius=np.float32(0.5)`` is the same ball as ``0.5`` (issue 15 item 5)."""
    from pointlib.ops import ball_query
    from pointlib.testing import make_cloud

    x, _ = make_cloud(1, 64)
    assert torch.equal(ball_query(x, np.float32(0.5), 8), ball_query(x, 0.5, 8))
    with pytest.raises(TypeError, match="radius"):
        ball_query(x, "0.5", 8)
