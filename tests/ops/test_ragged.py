"""Any-D, ragged and half-precision point ops: the reference against an explicit oracle, every
compiled backend against the reference (indices bit-identical, ties included), and the errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from ops_helpers import cpu_backends

import pointlib.ops as ops
from pointlib import _ext
from pointlib.ops import _ext_backends
from pointlib.ops import reference as ref

RAGGED = cpu_backends("knn_ragged")


def rows(n: int, d: int, seed: int, kind: str = "gauss", dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "lattice":  # exact distances, many exact ties and duplicates
        return torch.randint(0, 3, (n, d), generator=g).to(dtype)
    return torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)


def graph_ids(n: int, graphs: int, seed: int, *, shuffled: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(0, graphs, (n,), generator=g)
    return b if shuffled else b.sort().values


# --- explicit oracles (plain Python loops; the definition written out) --------------------------


def d2_seq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    acc = None
    for c in range(a.shape[-1]):
        t = (a[c] - b[c]) * (a[c] - b[c])
        acc = t if acc is None else acc + t
    return acc


def oracle_knn(x, y, bx, by, k):
    idx = torch.full((y.shape[0], k), -1, dtype=torch.long)
    for m in range(y.shape[0]):
        cand = [(float(d2_seq(y[m], x[j])), j) for j in range(x.shape[0]) if bx[j] == by[m]]
        for i, (_, j) in enumerate(sorted(cand)[:k]):
            idx[m, i] = j
    return idx


def oracle_ball(x, y, bx, by, r, ns):
    r2 = torch.tensor(r * r, dtype=x.dtype)
    idx = torch.full((y.shape[0], ns), -1, dtype=torch.long)
    for m in range(y.shape[0]):
        mem = [j for j in range(x.shape[0]) if bx[j] == by[m] and d2_seq(y[m], x[j]) < r2][:ns]
        idx[m, : len(mem)] = torch.tensor(mem, dtype=torch.long)
    return idx


def oracle_fps(x, b, want_per_graph):
    out = []
    for g, want in enumerate(want_per_graph):
        members = [j for j in range(x.shape[0]) if b[j] == g]
        if not want:
            continue
        mind = {j: float("inf") for j in members}
        last = members[0]
        for _ in range(want):
            out.append(last)
            for j in members:
                mind[j] = min(mind[j], float(d2_seq(x[last], x[j])))
            best = max(mind.values())
            last = min(j for j in members if mind[j] == best)
    return torch.tensor(out, dtype=torch.long)


@pytest.mark.parametrize("kind", ["gauss", "lattice"])
@pytest.mark.parametrize("d", [1, 2, 5])
def test_reference_matches_oracle(kind, d):
    x = rows(40, d, d, kind, torch.float64)
    y = rows(15, d, d + 1, kind, torch.float64)
    bx = graph_ids(40, 3, 1, shuffled=True)
    by = graph_ids(15, 3, 2, shuffled=True)
    # k larger than some graphs: -1 padding
    idx, d2 = ops.knn_ragged(x, 20, y, batch_x=bx, batch_y=by, backend="torch")
    assert torch.equal(idx, oracle_knn(x, y, bx, by, 20))
    assert torch.equal(torch.isinf(d2), idx < 0)
    r = 1.0 if kind == "lattice" else 0.9 * d**0.5
    got = ops.ball_query_ragged(x, r, 7, y, batch_x=bx, batch_y=by, backend="torch")
    assert torch.equal(got, oracle_ball(x, y, bx, by, r, 7))
    counts = torch.bincount(bx, minlength=3)
    want = [int(c) // 2 + 1 for c in counts]
    got = ops.fps_ragged(x, npoint=max(want), batch=bx, backend="torch")
    per = torch.minimum(counts, torch.tensor(max(want)))
    assert torch.equal(got, oracle_fps(x, bx, per.tolist()))


def test_ragged_reference_agrees_with_dense_reference():
    pts = rows(3 * 70, 3, 4, "lattice")
    idx, d2 = ops.knn_ragged(pts, 9, ptr_x=torch.tensor([0, 70, 140, 210]), backend="torch")
    want_i, want_d = ref.knn(pts.view(3, 70, 3), pts.view(3, 70, 3), 9)
    off = (torch.arange(3) * 70).view(3, 1, 1)
    assert torch.equal(idx.view(3, 70, 9), want_i + off)
    assert torch.equal(d2.view(3, 70, 9), want_d)


def test_reference_chunks_keep_graphs(monkeypatch):
    x = rows(300, 4, 5)
    b = graph_ids(300, 7, 6, shuffled=False)
    full = ops.knn_ragged(x, 5, batch_x=b, backend="torch")
    ball = ops.ball_query_ragged(x, 1.2, 6, batch_x=b, backend="torch")
    monkeypatch.setattr(ref, "CHUNK_ELEMS", 97)  # many chunks, some inside one graph
    assert torch.equal(ops.knn_ragged(x, 5, batch_x=b, backend="torch")[0], full[0])
    assert torch.equal(ops.ball_query_ragged(x, 1.2, 6, batch_x=b, backend="torch"), ball)


# --- compiled backends against the reference -----------------------------------------------------


def _ragged_cases():
    cases = itertools.product(
        ((1, 1), (30, 4), (400, 5)), (1, 3, 7, 64, 65), ("gauss", "lattice"), (False, True)
    )
    for i, ((n, graphs), d, kind, shuffled) in enumerate(cases):
        yield n, graphs, d, kind, shuffled, torch.float64 if i % 3 == 0 else torch.float32


@pytest.mark.skipif(not RAGGED, reason="no compiled CPU backend with the ragged kernels")
@pytest.mark.parametrize("backend", RAGGED)
@pytest.mark.parametrize("case", list(_ragged_cases()), ids=str)
def test_backend_ragged_matches_reference(backend, case):
    n, graphs, d, kind, shuffled, dtype = case
    x = rows(n, d, n + d, kind, dtype)
    bx = graph_ids(n, graphs, n, shuffled=shuffled)
    y = rows(max(1, n // 3), d, n + d + 1, kind, dtype)
    by = graph_ids(y.shape[0], graphs, n + 1, shuffled=shuffled)
    for k in (1, 16, 100):
        got = ops.knn_ragged(x, k, batch_x=bx, backend=backend)
        want = ops.knn_ragged(x, k, batch_x=bx, backend="torch")
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        got = ops.knn_ragged(x, k, y, batch_x=bx, batch_y=by, backend=backend)
        want = ops.knn_ragged(x, k, y, batch_x=bx, batch_y=by, backend="torch")
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    r = 1.0 if kind == "lattice" else 0.7 * d**0.5  # lattice: points exactly on the sphere
    for ns in (1, 8, 64):
        got = ops.ball_query_ragged(x, r, ns, y, batch_x=bx, batch_y=by, backend=backend)
        want = ops.ball_query_ragged(x, r, ns, y, batch_x=bx, batch_y=by, backend="torch")
        assert torch.equal(got, want)
    for ratio in (0.25, 1.0):
        got = ops.fps_ragged(x, ratio=ratio, batch=bx, backend=backend)
        assert torch.equal(got, ops.fps_ragged(x, ratio=ratio, batch=bx, backend="torch"))
    start = torch.bincount(bx, minlength=graphs).sub(1).clamp(min=0)  # last row of each graph
    got = ops.fps_ragged(x, npoint=9, batch=bx, start=start, backend=backend)
    assert torch.equal(got, ops.fps_ragged(x, npoint=9, batch=bx, start=start, backend="torch"))


@pytest.mark.skipif(not RAGGED, reason="no compiled CPU backend with the ragged kernels")
@pytest.mark.parametrize("backend", RAGGED)
@pytest.mark.parametrize("kind", ["gauss", "lattice"])
def test_backend_ragged_3d_large_graphs(backend, kind):
    # 3-D graphs of >= 128 rows run the dense grid kernels graph by graph, mixed with small ones
    sizes = [700, 5, 300, 150, 1]
    x = rows(sum(sizes), 3, 1, kind) * (1.0 if kind == "lattice" else 0.5)
    b = torch.repeat_interleave(torch.arange(5), torch.tensor(sizes))
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(2))
    x, b = x[perm], b[perm]
    y = rows(400, 3, 3, kind) * (1.0 if kind == "lattice" else 0.5)
    by = torch.randint(0, 5, (400,), generator=torch.Generator().manual_seed(4))
    for q, bq in ((None, None), (y, by)):
        for k in (1, 16, 100, 400):
            got = ops.knn_ragged(x, k, q, batch_x=b, batch_y=bq, backend=backend)
            want = ops.knn_ragged(x, k, q, batch_x=b, batch_y=bq, backend="torch")
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        for r, ns in ((0.3, 8), (1.0, 32), (2.0, 700)):
            got = ops.ball_query_ragged(x, r, ns, q, batch_x=b, batch_y=bq, backend=backend)
            want = ops.ball_query_ragged(x, r, ns, q, batch_x=b, batch_y=bq, backend="torch")
            assert torch.equal(got, want)
    far = y + 50  # every ball empty: only padding (the dense kernel's nearest fill is removed)
    got = ops.ball_query_ragged(x, 0.5, 4, far, batch_x=b, batch_y=by, backend=backend)
    assert (got == -1).all()


@pytest.mark.skipif(not RAGGED, reason="no compiled CPU backend with the ragged kernels")
@pytest.mark.parametrize("backend", RAGGED)
def test_backend_empty_and_tiny_graphs(backend):
    x = rows(12, 4, 0, "lattice")
    ptr = torch.tensor([0, 0, 1, 1, 5, 12])  # empty, 1 row, empty, 4 rows, 7 rows
    ptr_y = torch.tensor([0, 2, 3, 3, 3, 6])  # queries in an empty graph get only padding
    y = rows(6, 4, 1, "lattice")
    for be in (backend, "torch"):
        idx, d2 = ops.knn_ragged(x, 5, y, ptr_x=ptr, ptr_y=ptr_y, backend=be)
        assert (idx[:2] == -1).all() and torch.isinf(d2[:2]).all()
        assert idx[2].tolist() == [0, -1, -1, -1, -1]
    a = ops.knn_ragged(x, 5, y, ptr_x=ptr, ptr_y=ptr_y, backend=backend)
    b = ops.knn_ragged(x, 5, y, ptr_x=ptr, ptr_y=ptr_y, backend="torch")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    got = ops.fps_ragged(x, ratio=0.5, ptr=ptr, backend=backend)
    assert got.tolist() == ops.fps_ragged(x, ratio=0.5, ptr=ptr, backend="torch").tolist()
    assert got.numel() == 0 + 1 + 0 + 2 + 4  # ceil(0.5 * n_b)
    bq = ops.ball_query_ragged(x, 1.5, 3, y, ptr_x=ptr, ptr_y=ptr_y, backend=backend)
    assert torch.equal(
        bq, ops.ball_query_ragged(x, 1.5, 3, y, ptr_x=ptr, ptr_y=ptr_y, backend="torch")
    )


@pytest.mark.parametrize("backend", ["torch", *RAGGED])
@pytest.mark.parametrize("d", [1, 2, 16, 64, 70])
def test_dense_any_dimension(backend, d):
    pts = rows(2 * 150, d, d, "lattice").view(2, 150, d)
    qry = rows(2 * 40, d, d + 1, "lattice").view(2, 40, d)
    for q in (None, qry):
        idx, d2 = ops.knn(pts, 12, q, backend=backend)
        wi, wd = ref.knn(pts, pts if q is None else q, 12)
        assert torch.equal(idx, wi) and torch.equal(d2, wd)
        got = ops.ball_query(pts, 1.5, 10, q, backend=backend)
        assert torch.equal(got, ref.ball_query(pts, pts if q is None else q, 1.5, 10))
    far = qry + 100  # empty balls: the nearest point, as in 3-D
    got = ops.ball_query(pts, 1.0, 4, far, backend=backend)
    assert torch.equal(got, ref.ball_query(pts, far, 1.0, 4))
    assert torch.equal(got[..., 0], ref.knn(pts, far, 1)[0][..., 0])


def test_dense_reference_any_d_is_the_3d_rule_for_d3():
    p = rows(2 * 64, 3, 9).view(2, 64, 3)
    q = rows(2 * 10, 3, 10).view(2, 10, 3)
    d = q[:, :, None, :] - p[:, None, :, :]
    want = (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) + d[..., 2] * d[..., 2]
    assert torch.equal(ref.sqdist(q, p), want)


# --- half precision ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", *cpu_backends("knn")])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_computed_in_float32(backend, dtype):
    pts = rows(2 * 200, 3, 1).view(2, 200, 3).to(dtype)
    idx, d2 = ops.knn(pts, 10, backend=backend)
    wi, wd = ref.knn(pts.float(), pts.float(), 10)
    assert d2.dtype == torch.float32 and torch.equal(idx, wi) and torch.equal(d2, wd)
    assert torch.equal(
        ops.ball_query(pts, 0.4, 8, backend=backend),
        ref.ball_query(pts.float(), pts.float(), 0.4, 8),
    )
    feat = rows(300, 16, 2).to(dtype)
    b = graph_ids(300, 3, 3, shuffled=True)
    be = backend if backend in ("torch", *RAGGED) else "torch"
    i1, d1 = ops.knn_ragged(feat, 7, batch_x=b, backend=be)
    i2, d2r = ops.knn_ragged(feat.float(), 7, batch_x=b, backend="torch")
    assert d1.dtype == torch.float32 and torch.equal(i1, i2) and torch.equal(d1, d2r)
    got = ops.fps_ragged(feat, ratio=0.3, batch=b, backend=be)
    assert torch.equal(got, ops.fps_ragged(feat.float(), ratio=0.3, batch=b, backend="torch"))


# --- batch / ptr handling ------------------------------------------------------------------------


def test_unsorted_batch_equals_sorted_and_keeps_caller_rows():
    x = rows(200, 5, 11, "lattice")
    b = graph_ids(200, 4, 12, shuffled=True)
    perm = torch.sort(b, stable=True).indices
    idx, d2 = ops.knn_ragged(x, 6, batch_x=b)
    sidx, sd2 = ops.knn_ragged(x[perm], 6, batch_x=b[perm])
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(200)
    # the same neighbours, expressed in the caller's rows, in the same (dist2, row) order
    assert torch.equal(idx[perm], torch.where(sidx >= 0, perm[sidx.clamp(min=0)], -1))
    assert torch.equal(d2[perm], sd2)
    assert (b[idx] == b[:, None]).all()  # never across graphs


def test_ptr_and_batch_agree():
    x = rows(90, 3, 1)
    b = graph_ids(90, 5, 2, shuffled=False)
    ptr = torch.zeros(6, dtype=torch.long)
    ptr[1:] = torch.bincount(b, minlength=5).cumsum(0)
    a = ops.knn_ragged(x, 4, batch_x=b)
    c = ops.knn_ragged(x, 4, ptr_x=ptr)
    assert torch.equal(a[0], c[0])
    assert torch.equal(ops.fps_ragged(x, ratio=0.5, batch=b), ops.fps_ragged(x, ratio=0.5, ptr=ptr))


def test_ratio_rounding_is_float32_ceil():
    x = rows(1000, 3, 0)
    # 10 * 0.7 is 7.000000000000001 in float64 (ceil 8) but exactly 7 in float32 (ceil 7)
    assert ops.fps_ragged(x[:10], ratio=0.7).numel() == 7
    assert ops.fps_ragged(x, ratio=0.1).numel() == 100
    got = ops.fps_ragged(x, ratio=torch.tensor([0.5, 0.25]), ptr=torch.tensor([0, 10, 1000]))
    assert got.numel() == 5 + 248 and bool((got[:5] < 10).all()) and bool((got[5:] >= 10).all())


@pytest.mark.parametrize("backend", ["torch", *RAGGED])
def test_ragged_dist2_gradients(backend):
    x = rows(60, 6, 3).double().requires_grad_()
    b = graph_ids(60, 3, 4, shuffled=True)
    idx, d2 = ops.knn_ragged(x, 5, batch_x=b, backend=backend)
    (g,) = torch.autograd.grad(torch.where(idx >= 0, d2, 0).sum(), x)
    x2 = x.detach().clone().requires_grad_()
    nb = x2[idx.clamp(min=0)]
    want = ((x2[:, None, :] - nb) ** 2).sum(-1)
    (g2,) = torch.autograd.grad(torch.where(idx >= 0, want, 0).sum(), x2)
    torch.testing.assert_close(g, g2)


# --- limits and errors ---------------------------------------------------------------------------


def test_cuda_limits_fall_back_beyond_max_d(monkeypatch):
    monkeypatch.setattr(_ext, "HAS_CUDA_EXT", True)
    ok, why = _ext_backends._can_run_cuda("knn_ragged", "cuda", torch.float32, {"d": 65, "k": 4})
    assert not ok and "MAX_D=64" in why
    ok, why = _ext_backends._can_run_cuda("knn", "cuda", torch.float32, {"d": 64, "k": 4})
    assert ok or "predates" in why
    ok, why = _ext_backends._can_run_cuda("knn_ragged", "cuda", torch.float32, {"d": 3, "k": 300})
    assert not ok and "MAX_K" in why


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda x: ops.knn_ragged(x[:, :0], 2), ValueError, r"\(N, D\) with D >= 1"),
        (lambda x: ops.knn_ragged(x.long(), 2), TypeError, "float16, bfloat16"),
        (lambda x: ops.knn_ragged(x, 0), ValueError, "k=0"),
        (lambda x: ops.knn_ragged(x, 2, x[:, :2]), ValueError, "D=3 but y has D=2"),
        (lambda x: ops.knn_ragged(x, 2, x.double()), TypeError, "x is torch.float32"),
        (
            lambda x: ops.knn_ragged(x, 2, batch_x=torch.zeros(3, dtype=torch.long)),
            ValueError,
            r"batch_x must have shape \(10,\)",
        ),
        (lambda x: ops.knn_ragged(x, 2, batch_x=torch.zeros(10)), TypeError, "integer tensor"),
        (
            lambda x: ops.knn_ragged(x, 2, batch_x=-torch.ones(10, dtype=torch.long)),
            ValueError,
            "negative graph ids",
        ),
        (lambda x: ops.knn_ragged(x, 2, ptr_x=torch.tensor([0, 4])), ValueError, "end at N=10"),
        (
            lambda x: ops.knn_ragged(x, 2, ptr_x=torch.tensor([0, 6, 4, 10])),
            ValueError,
            "non-decreasing",
        ),
        (
            lambda x: ops.knn_ragged(
                x, 2, batch_x=torch.zeros(10, dtype=torch.long), ptr_x=torch.tensor([0, 10])
            ),
            ValueError,
            "not both",
        ),
        (lambda x: ops.knn_ragged(x.masked_fill(x > 1, float("nan")), 2), ValueError, "NaN"),
        (lambda x: ops.ball_query_ragged(x, -1.0, 2), ValueError, "radius=-1.0"),
        (lambda x: ops.fps_ragged(x), ValueError, "exactly one of ratio or npoint"),
        (lambda x: ops.fps_ragged(x, ratio=1.5), ValueError, "ratio=1.5"),
        (lambda x: ops.fps_ragged(x, npoint=2, start=10), ValueError, "start must lie"),
        (
            lambda x: ops.knn(x[None, :, :2].contiguous(), 2, x[None]),
            ValueError,
            "dimensions differ",
        ),
    ],
)
def test_errors_name_the_problem(call, exc, match):
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(exc, match=match):
        call(x)


@pytest.mark.skipif(not RAGGED, reason="no compiled CPU backend with the ragged kernels")
def test_kernels_check_direct_calls():
    x = torch.randn(10, 3)
    ptr = torch.tensor([0, 10])
    with pytest.raises(RuntimeError, match="ptr_x must start at 0 and end at 10"):
        torch.ops.pointlib.knn_ragged(x, x, torch.tensor([0, 9]), ptr, 2)
    with pytest.raises(RuntimeError, match="non-decreasing"):
        torch.ops.pointlib.knn_ragged(
            x, x, torch.tensor([0, 7, 5, 10]), torch.tensor([0, 1, 2, 10]), 2
        )
    with pytest.raises(RuntimeError, match="5 samples of 3"):
        torch.ops.pointlib.fps_ragged(
            x, torch.tensor([0, 3, 10]), torch.tensor([0, 5, 6]), torch.zeros(2, dtype=torch.long)
        )
    with pytest.raises(RuntimeError, match="must be float32 or float64"):
        torch.ops.pointlib.ball_query_ragged(x.half(), x.half(), ptr, ptr, 0.5, 4)
