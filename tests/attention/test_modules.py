"""Modules: NeighborhoodAttention / ChannelAttention behaviour and invariances."""

from __future__ import annotations

import pytest
import torch

from pointlib.attention import (
    ChannelAttention,
    ContentRelPos,
    GatedPositional,
    Neighborhood,
    NeighborhoodAttention,
    RelPosMLP,
    RelPosTable,
    attention,
    grid,
    knn_neighborhood,
    windows,
)

DT = torch.float64


def _perm_nbr(nbr: Neighborhood, perm: torch.Tensor) -> Neighborhood:
    """The neighbourhood of the permuted cloud (``x'[i] = x[perm[i]]``)."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    return Neighborhood(mode="query", index=inv[nbr.index[:, perm]], rel=nbr.rel[:, perm])


def test_point_attention_permutation_equivariant_and_batch_independent():
    torch.manual_seed(0)
    pos, x = torch.randn(2, 12, 3, dtype=DT), torch.randn(2, 12, 16, dtype=DT)
    m = NeighborhoodAttention(16, 2, bias=RelPosMLP(3, 2, 8)).double().eval()
    nbr = knn_neighborhood(pos, 5)
    out = m(x, nbr)
    perm = torch.randperm(12)
    out_p = m(x[:, perm], knn_neighborhood(pos[:, perm], 5))
    torch.testing.assert_close(out_p, out[:, perm])
    # sample 0 does not depend on sample 1
    x2, pos2 = x.clone(), pos.clone()
    x2[1], pos2[1] = torch.randn(12, 16, dtype=DT), torch.randn(12, 3, dtype=DT)
    out2 = m(x2, knn_neighborhood(pos2, 5))
    torch.testing.assert_close(out2[0], out[0])
    assert not torch.allclose(out2[1], out[1])


def test_module_equals_functional_and_backends_agree():
    torch.manual_seed(1)
    x = torch.randn(2, 20, 12, dtype=DT)
    nbr = grid(4, 5, 3)
    m = NeighborhoodAttention(12, 3, bias=RelPosTable(nbr.num_slots, 3)).double()
    q, k, v = m.qkv(x).view(2, 20, 3, 3, 4).permute(2, 0, 3, 1, 4)
    expect = attention(q, k, v, nbr, bias=m.bias(nbr)).transpose(1, 2).reshape(2, 20, 12)
    torch.testing.assert_close(m(x, nbr), m.proj(expect))
    m.backend = "explicit"
    out_e, w = m(x, nbr, return_attn=True)
    torch.testing.assert_close(out_e, m.proj(expect))
    assert w.shape == (2, 3, 20, 9)


def test_module_modes_run_and_every_parameter_gets_a_gradient():
    torch.manual_seed(2)
    x = torch.randn(2, 16, 8)
    cases = [
        (NeighborhoodAttention(8, 2), None, {}),
        (
            NeighborhoodAttention(8, 2, bias=ContentRelPos(4, tables=(5, 5))),
            windows(4, 4, 2, 1),
            {},
        ),
        (NeighborhoodAttention(8, 2, qk_norm="l2", scale=5.0), windows(4, 4, 2), {}),
        (NeighborhoodAttention(8, 2, qk_norm="layernorm", out_gate=True), grid(4, 4, 3), {}),
        (NeighborhoodAttention(8, 2, kernel="linear", linear_norm="injective"), None, {}),
        (NeighborhoodAttention(8, 2, kernel="linear", linear_norm="rala"), None, {}),
        (NeighborhoodAttention(8, 2, kv_dim=6), None, {"kv": torch.randn(2, 5, 6)}),
        (NeighborhoodAttention(8, 2), grid(4, 4, 3), {"extra": torch.randn(2, 3, 8)}),
        (NeighborhoodAttention(8, 2), None, {"kv": torch.randn(2, 5, 8)}),
    ]
    for m, nbr, kw in cases:
        out = m(x, nbr, **kw)
        assert out.shape == (2, 16, 8)
        out.square().mean().backward()
        missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
        assert not missing, (m, missing)


def test_gpsa_module():
    torch.manual_seed(3)
    ys, xs = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
    c = torch.stack([xs.flatten(), ys.flatten()], -1).float()
    d = c[None] - c[:, None]
    rel = torch.cat([d, (d**2).sum(-1, keepdim=True)], -1)[None]
    nbr = Neighborhood(mode="global", rel=rel)
    m = NeighborhoodAttention(8, 2, gate_pos=GatedPositional(3, 2))
    x = torch.randn(2, 9, 8)
    out = m(x, nbr)
    out.sum().backward()
    assert m.gate_pos.gating_param.grad is not None
    assert m.gate_pos.pos_proj.weight.grad.abs().sum() > 0


def test_channel_attention_module_vs_loop():
    torch.manual_seed(4)
    m = ChannelAttention(8, heads=2).double()
    x = torch.randn(2, 5, 8, dtype=DT)
    out = m(x)
    q, k, v = m.qkv(x).view(2, 5, 3, 2, 4).unbind(2)  # (B, N, G, Cg)
    expect = torch.empty(2, 5, 2, 4, dtype=DT)
    for b in range(2):
        for g in range(2):
            a = (k[b, :, g].t() @ v[b, :, g] * 0.5).softmax(-1)
            expect[b, :, g] = (a @ q[b, :, g].t()).t()
    torch.testing.assert_close(out, m.proj(expect.reshape(2, 5, 8)))


def test_module_errors():
    with pytest.raises(ValueError, match="divisible"):
        NeighborhoodAttention(10, 3)
    with pytest.raises(ValueError, match="qk_norm"):
        NeighborhoodAttention(8, 2, qk_norm="rms")
    m = NeighborhoodAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        m(torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="reduce"):
        m(
            torch.randn(1, 16, 8),
            Neighborhood(mode="group", index=windows(4, 4, 2).index, reduce="none"),
        )


def test_rotation_invariant_with_invariant_rel_and_negative_control():
    """With rotation-invariant inputs and rel = |Δ| the attention is invariant; Δxyz is not."""
    from pointlib.geometry import apply_rotation, random_rotation

    torch.manual_seed(5)
    pos = torch.randn(2, 16, 3, dtype=DT)
    x = torch.randn(2, 16, 8, dtype=DT)  # features attached to points (rotation-free)
    rot = random_rotation(2, generator=torch.Generator().manual_seed(0), dtype=DT)
    pos_r = apply_rotation(rot, pos)[0]

    def run(m, p, invariant):
        nbr = knn_neighborhood(p, 6)
        rel = nbr.rel.norm(dim=-1, keepdim=True) if invariant else nbr.rel
        return m(x, Neighborhood(mode="query", index=nbr.index, rel=rel))

    m_inv = NeighborhoodAttention(8, 2, bias=RelPosMLP(1, 2, 8)).double()
    torch.testing.assert_close(run(m_inv, pos_r, True), run(m_inv, pos, True))
    m_raw = NeighborhoodAttention(8, 2, bias=RelPosMLP(3, 2, 8)).double()
    assert (run(m_raw, pos_r, False) - run(m_raw, pos, False)).abs().max() > 1e-4
