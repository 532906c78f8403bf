"""Positional terms: values vs direct loops, and their use as biases in the core."""

from __future__ import annotations

import pytest
import torch
from attn_reference import ref_group

from pointlib.attention import (
    ContentRelPos,
    GatedPositional,
    RelPosMLP,
    RelPosTable,
    attention,
    grid,
    knn_neighborhood,
    windows,
)

DT = torch.float64


def test_rel_pos_table_is_the_nat_rpb_lookup():
    nbr = grid(6, 6, 3, dilation=2)
    tab = RelPosTable(nbr.num_slots, heads=2).double()
    bias = tab(nbr)
    assert bias.shape == (1, 2, 36, 9)
    rpb = tab.table.view(2, 5, 5)  # NAT layout: (heads, 2k-1, 2k-1)
    for i in (0, 7, 35):
        for p in range(9):
            dy, dx = (int(t) for t in nbr.rel[0, i, p])
            torch.testing.assert_close(bias[0, :, i, p], rpb[:, dy // 2 + 2, dx // 2 + 2])
    with pytest.raises(IndexError, match="table size"):
        RelPosTable(4, 2)(nbr)
    with pytest.raises(ValueError, match="slot"):
        tab(knn_neighborhood(torch.randn(1, 5, 3), 2))


@pytest.mark.parametrize("encode", ["raw", "log", "sincos"])
def test_rel_pos_mlp_shapes_and_values(encode):
    pos = torch.randn(2, 9, 3, dtype=DT)
    nbr = knn_neighborhood(pos, 4)
    mlp = RelPosMLP(3, heads=3, hidden=8, encode=encode).double()
    bias = mlp(nbr)
    assert bias.shape == (2, 3, 9, 4)
    r = nbr.rel[1, 5, 2]
    if encode == "log":
        r = torch.sign(r) * torch.log2(1 + r.abs())
    elif encode == "sincos":
        a = r[:, None] * mlp.freqs.double()
        r = torch.cat([a.sin(), a.cos()], -1).flatten()
    torch.testing.assert_close(bias[1, :, 5, 2], mlp.mlp(r))
    with pytest.raises(ValueError, match="in_dim"):
        RelPosMLP(2, 3)(nbr)


def test_content_rel_pos_table_halo_vs_loop():
    h = w = 4
    nbr = windows(h, w, 2, halo=1)
    L = 2 * (2 + 1) - 1
    crp = ContentRelPos(3, tables=(L, L)).double()
    q = torch.randn(2, 2, h * w, 3, dtype=DT)
    bias = crp(q, nbr)
    assert bias.shape == (2, 2, 4, 4, 16)
    ty, tx = crp.tables
    for b, hh, g, a, p in [(0, 0, 0, 0, 0), (1, 1, 3, 2, 9), (0, 1, 2, 3, 15)]:
        i = int(nbr.q_index[0, g, a])
        dy, dx = (int(t) for t in nbr.rel[0, g, a, p])
        expect = q[b, hh, i] @ ty[dy + 2] + q[b, hh, i] @ tx[dx + 2]
        torch.testing.assert_close(bias[b, hh, g, a, p], expect)
    # as a bias inside group attention, vs the loop reference
    k, v = torch.randn(2, 2, 16, 3, dtype=DT), torch.randn(2, 2, 16, 4, dtype=DT)
    torch.testing.assert_close(
        attention(q, k, v, nbr, bias=bias), ref_group(q, k, v, nbr, bias=bias)
    )


def test_content_rel_pos_linear_points():
    pos = torch.randn(2, 8, 3, dtype=DT)
    nbr = knn_neighborhood(pos, 3)
    crp = ContentRelPos(4, in_dim=3).double()
    q = torch.randn(2, 2, 8, 4, dtype=DT)
    bias = crp(q, nbr)
    assert bias.shape == (2, 2, 8, 3)
    torch.testing.assert_close(bias[1, 0, 4, 2], q[1, 0, 4] @ crp.proj(nbr.rel[1, 4, 2]))
    with pytest.raises(ValueError, match="exactly one"):
        ContentRelPos(4)


def test_gated_positional_local_init_peaks_at_offsets():
    h = w = 5
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()], -1).double()
    d = coords[None, :] - coords[:, None]  # key - query
    rel = torch.cat([d, (d**2).sum(-1, keepdim=True)], -1)[None]  # (1, N, N, 3)
    gp = GatedPositional(3, heads=4).double()
    offsets = torch.tensor([[-1.0, 0], [1, 0], [0, -1], [0, 1]], dtype=DT)
    gp.local_init_(offsets, locality_strength=2.0)
    logits, gate = gp(rel)
    assert logits.shape == (1, 4, 25, 25) and gate.shape == (4,)
    centre = 12
    best = logits[0, :, centre].argmax(-1)
    expect = [(2 + int(o[0])) * 5 + 2 + int(o[1]) for o in offsets]
    assert best.tolist() == expect
    torch.testing.assert_close(gate, torch.sigmoid(torch.ones(4, dtype=DT)))
