"""Index builders vs independent loops / unfold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from attn_reference import natten_window_start

from pointlib.attention import Neighborhood, grid, knn_neighborhood, route, windows


@pytest.mark.parametrize(
    ("h", "w", "kernel", "dilation"),
    [
        (5, 5, 3, 1),
        (7, 6, 5, 1),
        (9, 8, 3, 2),
        (10, 11, 3, 3),
        (7, 7, 7, 1),
        (8, 9, (3, 5), (2, 1)),
    ],
)
def test_grid_matches_natten_per_pixel_loop(h, w, kernel, dilation):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    nbr = grid(h, w, kernel, dilation)
    assert nbr.mode == "query" and nbr.index.shape == (1, h * w, kh * kw)
    assert nbr.num_slots == (2 * kh - 1) * (2 * kw - 1)
    for y in range(h):
        sy = natten_window_start(y, h, kh, dh)
        for x in range(w):
            sx = natten_window_start(x, w, kw, dw)
            expect, rel, slot = [], [], []
            for a in range(kh):
                for b in range(kw):
                    ky, kx = sy + a * dh, sx + b * dw
                    assert 0 <= ky < h and 0 <= kx < w
                    expect.append(ky * w + kx)
                    rel.append((ky - y, kx - x))
                    slot.append(((ky - y) // dh + kh - 1) * (2 * kw - 1) + (kx - x) // dw + kw - 1)
            i = y * w + x
            assert nbr.index[0, i].tolist() == expect, (y, x)
            assert nbr.rel[0, i].tolist() == [list(map(float, r)) for r in rel]
            assert nbr.slot[0, i].tolist() == slot
    # every pixel has k*k distinct keys and contains itself
    idx = nbr.index[0]
    assert all(len(set(r.tolist())) == kh * kw for r in idx)
    assert (idx == torch.arange(h * w)[:, None]).any(-1).all()


def test_grid_errors():
    with pytest.raises(ValueError, match="odd"):
        grid(8, 8, 4)
    with pytest.raises(ValueError, match="larger than the height"):
        grid(4, 8, 5)
    with pytest.raises(ValueError, match="larger than the width"):
        grid(9, 8, 3, dilation=3)
    with pytest.raises(ValueError, match="dilation"):
        grid(8, 8, 3, dilation=0)


def _unfold_ids(h, w, size, halo):
    ids = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    cols = F.unfold(ids + 1, size + 2 * halo, padding=halo, stride=size)  # 0 marks padding
    return cols[0].t().long() - 1  # (G, (size+2halo)^2), -1 outside


@pytest.mark.parametrize(
    ("h", "w", "size", "halo"), [(4, 6, 2, 0), (6, 6, 3, 0), (4, 6, 2, 1), (8, 8, 4, 2)]
)
def test_windows_and_halo_match_unfold(h, w, size, halo):
    nbr = windows(h, w, size, halo=halo)
    assert nbr.mode == "group"
    ref = _unfold_ids(h, w, size, halo)
    inside = ref >= 0
    if halo == 0:
        assert nbr.valid is None and nbr.q_index is None
        assert torch.equal(nbr.index[0], ref)
    else:
        assert torch.equal(nbr.valid[0], inside)
        assert torch.equal(nbr.index[0][inside], ref[inside])
        assert torch.equal(nbr.q_index[0], _unfold_ids(h, w, size, 0))
        zero = windows(h, w, size, halo=halo, border="zero")
        assert zero.valid is None
        assert torch.equal(zero.index[0], torch.where(inside, ref, torch.full_like(ref, h * w)))
    # rel = key - query coordinates, slot ids unique per offset
    qidx = nbr.q_index if nbr.q_index is not None else nbr.index
    qy, qx = qidx[0] // w, qidx[0] % w
    ky, kx = nbr.index[0] // w, nbr.index[0] % w
    m = nbr.valid[0][:, None, :] if nbr.valid is not None else torch.ones(1, dtype=torch.bool)
    dy, dx = (ky[:, None, :] - qy[:, :, None]), (kx[:, None, :] - qx[:, :, None])
    rel = nbr.rel[0].long()
    assert torch.equal((rel[..., 0] == dy) | ~m, torch.ones_like(dy, dtype=torch.bool))
    assert torch.equal((rel[..., 1] == dx) | ~m, torch.ones_like(dx, dtype=torch.bool))
    r = size - 1 + halo
    assert torch.equal(nbr.slot[0], (rel[..., 0] + r) * (2 * r + 1) + rel[..., 1] + r)
    assert nbr.num_slots == (2 * r + 1) ** 2


def test_windows_errors():
    with pytest.raises(ValueError, match="not divisible"):
        windows(6, 8, 4)
    with pytest.raises(ValueError, match="halo"):
        windows(8, 8, 4, halo=-1)
    with pytest.raises(ValueError, match="border"):
        windows(8, 8, 4, halo=1, border="reflect")


def test_knn_neighborhood_matches_cdist_argsort():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(2, 20, 3, generator=g, dtype=torch.float64)
    qp = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    for query in (None, qp):
        nbr = knn_neighborhood(pos, 6, query)
        qq = pos if query is None else query
        ref = torch.cdist(qq, pos).argsort(-1)[..., :6]
        assert torch.equal(nbr.index, ref)
        expect = torch.stack([pos[b][ref[b]] - qq[b][:, None] for b in range(2)])
        torch.testing.assert_close(nbr.rel, expect)
    with pytest.raises(ValueError, match="k must be"):
        knn_neighborhood(pos, 21)
    with pytest.raises(ValueError, match="k must be"):
        knn_neighborhood(pos, 0)


def test_route_matches_loop():
    g = torch.Generator().manual_seed(0)
    B, h, w, C = 2, 4, 4, 6
    q = torch.randn(B, h * w, C, generator=g, dtype=torch.float64)
    k = torch.randn(B, h * w, C, generator=g, dtype=torch.float64)
    regions = windows(h, w, 2)
    nbr = route(q, k, regions, topk=2)
    assert nbr.index.shape == (B, 4, 8) and nbr.q_index.shape == (B, 4, 4)
    reg = regions.index[0]
    for b in range(B):
        qm = torch.stack([q[b, r].mean(0) for r in reg])
        km = torch.stack([k[b, r].mean(0) for r in reg])
        for gi in range(4):
            scores = [float(qm[gi] @ km[j]) for j in range(4)]
            top = sorted(range(4), key=lambda j: -scores[j])[:2]
            assert nbr.index[b, gi].tolist() == reg[top].reshape(-1).tolist()
            assert nbr.q_index[b, gi].tolist() == reg[gi].tolist()
    with pytest.raises(ValueError, match="topk"):
        route(q, k, regions, topk=5)
    with pytest.raises(ValueError, match="group-mode"):
        route(q, k, grid(4, 4, 3), topk=1)


def test_neighborhood_validation():
    with pytest.raises(ValueError, match="mode"):
        Neighborhood(mode="local")
    with pytest.raises(ValueError, match="global"):
        Neighborhood(mode="global", index=torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="q_index"):
        Neighborhood(
            mode="group",
            index=torch.zeros(1, 2, 2, dtype=torch.long),
            q_index=torch.zeros(1, 3, 2, dtype=torch.long),
        )
    nbr = grid(5, 5, 3).to("cpu")
    assert nbr.k == 9


def test_ball_neighborhood_padding_is_invalid_and_gets_zero_weight():
    from pointlib.attention import attention, ball_neighborhood

    pos = torch.tensor([[[0.0, 0, 0], [0.5, 0, 0], [3, 0, 0], [3.2, 0, 0], [9, 0, 0]]])
    nbr = ball_neighborhood(pos, 1.0, 6)  # k > N
    assert nbr.index.shape == (1, 5, 6)
    assert nbr.valid.sum(-1).tolist() == [[2, 2, 2, 2, 1]]
    for i, members in enumerate([[0, 1], [0, 1], [2, 3], [2, 3], [4]]):
        assert nbr.index[0, i][nbr.valid[0, i]].tolist() == members
    # empty ball for an off-cloud query: the nearest-point fill is invalid too
    far = ball_neighborhood(pos, 0.1, 3, torch.tensor([[[6.0, 0, 0]]]))
    assert not far.valid.any()
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    out, w = attention(q, k, v, nbr, return_attn=True)
    assert (w[~nbr.valid[:, None].expand_as(w)] == 0).all()
    torch.testing.assert_close(out[0, :, 4], v[0, :, 4])  # only itself in its ball


def test_to_edge_index_matches_pyg_scatter_softmax_reference():
    """Edge lists carry the same neighbourhood: a scatter-softmax over edges equals the core."""
    from pointlib.attention import attention

    g = torch.Generator().manual_seed(0)
    B, H, N, D = 2, 1, 16, 3
    q, k, v = (torch.randn(B, H, N, D, generator=g, dtype=torch.float64) for _ in range(3))
    for nbr in (grid(4, 4, 3), windows(4, 4, 2, halo=1)):
        ei = nbr.to_edge_index(B, N)
        qf, kf, vf = (t[:, 0].reshape(B * N, D) for t in (q, k, v))
        logit = (qf[ei[1]] * kf[ei[0]]).sum(-1) * D**-0.5
        w = torch.exp(logit - logit.max())
        den = torch.zeros(B * N, dtype=w.dtype).index_add(0, ei[1], w)
        out = torch.zeros(B * N, D, dtype=w.dtype).index_add(
            0, ei[1], (w / den[ei[1]])[:, None] * vf[ei[0]]
        )
        if nbr.mode == "group":  # each token is the query of exactly one block
            assert torch.bincount(ei[1]).min() > 0
        torch.testing.assert_close(out.view(B, 1, N, D), attention(q, k, v, nbr))
    with pytest.raises(ValueError, match="query- or group-mode"):
        Neighborhood().to_edge_index(1, 4)
