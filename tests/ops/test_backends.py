"""Every backend against the reference, bit for bit on indices (ties included)."""

from __future__ import annotations

import itertools

import pytest
import torch
from ops_helpers import cpu_backends, gaussian, lattice

import pointlib.ops as ops
from pointlib.ops import reference as ref

KNN_BACKENDS = cpu_backends("knn")
BQ_BACKENDS = cpu_backends("ball_query")
FPS_BACKENDS = cpu_backends("fps")


def _clouds(B, N, M, seed, kind, dtype):
    make = lattice if kind == "lattice" else gaussian
    pts = make(B, N, seed, dtype=dtype)
    qry = None if M == N else make(B, M, seed + 1, dtype=dtype)
    return pts, qry


def _sweep(quick: bool):
    cases = []
    for B, N, same, kind in itertools.product(
        (1, 3), (1, 7, 64, 1000), (True, False), ("g", "lattice")
    ):
        M = N if same else max(1, N // 3)
        for k in sorted({1, min(16, N), N}):
            cases.append((B, N, M, k, kind))
    return cases[::3] if quick else cases


def _check_knn(backend, pts, qry, k, device="cpu"):
    want_idx, want_d2 = ref.knn(pts, pts if qry is None else qry, k)
    idx, d2 = ops.knn(pts.to(device), k, None if qry is None else qry.to(device), backend=backend)
    assert idx.dtype == torch.int64 and idx.shape == want_idx.shape
    assert torch.equal(idx.cpu(), want_idx)
    assert torch.equal(d2.cpu(), want_d2)


@pytest.mark.skipif(not KNN_BACKENDS, reason="no compiled CPU backend for knn")
@pytest.mark.parametrize("backend", KNN_BACKENDS)
@pytest.mark.parametrize("case", _sweep(quick=True))
def test_knn_sweep(backend, case):
    B, N, M, k, kind = case
    pts, qry = _clouds(B, N, M, N + k, kind, torch.float32)
    _check_knn(backend, pts, qry, k)


@pytest.mark.slow
@pytest.mark.parametrize("backend", KNN_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", _sweep(quick=False))
def test_knn_sweep_full(backend, case, dtype):
    B, N, M, k, kind = case
    pts, qry = _clouds(B, N, M, 7 * N + k, kind, dtype)
    _check_knn(backend, pts, qry, k)


@pytest.mark.parametrize("backend", KNN_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_lattice_ties_duplicates_float64(backend, dtype):
    # 600 points on a 5^3 lattice: many duplicates and exact distance ties (blocked CPU path)
    pts = lattice(2, 600, 11, side=5, dtype=dtype)
    for k in (1, 8, 32, 64, 300):
        _check_knn(backend, pts, None, k)
    _check_knn(backend, pts, lattice(2, 50, 12, side=6, dtype=dtype), 20)


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_noncontiguous(backend):
    base = gaussian(2, 500, 5).transpose(1, 2).contiguous().transpose(1, 2)  # strided view
    assert not base.is_contiguous()
    _check_knn(backend, base, None, 10)
    _check_knn(backend, base, base[:, ::4], 10)


def _check_bq(backend, pts, qry, r, ns, device="cpu"):
    want = ref.ball_query(pts, pts if qry is None else qry, r, ns)
    got = ops.ball_query(
        pts.to(device), r, ns, None if qry is None else qry.to(device), backend=backend
    )
    assert got.dtype == torch.int64
    assert torch.equal(got.cpu(), want)


@pytest.mark.parametrize("backend", BQ_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("N", [1, 7, 64, 1000])
def test_ball_query_sweep(backend, dtype, N):
    pts = gaussian(3, N, N, dtype=dtype)
    for r, ns in ((0.3, 8), (0.7, 32), (5.0, N + 3)):
        _check_bq(backend, pts, None, r, ns)
        # far-away queries: every ball is empty -> nearest point
        _check_bq(backend, pts, gaussian(3, 20, N + 1, dtype=dtype) + 10, r, ns)
        _check_bq(backend, pts, gaussian(3, 20, N + 2, dtype=dtype), r, ns)


@pytest.mark.parametrize("backend", BQ_BACKENDS)
def test_ball_query_lattice_boundary(backend):
    pts = lattice(2, 700, 3, side=6)
    q = lattice(2, 100, 4, side=7)
    for r in (1.0, 1.5, 2.0, 3.0):  # r2 = 1, 4, 9: lattice points exactly on the sphere
        _check_bq(backend, pts, q, r, 16)
        _check_bq(backend, pts, None, r, 64)
    _check_bq(backend, pts.transpose(1, 2).contiguous().transpose(1, 2), None, 1.0, 5)


def _check_fps(backend, pts, npoint, start=0):
    want = ref.fps(pts, npoint, start)
    got = ops.fps(pts, npoint, start=start, backend=backend)
    assert got.dtype == torch.int64
    assert torch.equal(got.cpu(), want)


@pytest.mark.parametrize("backend", FPS_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("N", [1, 7, 64, 1000])
def test_fps_sweep(backend, dtype, N):
    pts = gaussian(3, N, N, dtype=dtype)
    _check_fps(backend, pts, N)
    _check_fps(backend, pts, max(1, N // 2))


@pytest.mark.parametrize("backend", FPS_BACKENDS)
def test_fps_lattice_ties_and_start(backend):
    pts = lattice(3, 300, 8, side=4)  # only 64 distinct points: ties and zero distances
    _check_fps(backend, pts, 300)
    _check_fps(backend, pts.transpose(1, 2).contiguous().transpose(1, 2), 100)
    if backend != "torch_cluster":
        _check_fps(backend, pts, 50, start=17)


# --- GPU: the cuda backend against the CPU reference (run on a GPU machine) -------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_backend_matches_reference(dtype):
    if "cuda" not in ops.available_backends(device="cuda"):
        pytest.skip("pointlib._C has no CUDA kernels (build with POINTLIB_BUILD_EXT=cuda)")
    for B, N, M, k, kind in _sweep(quick=False)[::2]:
        pts, qry = _clouds(B, N, M, N + k, kind, dtype)
        _check_knn("cuda", pts, qry, min(k, 256), device="cuda")
        _check_bq("cuda", pts, qry, 0.5 if kind == "g" else 1.0, 16, device="cuda")
        want = ref.fps(pts, max(1, N // 2))
        got = ops.fps(pts.cuda(), max(1, N // 2), backend="cuda")
        assert torch.equal(got.cpu(), want)
    lat = lattice(2, 1000, 9, side=5, dtype=dtype)
    _check_knn("cuda", lat, None, 64, device="cuda")
    _check_bq("cuda", lat, None, 2.0, 40, device="cuda")
    assert torch.equal(ops.fps(lat.cuda(), 500, backend="cuda").cpu(), ref.fps(lat, 500))


@pytest.mark.cuda
def test_cuda_k_limit_and_stream():
    if "cuda" not in ops.available_backends(device="cuda"):
        pytest.skip("pointlib._C has no CUDA kernels")
    pts = gaussian(1, 400, 0).cuda()
    with pytest.raises(ops.BackendUnavailableError, match="MAX_K"):
        ops.knn(pts, 300, backend="cuda")
    assert ops.knn(pts, 300)[0].shape == (1, 400, 300)  # auto falls back to torch
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        idx = ops.fps(pts, 100, backend="cuda")
    s.synchronize()
    assert torch.equal(idx.cpu(), ref.fps(pts.cpu(), 100))
