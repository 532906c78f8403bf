"""Edge cases of the uniform-grid paths of the CPU kNN and ball-query kernels, vs the reference.

The grid paths (clouds of >= 64 points, kNN with 4k <= N) bin points into cells sized from the
data (kNN: sampled k-th neighbour distance; ball query: the radius, coarsened to at most 2N + 64
cells) and grow the searched window ring by ring until an exact stop test holds. These cases aim
at the places where that could go wrong: everything in one cell, clusters far apart (windows must
grow), huge or tiny extents, queries outside the grid, and exact ties.
"""

from __future__ import annotations

import pytest
import torch
from ops_helpers import cpu_backends, gaussian, lattice

import pointlib.ops as ops
from pointlib.ops import reference as ref

KNN = cpu_backends("knn")
BQ = cpu_backends("ball_query")
DTYPES = [torch.float32, torch.float64]


def _knn(backend, pts, qry, k):
    want_idx, want_d2 = ref.knn(pts, pts if qry is None else qry, k)
    idx, d2 = ops.knn(pts, k, qry, backend=backend)
    assert torch.equal(idx, want_idx)
    assert torch.equal(d2, want_d2)


def _bq(backend, pts, qry, r, ns):
    want = ref.ball_query(pts, pts if qry is None else qry, r, ns)
    assert torch.equal(ops.ball_query(pts, r, ns, qry, backend=backend), want)


def clustered(B, N, seed, dtype):
    """Four tight clusters ~1000 apart plus scattered outliers: windows have to grow."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(B, 4, 1, 3, generator=g, dtype=torch.float64) * 1000
    pts = centres + torch.randn(B, 4, N // 4, 3, generator=g, dtype=torch.float64) * 0.01
    pts = pts.reshape(B, -1, 3)
    pts[:, ::17] *= 3
    return pts.to(dtype)


@pytest.mark.skipif(not KNN, reason="no compiled CPU backend for knn")
@pytest.mark.parametrize("backend", KNN)
@pytest.mark.parametrize("dtype", DTYPES)
def test_knn_grid_edge_cases(backend, dtype):
    same = torch.zeros(2, 200, 3, dtype=dtype) + 0.5  # all duplicates: one cell, all ties
    for k in (1, 16, 50):
        _knn(backend, same, None, k)
    mostly = same.clone()
    mostly[:, ::7] = gaussian(2, 29, 3, dtype=dtype)  # duplicates plus a few distinct points
    _knn(backend, mostly, None, 40)
    pts = clustered(2, 400, 1, dtype)
    for k in (1, 16, 60, 100):
        _knn(backend, pts, None, k)
    _knn(backend, pts, clustered(2, 40, 2, dtype), 30)
    g = gaussian(2, 300, 4, dtype=dtype)
    for scale in (1e-20, 1e-6, 1e6, 1e15):  # tiny (underflowing dist2) and huge extents
        _knn(backend, g * scale, None, 20)
    _knn(backend, g, gaussian(2, 50, 5, dtype=dtype) * 40, 16)  # queries far outside the grid
    flat = g.clone()
    flat[..., 2] = 0  # a degenerate (planar) box
    _knn(backend, flat, None, 8)
    for N in (64, 65, 127):  # the smallest grid clouds, k = N // 4
        _knn(backend, gaussian(1, N, N, dtype=dtype), None, N // 4)
    _knn(backend, lattice(2, 500, 6, side=5, dtype=dtype), None, 125)  # lattice ties, k = N / 4


@pytest.mark.skipif(not BQ, reason="no compiled CPU backend for ball_query")
@pytest.mark.parametrize("backend", BQ)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ball_query_grid_edge_cases(backend, dtype):
    g = gaussian(2, 500, 7, dtype=dtype)
    dup = torch.cat([g, g[:, :100]], dim=1)  # duplicates: non-empty tiny balls
    for r in (1e-9, 1e-3):  # huge extent relative to the radius: the grid is coarsened
        _bq(backend, dup * 1e4, None, r, 4)
        _bq(backend, dup * 1e4, g[:, :50] * 1e4 + 1e-4, r, 4)
    for r in (100.0, 1e30):  # everything in one cell
        _bq(backend, g, None, r, 16)
        _bq(backend, g, None, r, 600)  # nsample > N
    same = torch.zeros(2, 100, 3, dtype=dtype)
    _bq(backend, same, None, 0.1, 8)
    _bq(backend, same, gaussian(2, 20, 8, dtype=dtype), 0.5, 8)  # mostly empty balls
    pts = clustered(2, 400, 9, dtype)
    for r, ns in ((0.005, 1), (0.02, 32), (0.05, 200)):
        _bq(backend, pts, None, r, ns)
        _bq(backend, pts, clustered(2, 60, 10, dtype), r, ns)
    for N in (1, 2, 7, 63, 64, 65):
        _bq(backend, gaussian(1, N, N + 3, dtype=dtype), None, 0.8, 8)
    _bq(backend, g * 1e-20, None, 3e-21, 8)  # subnormal-scale distances
    lat = lattice(2, 600, 11, side=6, dtype=dtype)
    for r in (0.5, 1.0, 2.0):  # r2 exactly on lattice distances: strict test at cell borders
        _bq(backend, lat, None, r, 32)
