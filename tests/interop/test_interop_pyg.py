"""pointlib.interop.pyg: lossless Data/Batch round trips and edge_index builders."""

from __future__ import annotations

import pytest
import torch

from pointlib.interop import from_pyg, knn_graph, radius_graph, to_edge_index, to_pyg
from pointlib.testing import make_cloud

pyg = pytest.importorskip("torch_geometric")


def edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(s), int(t)) for s, t in edge_index.t()}


def brute_knn(pos: torch.Tensor, k: int, loop: bool) -> set[tuple[int, int]]:
    """(source=neighbour, target=centre) pairs from a float64 distance table."""
    p = pos.double()
    d = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    if not loop:
        d.fill_diagonal_(float("inf"))
    kk = min(k, len(p) - (0 if loop else 1))
    nb = d.argsort(dim=1, stable=True)[:, :kk]
    return {(int(j), i) for i in range(len(p)) for j in nb[i]}


def brute_radius(pos: torch.Tensor, r: float, loop: bool) -> set[tuple[int, int]]:
    p = pos.double()
    d = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    inside = d < r * r
    return {(j, i) for i, j in inside.nonzero().tolist() if loop or i != j}


@pytest.fixture
def item():
    xyz, normals = make_cloud(1, 40, generator=torch.Generator().manual_seed(0))
    return {"xyz": xyz[0], "normals": normals[0], "label": torch.tensor(5),
            "parts": torch.randint(0, 4, (40,)), "category": torch.tensor(2)}  # fmt: skip


@pytest.fixture
def batch():
    xyz, normals = make_cloud(3, 40, generator=torch.Generator().manual_seed(1))
    return {"xyz": xyz, "normals": normals, "label": torch.tensor([5, 0, 9]),
            "parts": torch.randint(0, 4, (3, 40)), "category": torch.tensor([2, 2, 7]),
            "shape_id": ["a_1", "b_2", "c_3"], "colors": torch.rand(3, 40, 3),
            "global_feat": torch.randn(3, 4)}  # fmt: skip


def test_item_round_trip(item):
    data = to_pyg(item)
    assert isinstance(data, pyg.data.Data) and not isinstance(data, pyg.data.Batch)
    assert torch.equal(data.pos, item["xyz"]) and torch.equal(data.x, item["normals"])
    assert int(data.y) == 5 and data.num_nodes == 40
    back = from_pyg(data)
    assert back.keys() == item.keys()
    for k, v in item.items():
        assert torch.equal(back[k], v) and back[k].dtype == v.dtype, k
    one = from_pyg(data, batched=True)
    assert one["xyz"].shape == (1, 40, 3) and one["label"].shape == (1,)
    assert one["parts"].shape == (1, 40)


def test_batch_round_trip(batch):
    b = to_pyg(batch)
    assert isinstance(b, pyg.data.Batch) and b.num_graphs == 3
    assert b.pos.shape == (120, 3) and b.y.tolist() == [5, 0, 9]
    assert b.colors.shape == (120, 3) and b.global_feat.shape == (3, 4)
    assert torch.equal(b.batch, torch.arange(3).repeat_interleave(40))
    assert torch.equal(b[1].pos, batch["xyz"][1]) and torch.equal(b[2].parts, batch["parts"][2])
    back = from_pyg(b)
    assert back.keys() == batch.keys()
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(back[k], v), k
        else:
            assert list(back[k]) == v
    # a Batch collated by PyG itself (not by to_pyg) converts the same way
    graphs = [pyg.data.Data(pos=batch["xyz"][i], x=batch["normals"][i]) for i in range(3)]
    dense = from_pyg(pyg.data.Batch.from_data_list(graphs))
    assert torch.equal(dense["xyz"], batch["xyz"]) and torch.equal(
        dense["normals"], batch["normals"]
    )


def test_ragged_batch_and_bad_input():
    graphs = [pyg.data.Data(pos=torch.randn(n, 3)) for n in (10, 12)]
    with pytest.raises(ValueError, match=r"ragged batch, cloud sizes \[10, 12\]"):
        from_pyg(pyg.data.Batch.from_data_list(graphs))
    with pytest.raises(ValueError, match="no 'pos'"):
        from_pyg(pyg.data.Data(x=torch.randn(4, 3)))
    with pytest.raises(TypeError, match="Data/Batch"):
        from_pyg({"pos": torch.zeros(3, 3)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'xyz' tensor"):
        to_pyg({"pos": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match=r"\(N, 3\) or \(B, N, 3\)"):
        to_pyg({"xyz": torch.zeros(3, 4)})
    with pytest.raises(ValueError, match="leading batch dimension 2"):
        to_pyg({"xyz": torch.zeros(2, 5, 3), "label": torch.tensor(1)})


def test_to_edge_index_by_hand():
    idx = torch.tensor([[[0, 1], [1, 2]], [[2, -1], [0, 0]]])  # B=2, M=2, K=2
    ei = to_edge_index(idx, num_points=3)
    # neighbours (row 0) offset by b * 3, centres (row 1) by b * 2; -1 dropped
    assert ei.tolist() == [[0, 1, 1, 2, 5, 3, 3], [0, 0, 1, 1, 2, 3, 3]]
    swapped = to_edge_index(idx, num_points=3, flow="target_to_source")
    assert torch.equal(swapped, ei.flip(0))
    assert to_edge_index(torch.tensor([[1], [0]])).tolist() == [[1, 0], [0, 1]]  # (M, K), N = M
    with pytest.raises(ValueError, match="out of range for num_points=2"):
        to_edge_index(idx, num_points=2)
    with pytest.raises(ValueError, match="integer"):
        to_edge_index(idx.float())
    with pytest.raises(ValueError, match="flow"):
        to_edge_index(idx, 3, flow="both")  # type: ignore[arg-type]


@pytest.mark.parametrize("loop", [False, True])
def test_knn_graph_matches_brute_force(loop):
    pos = make_cloud(1, 60, generator=torch.Generator().manual_seed(2))[0][0]
    ei = knn_graph(pos, 6, loop=loop)
    assert ei.dtype == torch.long and ei.shape == (2, 60 * 6)
    assert edge_set(ei) == brute_knn(pos, 6, loop)
    # source_to_target: row 1 is the centre, each centre has exactly k incoming edges
    assert torch.equal(torch.bincount(ei[1], minlength=60), torch.full((60,), 6))
    assert bool((ei[0] == ei[1]).any()) == loop
    # neighbours come nearest-first within each centre's group
    d = (pos[ei[0]] - pos[ei[1]]).norm(dim=1).view(60, 6)
    assert (d[:, 1:] >= d[:, :-1]).all()
    t2s = knn_graph(pos, 6, loop=loop, flow="target_to_source")
    assert torch.equal(t2s, ei.flip(0))


def test_knn_graph_batches():
    xyz = make_cloud(3, 30, generator=torch.Generator().manual_seed(3))[0]
    dense = knn_graph(xyz, 4)
    flat, batch = xyz.reshape(90, 3), torch.arange(3).repeat_interleave(30)
    assert torch.equal(knn_graph(flat, 4, batch), dense)
    expected = set().union(*(
        {(s + 30 * b, t + 30 * b) for s, t in brute_knn(xyz[b], 4, False)} for b in range(3)
    ))  # fmt: skip
    assert edge_set(dense) == expected
    # ragged and unsorted batch vector: edges stay inside each graph, indices are global
    g = torch.Generator().manual_seed(4)
    pos = torch.randn(25, 3, generator=g)
    b = torch.tensor([1] * 10 + [0] * 3 + [2] * 12)[torch.randperm(25, generator=g)]
    ei = knn_graph(pos, 5, b)
    assert (b[ei[0]] == b[ei[1]]).all()
    want = set()
    for gid in range(3):
        nodes = (b == gid).nonzero().flatten()
        want |= {(int(nodes[s]), int(nodes[t])) for s, t in brute_knn(pos[nodes], 5, False)}
    assert edge_set(ei) == want  # the 3-node graph gives each node its 2 others
    assert torch.bincount(ei[1], minlength=25)[b == 0].tolist() == [2, 2, 2]


def test_knn_graph_duplicates_never_self_loop():
    pos = torch.zeros(6, 3)
    pos[3:] = 1.0
    ei = knn_graph(pos, 2)
    assert not (ei[0] == ei[1]).any()
    assert edge_set(ei) == {(j, i) for i in range(6) for j in range(6)
                            if i != j and (i < 3) == (j < 3)}  # fmt: skip


def test_knn_graph_against_pyg():
    try:
        ref = pyg.nn.knn_graph(torch.zeros(4, 3), 2)
    except ImportError as exc:
        pytest.skip(f"PyG's knn_graph needs torch-cluster / pyg-lib: {exc}")
    assert ref.shape[0] == 2
    xyz = make_cloud(2, 50, generator=torch.Generator().manual_seed(5))[0]
    pos, batch = xyz.reshape(100, 3), torch.arange(2).repeat_interleave(50)
    for loop in (False, True):
        for flow in ("source_to_target", "target_to_source"):
            ours = knn_graph(pos, 8, batch, loop=loop, flow=flow)
            theirs = pyg.nn.knn_graph(pos, 8, batch, loop=loop, flow=flow)
            assert edge_set(ours) == edge_set(theirs), (loop, flow)


@pytest.mark.parametrize("loop", [False, True])
def test_radius_graph_matches_brute_force(loop):
    pos = make_cloud(1, 80, generator=torch.Generator().manual_seed(6))[0][0]
    ei = radius_graph(pos, 0.5, loop=loop, max_num_neighbors=80)
    assert edge_set(ei) == brute_radius(pos, 0.5, loop)
    assert ei.shape[1] == len(edge_set(ei))  # no duplicate edges
    assert bool((ei[0] == ei[1]).any()) == loop


def test_radius_graph_strict_boundary_and_truncation():
    line = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1.5, 0, 0], [3, 0, 0]])
    # |p1 - p0| == r exactly: strict '<' keeps them apart
    assert edge_set(radius_graph(line, 1.0)) == {(2, 1), (1, 2)}
    cluster = torch.randn(20, 3, generator=torch.Generator().manual_seed(7)) * 0.01
    ei = radius_graph(cluster, 1.0, max_num_neighbors=3)
    assert torch.equal(torch.bincount(ei[1], minlength=20), torch.full((20,), 3))
    # the lowest-index members are kept
    assert edge_set(ei) == {(j, i) for i in range(20) for j in [x for x in range(4) if x != i][:3]}
    with_loop = radius_graph(cluster, 1.0, loop=True, max_num_neighbors=3)
    assert torch.equal(torch.bincount(with_loop[1], minlength=20), torch.full((20,), 3))
    assert {(i, i) for i in range(20)} <= edge_set(with_loop)
    with pytest.raises(ValueError, match="max_num_neighbors"):
        radius_graph(cluster, 1.0, max_num_neighbors=0)


def test_radius_graph_batches_and_pyg():
    xyz = make_cloud(2, 50, generator=torch.Generator().manual_seed(8))[0]
    pos, batch = xyz.reshape(100, 3), torch.arange(2).repeat_interleave(50)
    dense = radius_graph(xyz, 0.6, max_num_neighbors=64)
    assert torch.equal(radius_graph(pos, 0.6, batch, max_num_neighbors=64), dense)
    expected = set().union(*(
        {(s + 50 * b, t + 50 * b) for s, t in brute_radius(xyz[b], 0.6, False)} for b in range(2)
    ))  # fmt: skip
    assert edge_set(dense) == expected
    ragged = radius_graph(pos[:70], 0.6, batch[:70], max_num_neighbors=64)
    assert (batch[ragged[0]] == batch[ragged[1]]).all()
    try:
        theirs = pyg.nn.radius_graph(pos, 0.6, batch, max_num_neighbors=64)
    except ImportError as exc:
        pytest.skip(f"PyG's radius_graph needs torch-cluster / pyg-lib: {exc}")
    assert edge_set(dense) == edge_set(theirs)


def test_graph_input_errors():
    with pytest.raises(ValueError, match="positive integer"):
        knn_graph(torch.zeros(5, 3), 0)
    with pytest.raises(ValueError, match="either dense pos"):
        knn_graph(torch.zeros(2, 5, 3), 2, batch=torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"batch must be an integer vector of shape \(5,\)"):
        knn_graph(torch.zeros(5, 3), 2, batch=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"pos must be \(N, 3\)"):
        radius_graph(torch.zeros(5, 2), 0.1)
    assert knn_graph(torch.zeros(1, 3), 3).shape == (2, 0)  # a lone node has no neighbours


def test_example_runs(capsys):
    import importlib.util

    from pointlib.testing import REPO_ROOT

    path = REPO_ROOT / "examples" / "pyg_interop.py"
    spec = importlib.util.spec_from_file_location("pyg_interop_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    out = capsys.readouterr().out
    assert "round trip lossless: True" in out and "crossing: False" in out
