"""The ``torch_cluster`` drop-in: its contract against pointlib's reference, every documented
difference from torch-cluster, agreement with torch-cluster where both define the same result,
and torch-geometric layers run through it (``install()``) compared with the reference."""

from __future__ import annotations

import sys

import pytest
import torch

import pointlib.interop.torch_cluster as tc
import pointlib.ops as ops


def gauss(n: int, d: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)


def sorted_batch(n: int, graphs: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, graphs, (n,), generator=g).sort().values


def ref_knn_edges(x, y, k, bx, by):
    """[y index, x index] built from the pointlib reference (ragged kNN, torch backend)."""
    idx, _ = ops.knn_ragged(x, k, y, batch_x=bx, batch_y=by, backend="torch")
    rows = torch.arange(y.shape[0])[:, None].expand_as(idx)
    keep = idx >= 0
    return torch.stack([rows[keep], idx[keep]])


def pairs(e: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, e.t().tolist()))


# --- contract ------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3, 16])
def test_knn_equals_reference_edges(d):
    x, y = gauss(500, d, d), gauss(120, d, d + 1)
    bx, by = sorted_batch(500, 4, 1), sorted_batch(120, 4, 2)
    e = tc.knn(x, y, 9, bx, by)
    assert e.dtype == torch.long and torch.equal(e, ref_knn_edges(x, y, 9, bx, by))
    assert (bx[e[1]] == by[e[0]]).all()  # same graph only
    # grouped by query, ascending distance
    d2 = ((y[e[0]] - x[e[1]]) ** 2).sum(-1).view(120, 9)
    assert (d2.diff(dim=1) >= 0).all()


def test_knn_ties_go_to_the_lower_index():
    x = torch.tensor([[0.0], [1.0], [-1.0], [2.0], [-2.0]])
    assert tc.knn(x, torch.tensor([[0.0]]), 3).tolist() == [[0, 0, 0], [0, 1, 2]]
    # 1-D inputs are rows of one feature, as in torch-cluster
    assert torch.equal(tc.knn(x[:, 0], torch.tensor([0.0]), 3), tc.knn(x, x[:1], 3))


def test_knn_graph_loop_flow_and_duplicates():
    x = torch.tensor([[0.0], [0.0], [0.0], [5.0], [6.0]])  # three exact duplicates
    e = tc.knn_graph(x, 2)  # source_to_target: [neighbour, centre]
    assert (e[0] != e[1]).all(), "loop=False must not return self-loops"
    assert torch.bincount(e[1], minlength=5).tolist() == [2] * 5  # always k per centre
    nb = {c: sorted(e[0, e[1] == c].tolist()) for c in range(5)}
    assert nb[2] == [0, 1] and nb[0] == [1, 2] and nb[3] == [0, 4]
    e2 = tc.knn_graph(x, 2, flow="target_to_source")
    assert torch.equal(e2, e.flip(0))
    loop = tc.knn_graph(x, 2, loop=True)
    assert torch.bincount(loop[1], minlength=5).tolist() == [2] * 5
    with pytest.raises(ValueError, match="flow='sideways'"):
        tc.knn_graph(x, 2, flow="sideways")


def test_radius_is_strict_and_keeps_the_lowest_indices():
    x = torch.tensor([[0.0], [1.0], [0.5], [-0.5], [0.25], [0.9]])
    y = torch.tensor([[0.0]])
    e = tc.radius(x, y, 1.0)  # x[1] lies exactly on the sphere: out
    assert e[1].tolist() == [0, 2, 3, 4, 5]
    assert tc.radius(x, y, 1.0, max_num_neighbors=2)[1].tolist() == [0, 2]
    assert tc.radius(x, x[:1], 1.0, ignore_same_index=True, max_num_neighbors=2)[1].tolist() == [
        2,
        3,
    ]


def test_radius_graph_no_self_loops_and_max_honoured():
    x = gauss(400, 3, 5)
    b = sorted_batch(400, 3, 6)
    for maxn in (1, 4, 64):
        e = tc.radius_graph(x, 0.6, b, max_num_neighbors=maxn)
        assert (e[0] != e[1]).all() and (b[e[0]] == b[e[1]]).all()
        assert int(torch.bincount(e[1], minlength=400).max()) <= maxn
        d2 = ((x[e[0]] - x[e[1]]) ** 2).sum(-1)
        assert (d2 < 0.36).all()
    full = tc.radius_graph(x, 0.6, b, max_num_neighbors=400)
    want = {
        (j, i)
        for i in range(400)
        for j in range(400)
        if i != j and b[i] == b[j] and float(((x[i] - x[j]) ** 2).sum()) < 0.36
    }
    assert pairs(full) == want
    with_loops = tc.radius_graph(x, 0.6, b, loop=True, max_num_neighbors=400)
    assert pairs(with_loops) == want | {(i, i) for i in range(400)}


def test_unsorted_batch_is_accepted():
    x, y = gauss(300, 4, 7), gauss(90, 4, 8)
    bx = torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(1))
    by = torch.randint(0, 3, (90,), generator=torch.Generator().manual_seed(2))
    e = tc.knn(x, y, 5, bx, by)
    px, py = bx.argsort(stable=True), by.argsort(stable=True)
    es = tc.knn(x[px], y[py], 5, bx[px], by[py])
    assert pairs(e) == {(int(py[a]), int(px[b])) for a, b in es.t().tolist()}
    assert (bx[e[1]] == by[e[0]]).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    x = gauss(200, 3, 9).to(dtype)
    b = sorted_batch(200, 2, 3)
    assert torch.equal(tc.knn(x, x, 6, b, b), tc.knn(x.float(), x.float(), 6, b, b))
    assert torch.equal(tc.radius_graph(x, 0.5, b), tc.radius_graph(x.float(), 0.5, b))
    assert torch.equal(
        tc.fps(x, b, 0.25, random_start=False),
        ops.fps_ragged(x.float(), ratio=float(torch.tensor(0.25, dtype=dtype)), batch=b),
    )


def test_cosine_ranks_by_angle():
    x, y = gauss(60, 5, 10) * 7, gauss(8, 5, 11)
    e = tc.knn(x, y, 4, cosine=True)
    cos = torch.nn.functional.cosine_similarity(y[:, None, :], x[None, :, :], dim=-1)
    want = cos.double().argsort(dim=1, descending=True, stable=True)[:, :4]
    assert torch.equal(e[1].view(8, 4), want)


def test_fps_counts_order_and_starts():
    x = gauss(1000, 3, 12)
    ptr = torch.tensor([0, 10, 300, 1000])
    b = torch.repeat_interleave(torch.arange(3), ptr.diff())
    idx = tc.fps(x, b, 0.7, random_start=False)
    # ceil(n * ratio) per graph in float32 like torch-cluster: 10 * 0.7 -> 7 (float64 gives 8)
    assert idx.numel() == 7 + 203 + 490
    assert idx[0] == 0 and idx[7] == 10 and idx[210] == 300  # each graph starts at its first row
    assert torch.equal(idx, tc.fps(x, ptr=ptr, ratio=0.7, random_start=False))
    assert torch.equal(idx, tc.fps(x, ptr=ptr.tolist(), ratio=0.7, random_start=False))
    torch.manual_seed(0)
    r1 = tc.fps(x, b, 0.5)
    torch.manual_seed(0)
    assert torch.equal(r1, tc.fps(x, b, 0.5))  # random starts come from torch's RNG
    assert bool((b[r1[:5]] == 0).all()) and bool((b[r1[5:150]] == 1).all())
    assert tc.fps(x).numel() == 500  # default ratio 0.5, one graph


def test_nearest_and_unsupported():
    x, y = gauss(50, 3, 13), gauss(20, 3, 14)
    bx, by = sorted_batch(50, 2, 1), torch.tensor([0] * 10 + [1] * 10)
    got = tc.nearest(x, y, bx, by)
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1).masked_fill(bx[:, None] != by[None], float("inf"))
    assert torch.equal(got, d2.argmin(1))
    for name in ("grid_cluster", "graclus_cluster", "random_walk", "neighbor_sampler"):
        with pytest.raises(NotImplementedError, match=f"torch_cluster.{name}"):
            getattr(tc, name)(x)


def test_empty_inputs():
    e = tc.knn(torch.zeros(0, 3), torch.zeros(4, 3), 2)
    assert e.shape == (2, 0) and e.dtype == torch.long
    assert tc.radius_graph(torch.zeros(0, 3), 1.0).shape == (2, 0)


# --- agreement with torch-cluster where the results are defined alike ----------------------------


@pytest.fixture
def real_tc():
    return pytest.importorskip("torch_cluster", reason="the peer torch-cluster is not installed")


def test_agrees_with_torch_cluster_without_ties(real_tc):
    if real_tc is tc:
        pytest.skip("the drop-in is installed")
    x = gauss(2000, 5, 20)
    b = sorted_batch(2000, 5, 21)
    y, by = x[::7].contiguous(), b[::7].contiguous()
    assert torch.equal(tc.knn(x, y, 12, b, by), real_tc.knn(x, y, 12, b, by))
    assert pairs(tc.knn_graph(x, 8, b)) == pairs(real_tc.knn_graph(x, 8, b))
    # radius: same member sets when max_num_neighbors does not bind
    assert pairs(tc.radius(x, y, 1.2, b, by, 2000)) == pairs(real_tc.radius(x, y, 1.2, b, by, 2000))
    for dtype in (torch.float32, torch.float64):
        xd = x.to(dtype)
        assert torch.equal(
            tc.fps(xd, b, 0.3, random_start=False), real_tc.fps(xd, b, 0.3, random_start=False)
        )
    # torch-cluster's CPU nearest rescales the inputs and calls scipy (other rounding): the
    # picks agree except at near-ties, where pointlib's is never farther
    ours, theirs = tc.nearest(x, y, b, by), real_tc.nearest(x, y, b, by)
    assert (ours == theirs).float().mean() > 0.99
    d_ours, d_theirs = ((x - y[ours]) ** 2).sum(-1), ((x - y[theirs]) ** 2).sum(-1)
    assert (d_ours <= d_theirs).all()


# --- install() and torch-geometric layers --------------------------------------------------------


@pytest.fixture
def dropin():
    pyg = pytest.importorskip("torch_geometric", reason="torch-geometric is not installed")
    import torch_geometric.nn  # load the modules install() must patch
    import torch_geometric.nn.conv.edge_conv
    import torch_geometric.nn.conv.gravnet_conv
    import torch_geometric.transforms  # noqa: F401

    tc.install()
    yield pyg
    tc.uninstall()


def test_install_patches_and_uninstall_restores(dropin):
    import torch_geometric.nn.conv.edge_conv as ec
    import torch_geometric.typing as tgt

    assert sys.modules["torch_cluster"] is tc
    assert tgt.torch_cluster is tc and tgt.WITH_TORCH_CLUSTER and tgt.WITH_TORCH_CLUSTER_BATCH_SIZE
    assert ec.knn is tc.knn
    import torch_cluster

    assert torch_cluster is tc
    tc.uninstall()
    assert ec.knn is not tc.knn and sys.modules.get("torch_cluster") is not tc
    tc.install()  # the fixture uninstalls again


def test_pyg_transforms_match_reference(dropin):
    from torch_geometric.data import Data
    from torch_geometric.transforms import KNNGraph, RadiusGraph

    pos = gauss(300, 3, 30)
    e = KNNGraph(k=6)(Data(pos=pos)).edge_index
    idx, _ = ops.knn_ragged(pos, 7, backend="torch")  # self first (distance 0), then 6 others
    assert pairs(e) == {(int(j), i) for i in range(300) for j in idx[i, 1:]}  # [source, target]
    e = KNNGraph(k=6, force_undirected=True)(Data(pos=pos)).edge_index
    want = {(int(j), i) for i in range(300) for j in idx[i, 1:]}
    assert pairs(e) == want | {(i, j) for j, i in want}
    e = RadiusGraph(r=0.4, max_num_neighbors=300)(Data(pos=pos)).edge_index
    members = ops.ball_query_ragged(pos, 0.4, 300, backend="torch")
    want = {(int(j), i) for i in range(300) for j in members[i] if j >= 0 and j != i}
    assert pairs(e) == want


def test_pyg_dynamic_edge_conv_on_16d_features_matches_reference(dropin):
    from torch_geometric.nn import DynamicEdgeConv

    torch.manual_seed(0)
    h = torch.nn.Linear(32, 8)
    conv = DynamicEdgeConv(h, k=5)
    x = gauss(240, 16, 31)
    b = torch.randint(0, 3, (240,), generator=torch.Generator().manual_seed(3)).sort().values
    out = conv(x, b)
    idx, _ = ops.knn_ragged(x, 5, batch_x=b, backend="torch")  # includes the point itself
    xi = x[:, None, :].expand(-1, 5, -1)
    want = h(torch.cat([xi, x[idx] - xi], dim=-1)).amax(dim=1)
    torch.testing.assert_close(out, want)


def test_pyg_gravnet_and_interpolate_kernels_equal_reference(dropin, monkeypatch):
    from torch_geometric.nn import GravNetConv, fps, knn_interpolate

    torch.manual_seed(0)
    conv = GravNetConv(8, 6, space_dimensions=4, propagate_dimensions=5, k=7)
    x = gauss(300, 8, 32)
    b = sorted_batch(300, 3, 4)
    pos, pos_y = gauss(300, 3, 33), gauss(100, 3, 34)
    by = sorted_batch(100, 3, 5)
    out = conv(x, b)
    interp = knn_interpolate(x, pos, pos_y, b, by, k=3)
    sample = fps(pos, b, ratio=0.25, random_start=False)
    monkeypatch.setenv("POINTLIB_BACKEND", "torch")  # the same layers on the reference
    torch.testing.assert_close(conv(x, b), out, rtol=0, atol=0)
    torch.testing.assert_close(knn_interpolate(x, pos, pos_y, b, by, k=3), interp, rtol=0, atol=0)
    assert torch.equal(fps(pos, b, ratio=0.25, random_start=False), sample)
    # knn_interpolate written out: inverse squared distance weights over the 3 nearest
    idx, d2 = ops.knn_ragged(pos, 3, pos_y, batch_x=b, batch_y=by, backend="torch")
    w = 1.0 / d2.clamp(min=1e-16)
    want = (x[idx] * w[..., None]).sum(1) / w.sum(1, keepdim=True)
    torch.testing.assert_close(interp, want)
