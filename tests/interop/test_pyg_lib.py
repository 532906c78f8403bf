"""The ``torch.ops.pyg`` shim for torch-geometric >= 2.8 (``pointlib.interop.pyg_lib``).

The four operators are called exactly as torch-geometric 2.8 calls them (its ``nn.pool``
functions turn a batch vector into ``ptr`` offsets, ``None`` for one graph) and compared with
pointlib's reference ragged ops. When the installed torch-geometric is >= 2.8 its own functions
and layers are also run through the shim.
"""

from __future__ import annotations

import pytest
import torch

import pointlib.ops as ops

pl = pytest.importorskip("pointlib.interop.pyg_lib")
pyg = pytest.importorskip("torch_geometric", reason="torch-geometric is not installed")


def gauss(n: int, d: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)


def ptr_of(batch: torch.Tensor, size: int) -> torch.Tensor:
    """What torch-geometric 2.8's ``_batch_to_ptr`` passes: offsets of a sorted batch vector."""
    return torch.cat(
        [torch.zeros(1, dtype=torch.long), torch.bincount(batch, minlength=size).cumsum(0)]
    )


def edges(idx: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(idx.shape[0])[:, None].expand_as(idx)
    keep = idx >= 0
    return torch.stack([rows[keep], idx[keep]])


@pytest.fixture
def shim():
    pl.install()
    yield torch.ops.pyg
    pl.uninstall()


def test_install_sets_and_uninstall_restores_the_flags(shim):
    import torch_geometric.typing as tgt

    assert pl.installed() and all(getattr(tgt, f) is True for f in pl.OPS.values())
    pl.uninstall()
    assert not pl.installed()
    assert not any(getattr(tgt, f, False) is True for f in pl.OPS.values())
    with pytest.raises(RuntimeError, match="uninstalled"):
        torch.ops.pyg.knn(gauss(5, 3, 0), gauss(2, 3, 1), None, None, 2, False, 1)
    pl.install()  # the fixture uninstalls again


@pytest.mark.parametrize("d", [3, 16])
def test_knn_operator_equals_reference(shim, d):
    x, y = gauss(200, d, 1), gauss(70, d, 2)
    bx = torch.randint(0, 3, (200,), generator=torch.Generator().manual_seed(1)).sort().values
    by = torch.randint(0, 3, (70,), generator=torch.Generator().manual_seed(2)).sort().values
    got = shim.knn(x, y, ptr_of(bx, 3), ptr_of(by, 3), 6, False, 1)
    idx, _ = ops.knn_ragged(x, 6, y, batch_x=bx, batch_y=by, backend="torch")
    assert torch.equal(got, edges(idx))  # [y row, x row], per query ascending
    one = shim.knn(x, y, None, None, 4, False, 1)  # ptr None: one graph
    assert torch.equal(one, edges(ops.knn_ragged(x, 4, y, backend="torch")[0]))


def test_knn_cosine_and_half(shim):
    x = gauss(60, 8, 3)
    got = shim.knn(x, x, None, None, 3, True, 1)
    xn = x / x.norm(dim=-1, keepdim=True)
    assert torch.equal(got, edges(ops.knn_ragged(xn, 3, backend="torch")[0]))
    h = x.half()
    assert torch.equal(shim.knn(h, h, None, None, 3, False, 1),
                       edges(ops.knn_ragged(h.float(), 3, backend="torch")[0]))  # fmt: skip


def test_radius_operator_strict_max_and_self(shim):
    x = gauss(150, 3, 4)
    b = torch.randint(0, 2, (150,), generator=torch.Generator().manual_seed(4)).sort().values
    p = ptr_of(b, 2)
    got = shim.radius(x, x, p, p, 0.5, 5, 1, True)
    members = ops.ball_query_ragged(x, 0.5, 150, batch_x=b, backend="torch")
    want = set()
    for i in range(150):
        others = [int(j) for j in members[i] if j >= 0 and j != i][:5]  # lowest rows first
        want |= {(i, j) for j in others}
    assert set(map(tuple, got.t().tolist())) == want
    with_self = shim.radius(x, x, p, p, 0.5, 5, 1, False)
    assert all(((with_self[0] == i) & (with_self[1] == i)).any() for i in range(150))


def test_fps_and_nearest_operators(shim):
    x = gauss(120, 5, 5)
    b = torch.arange(120) // 40
    idx = shim.fps(x, ptr_of(b, 3), 0.25, False)
    want = ops.fps_ragged(x, ratio=0.25, batch=b, backend="torch")
    assert torch.equal(idx, want) and idx.numel() == 30
    assert torch.equal(idx[:1], torch.tensor([0]))  # random_start=False: each graph's first row
    y = gauss(9, 5, 6)
    by = torch.arange(9) // 3
    near = shim.nearest(x, y, ptr_of(b, 3), ptr_of(by, 3))
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1).masked_fill(b[:, None] != by[None], float("inf"))
    assert torch.equal(near, d2.argmin(1))


def test_bad_ptr_is_named(shim):
    x = gauss(10, 3, 7)
    with pytest.raises(ValueError, match="ptr must be 1-D offsets from 0 to 10"):
        shim.knn(x, x, torch.tensor([0, 4, 9]), torch.tensor([0, 4, 10]), 2, False, 1)
    with pytest.raises(ValueError, match="non-decreasing"):
        shim.fps(x, torch.tensor([0, 6, 4, 10]), 0.5, False)


def test_refuses_to_shadow_a_real_pyg_lib(monkeypatch):
    monkeypatch.setattr(pl, "_state", {"registered": False, "active": False, "saved": {}})
    monkeypatch.setattr(pl, "_defined", lambda name: name == "knn")
    with pytest.raises(RuntimeError, match=r"already defines \['knn'\].*force=True"):
        pl.install()


PYG28 = tuple(int(v) for v in pyg.__version__.split(".")[:2]) >= (2, 8)


@pytest.mark.skipif(not PYG28, reason="torch-geometric < 2.8 calls torch_cluster, not pyg-lib")
def test_torch_geometric_28_layers_through_the_shim(shim):
    from torch_geometric.nn import DynamicEdgeConv, XConv, fps, knn_graph, knn_interpolate

    x, b = gauss(120, 3, 8), torch.arange(120) // 40
    e = knn_graph(x, 5, b)
    idx, _ = ops.knn_ragged(x, 6, batch_x=b, backend="torch")
    assert set(map(tuple, e.t().tolist())) == {(int(j), i) for i in range(120) for j in idx[i, 1:]}
    assert torch.equal(fps(x, b, 0.25, random_start=False),
                       ops.fps_ragged(x, ratio=0.25, batch=b, backend="torch"))  # fmt: skip
    torch.manual_seed(0)
    h = torch.nn.Linear(32, 8)
    f = gauss(120, 16, 9)
    out = DynamicEdgeConv(h, k=5)(f, b)
    nb, _ = ops.knn_ragged(f, 5, batch_x=b, backend="torch")
    fi = f[:, None, :].expand(-1, 5, -1)
    torch.testing.assert_close(out, h(torch.cat([fi, f[nb] - fi], -1)).amax(1))
    assert XConv(0, 8, dim=3, kernel_size=8, hidden_channels=4)(None, x, b).shape == (120, 8)
    assert knn_interpolate(f, x, x[:9], b, b[:9], k=3).shape == (9, 16)


@pytest.mark.skipif(not PYG28, reason="ProteinMPNN ships with torch-geometric >= 2.8")
def test_torch_geometric_28_protein_mpnn_through_the_shim(shim):
    from torch_geometric.llm.models.protein_mpnn import ProteinMPNN

    torch.manual_seed(0)
    n = 40
    x, b = gauss(n * 4, 3, 10).view(n, 4, 3) * 3, torch.arange(n) // 20
    m = ProteinMPNN(hidden_dim=16, num_encoder_layers=1, num_decoder_layers=1, num_neighbors=8)
    out = m.eval()(
        x, torch.arange(n) % 21, torch.ones(n), torch.ones(n), torch.arange(n) % 20, b, b
    )
    assert out.shape == (n, 21) and torch.isfinite(out).all()
