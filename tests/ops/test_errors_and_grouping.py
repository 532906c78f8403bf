"""Argument errors (with message checks), gather/group autograd and three_nn_interpolate."""

from __future__ import annotations

import pytest
import torch
from ops_helpers import gaussian

import pointlib.ops as ops

P = gaussian(2, 10, 0)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: ops.knn(P, 11), ValueError, r"k=11 is out of range"),
        (lambda: ops.knn(P, 0), ValueError, r"k=0 is out of range"),
        (lambda: ops.knn(P, 2.0), TypeError, r"k must be an int"),
        (lambda: ops.fps(P, 11), ValueError, r"npoint=11 is out of range"),
        (lambda: ops.fps(P, 0), ValueError, r"npoint=0"),
        (lambda: ops.fps(P, 3, start=10), ValueError, r"start=10"),
        (lambda: ops.fps(P[..., :2], 1), ValueError, r"shape \(B, N, 3\)"),  # knn takes any D
        (lambda: ops.knn(P[..., :0], 1), ValueError, r"shape \(B, N, D\) with D >= 1"),
        (lambda: ops.knn(P, 1, P[..., :2]), ValueError, r"dimensions differ"),
        (lambda: ops.knn(P.long(), 1), TypeError, r"float32 or float64"),
        (lambda: ops.knn(P, 1, P.double()), TypeError, r"float32"),
        (lambda: ops.knn(P, 1, P[:1]), ValueError, r"batch sizes differ"),
        (lambda: ops.knn(P.new_zeros(2, 0, 3), 1), ValueError, r"empty"),
        (lambda: ops.ball_query(P, -1.0, 4), ValueError, r"radius"),
        (lambda: ops.ball_query(P, 0.5, 0), ValueError, r"nsample=0"),
        (lambda: ops.knn(P, 1, backend="nope"), ValueError, r"unknown backend 'nope'"),
        (lambda: ops.fps(P, 1, backend=3), TypeError, r"backend must be a string"),
    ],
)
def test_argument_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_coordinates(bad):
    pts = P.clone()
    pts[1, 4, 2] = bad
    with pytest.raises(ValueError, match=r"NaN or Inf .*batch 1, point 4"):
        ops.knn(pts, 2)
    with pytest.raises(ValueError, match="NaN or Inf"):
        ops.fps(pts, 2)


def test_device_mismatch():
    with pytest.raises(ValueError, match="queries are on meta"):
        ops.knn(P, 1, torch.empty(2, 3, 3, device="meta"))


def test_compiled_ops_check_inputs_directly():
    pytest.importorskip("pointlib._C")
    with pytest.raises(RuntimeError, match=r"k=11 must be in \[1, N=10\]"):
        torch.ops.pointlib.knn(P, P, 11)
    with pytest.raises(RuntimeError, match=r"must have shape \(B, N, 3\)"):
        torch.ops.pointlib.fps(P[..., :2], 1, 0)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.pointlib.ball_query(P.half(), P.half(), 0.5, 4)


def test_gather_group_values_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    idx = torch.randint(0, 6, (2, 5), generator=g)
    nb = torch.randint(0, 6, (2, 3, 4), generator=g)
    assert torch.equal(ops.gather(x, idx)[1, 2], x[1, idx[1, 2]])
    assert torch.equal(ops.group(x, nb)[0, 2, 3], x[0, nb[0, 2, 3]])
    assert torch.autograd.gradcheck(lambda t: ops.gather(t, idx), (x,))
    assert torch.autograd.gradcheck(lambda t: ops.group(t, nb), (x,))
    with pytest.raises(IndexError, match=r"outside \[0, 6\)"):
        ops.group(x, nb + 6)


@pytest.mark.parametrize(
    "backend", ["torch", *[b for b in ("cpu",) if b in ops.available_backends("knn")]]
)
def test_three_nn_interpolate_matches_naive_loop(backend):
    unknown, known = gaussian(2, 20, 1, dtype=torch.float64), gaussian(2, 7, 2, dtype=torch.float64)
    feats = torch.randn(2, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = ops.three_nn_interpolate(unknown, known, feats, backend=backend)
    want = torch.empty_like(out)
    for b in range(2):
        for n in range(20):
            d2 = ((known[b] - unknown[b, n]) ** 2).sum(-1)
            order = sorted(range(7), key=lambda j: (float(d2[j]), j))[:3]
            w = torch.stack([1.0 / (d2[j] + 1e-8) for j in order])
            w = w / w.sum()
            want[b, n] = sum(w[i] * feats[b, j] for i, j in enumerate(order))
    torch.testing.assert_close(out, want)


def _analytic_dist2_sum_grad(pts: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """d/dp of sum over (query i, neighbour j) of |p_i - p_j|^2, written out by hand."""
    grad = torch.zeros_like(pts)
    for b in range(pts.shape[0]):
        for i in range(pts.shape[1]):
            for j in idx[b, i].tolist():
                diff = 2 * (pts[b, i] - pts[b, j])
                grad[b, i] += diff
                grad[b, j] -= diff
    return grad


@pytest.mark.parametrize(
    "backend", [b for b in ops.available_backends("knn") if b != "torch_cluster"]
)
def test_knn_dist2_gradient_matches_the_analytic_gradient(backend):
    pts = gaussian(1, 30, 4, dtype=torch.float64).requires_grad_()
    idx, d2 = ops.knn(pts, 4, backend=backend)
    (g,) = torch.autograd.grad(d2.sum(), pts)
    want_d2 = ((pts[0, :, None] - pts[0][idx[0]]) ** 2).sum(-1)[None]
    torch.testing.assert_close(d2.detach(), want_d2.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(g, _analytic_dist2_sum_grad(pts.detach(), idx))
