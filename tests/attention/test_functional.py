"""The functional core vs naive per-query loops (float64, forward and backward)."""

from __future__ import annotations

import pytest
import torch
from attn_reference import ref_group, ref_linear, ref_offset, ref_softmax

from pointlib.attention import (
    Neighborhood,
    attention,
    channel_attention,
    knn_neighborhood,
    windows,
)

DT = torch.float64


def _qkv(B=2, H=2, Nq=7, Nk=7, D=3, Dv=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, Nq, D, generator=g, dtype=DT, requires_grad=True)
    k = torch.randn(B, H, Nk, D, generator=g, dtype=DT, requires_grad=True)
    v = torch.randn(B, H, Nk, Dv, generator=g, dtype=DT, requires_grad=True)
    return q, k, v


def _grads(out, *ts):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    return torch.autograd.grad((out * w).sum(), ts, allow_unused=True)


def _close_with_grads(a, b, inputs, atol=1e-10):
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-9)
    for ga, gb in zip(_grads(a, *inputs), _grads(b, *inputs)):
        if ga is None and gb is None:
            continue
        torch.testing.assert_close(ga, gb, atol=atol, rtol=1e-9)


def _knn_nbr(B=2, N=7, K=4, valid=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(B, N, 3, generator=g, dtype=DT)
    nbr = knn_neighborhood(pos, K)
    if valid:
        vm = torch.rand(B, N, K, generator=g) > 0.3
        vm[..., 0] = True  # self is always kept
        nbr = Neighborhood(mode="query", index=nbr.index, valid=vm, rel=nbr.rel)
    return nbr


@pytest.mark.parametrize("backend", ["sdpa", "explicit"])
def test_global_with_bias(backend):
    q, k, v = _qkv(Nq=5, Nk=6)
    bias = torch.randn(1, 2, 5, 6, dtype=DT, requires_grad=True)
    out = attention(q, k, v, bias=bias, backend=backend)
    ref = ref_softmax(q, k, v, bias=bias.expand(2, 2, 5, 6))
    _close_with_grads(out, ref, (q, k, v, bias))


@pytest.mark.parametrize("backend", ["sdpa", "explicit"])
@pytest.mark.parametrize("valid", [False, True])
def test_query_mode_knn(backend, valid):
    q, k, v = _qkv()
    nbr = _knn_nbr(valid=valid)
    bias = torch.randn(2, 2, 7, 4, dtype=DT, requires_grad=True)
    out = attention(q, k, v, nbr, bias=bias, backend=backend, chunk=3)
    ref = ref_softmax(q, k, v, nbr, bias=bias)
    _close_with_grads(out, ref, (q, k, v, bias))


@pytest.mark.parametrize("backend", ["sdpa", "explicit"])
def test_query_mode_with_extra_tokens(backend):
    q, k, v = _qkv()
    g = torch.Generator().manual_seed(3)
    ek = torch.randn(2, 2, 3, 3, generator=g, dtype=DT, requires_grad=True)
    ev = torch.randn(2, 2, 3, 4, generator=g, dtype=DT, requires_grad=True)
    nbr = _knn_nbr(valid=True)
    for blast in (4, 7):  # bias on the K local slots only, or on K + M
        bias = torch.randn(2, 2, 7, blast, dtype=DT)
        out = attention(q, k, v, nbr, bias=bias, extra_k=ek, extra_v=ev, backend=backend)
        ref = ref_softmax(q, k, v, nbr, bias=bias, extra_k=ek, extra_v=ev)
        _close_with_grads(out, ref, (q, k, v, ek, ev))


def test_query_k_equals_n_is_global():
    q, k, v = _qkv(Nq=6, Nk=6)
    idx = torch.arange(6).flip(0).expand(1, 6, 6)  # any order of all tokens
    out = attention(q, k, v, Neighborhood(mode="query", index=idx))
    torch.testing.assert_close(out, attention(q, k, v), atol=1e-12, rtol=0)


def test_query_k1_copies_value():
    q, k, v = _qkv()
    idx = torch.randint(0, 7, (2, 7, 1), generator=torch.Generator().manual_seed(0))
    out = attention(q, k, v, Neighborhood(mode="query", index=idx))
    expect = torch.stack([v[b, :, idx[b, :, 0]] for b in range(2)])
    torch.testing.assert_close(out, expect)


def test_invalid_slots_get_exactly_zero_weight():
    q, k, v = _qkv()
    nbr = _knn_nbr(valid=True)
    _, w = attention(q, k, v, nbr, return_attn=True)
    assert w.shape == (2, 2, 7, 4)
    assert (w[~nbr.valid[:, None].expand_as(w)] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 7, dtype=DT))
    # changing a masked key's value/key changes nothing
    idx = nbr.index.clone()
    b, i, p = torch.nonzero(~nbr.valid)[0].tolist()
    idx[b, i, p] = (idx[b, i, p] + 1) % 7
    nbr2 = Neighborhood(mode="query", index=idx, valid=nbr.valid)
    torch.testing.assert_close(attention(q, k, v, nbr), attention(q, k, v, nbr2))


def test_row_without_valid_key_is_zero():
    q, k, v = _qkv()
    nbr = _knn_nbr()
    valid = torch.ones_like(nbr.index, dtype=torch.bool)
    valid[0, 3] = False
    nbr = Neighborhood(mode="query", index=nbr.index, valid=valid)
    for backend in ("sdpa", "explicit"):
        out = attention(q, k, v, nbr, backend=backend)
        assert torch.isfinite(out).all()
        assert (out[0, :, 3] == 0).all()


@pytest.mark.parametrize("backend", ["sdpa", "explicit"])
def test_group_mode_windows(backend):
    q, k, v = _qkv(B=2, H=2, Nq=16, Nk=16)
    nbr = windows(4, 4, 2)  # 4 groups of 4
    bias = torch.randn(1, 2, 4, 4, 4, dtype=DT, requires_grad=True)
    out = attention(q, k, v, nbr, bias=bias, backend=backend, chunk=3)
    ref = ref_group(q, k, v, nbr, bias=bias.expand(2, -1, -1, -1, -1))
    _close_with_grads(out, ref, (q, k, v, bias))


@pytest.mark.parametrize("backend", ["sdpa", "explicit"])
def test_group_mode_halo_and_extras(backend):
    q, k, v = _qkv(B=2, H=2, Nq=16, Nk=16)
    nbr = windows(4, 4, 2, halo=1)
    assert nbr.q_index is not None and nbr.valid is not None
    g = torch.Generator().manual_seed(5)
    ek = torch.randn(2, 2, 2, 3, generator=g, dtype=DT, requires_grad=True)
    ev = torch.randn(2, 2, 2, 4, generator=g, dtype=DT, requires_grad=True)
    bias = torch.randn(2, 2, 4, 4, 18, generator=g, dtype=DT)
    out = attention(q, k, v, nbr, bias=bias, extra_k=ek, extra_v=ev, backend=backend)
    ref = ref_group(q, k, v, nbr, bias=bias, extra_k=ek, extra_v=ev)
    _close_with_grads(out, ref, (q, k, v, ek, ev))


def test_group_mode_overlapping_groups_average_and_uncovered_are_zero():
    q, k, v = _qkv(B=1, H=1, Nq=6, Nk=6)
    idx = torch.tensor([[[0, 1, 2], [2, 3, 4]]])  # token 2 in both groups, token 5 in none
    nbr = Neighborhood(mode="group", index=idx)
    out = attention(q, k, v, nbr)
    ref = ref_group(q, k, v, nbr)
    torch.testing.assert_close(out, ref)
    assert (out[..., 5, :] == 0).all()
    per_group = attention(q, k, v, Neighborhood(mode="group", index=idx, reduce="none"))
    assert per_group.shape == (1, 1, 2, 3, 4)
    torch.testing.assert_close(out[0, 0, 2], (per_group[0, 0, 0, 2] + per_group[0, 0, 1, 0]) / 2)


def test_group_equals_query_mode_with_per_query_lists():
    """Windows in group mode = query mode where each query lists its window's tokens."""
    q, k, v = _qkv(B=1, H=2, Nq=16, Nk=16)
    nbr = windows(4, 4, 2)
    per_query = torch.empty(1, 16, 4, dtype=torch.long)
    for g in range(4):
        for t in nbr.index[0, g]:
            per_query[0, t] = nbr.index[0, g]
    out_q = attention(q, k, v, Neighborhood(mode="query", index=per_query))
    torch.testing.assert_close(attention(q, k, v, nbr), out_q)


def test_gated_positional_two_softmaxes():
    q, k, v = _qkv(Nq=5, Nk=5)
    g = torch.Generator().manual_seed(2)
    pos = torch.randn(1, 2, 5, 5, generator=g, dtype=DT, requires_grad=True)
    gate = torch.sigmoid(torch.randn(2, generator=g, dtype=DT)).requires_grad_()
    for backend in ("sdpa", "explicit"):
        out = attention(q, k, v, pos_logits=pos, pos_gate=gate, backend=backend)
        s = (q @ k.transpose(-1, -2) * 3**-0.5).softmax(-1)
        a = (1 - gate[:, None, None]) * s + gate[:, None, None] * pos.softmax(-1)
        a = a / a.sum(-1, keepdim=True)  # ConViT renormalises; a no-op here
        _close_with_grads(out, a @ v, (q, k, v, pos, gate))
    _, w = attention(q, k, v, pos_logits=pos, pos_gate=gate, return_attn=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 5, dtype=DT))


@pytest.mark.parametrize("norm", ["positive", "injective", "rala"])
def test_linear_global_kv_first_vs_loop(norm):
    q, k, v = _qkv(B=1, H=2, Nq=6, Nk=6)
    fast = attention(q, k, v, kernel="linear", linear_norm=norm)  # kv-first
    slow, w = attention(q, k, v, kernel="linear", linear_norm=norm, return_attn=True)  # qk-first
    ref = ref_linear(q, k, v, norm)
    _close_with_grads(fast, ref, (q, k, v))
    torch.testing.assert_close(slow, ref)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 2, 6, dtype=DT))  # rows sum to 1


def test_linear_query_mode_and_mask():
    q, k, v = _qkv()
    nbr = _knn_nbr(valid=True)
    out, w = attention(q, k, v, nbr, kernel="linear", return_attn=True)
    assert (w[~nbr.valid[:, None].expand_as(w)] == 0).all()
    # per-query loop: positive normalisation over the valid gathered keys
    fq, fk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    for b, h, i in [(0, 0, 0), (1, 1, 5), (0, 1, 3)]:
        js = [int(j) for j, ok in zip(nbr.index[b, i], nbr.valid[b, i]) if ok]
        sims = torch.stack([fq[b, h, i] @ fk[b, h, j] for j in js])
        expect = sum(s / sims.sum() * v[b, h, j] for s, j in zip(sims, js))
        torch.testing.assert_close(out[b, h, i], expect)


def test_linear_rope_only_in_numerator():
    q, k, v = _qkv(B=1, H=1, Nq=5, Nk=5, D=4)
    perm = torch.tensor([1, 0, 3, 2])

    def rope(x):  # any fixed linear map plays the role of RoPE here
        return x[..., perm] * torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=x.dtype)

    fast = attention(q, k, v, kernel="linear", linear_norm="rala", rope=rope)
    slow = attention(q, k, v, kernel="linear", linear_norm="rala", rope=rope, backend="explicit")
    torch.testing.assert_close(fast, slow)


def test_channel_attention_vs_loop():
    q, k, v = _qkv(B=2, H=2, Nq=5, Nk=5, D=3, Dv=3)
    out = channel_attention(q, k, v)
    for b in range(2):
        for h in range(2):
            A = (k[b, h].t() @ v[b, h] * 3**-0.5).softmax(-1)  # (C, C)
            expect = (A @ q[b, h].t()).t()
            torch.testing.assert_close(out[b, h], expect)
    perm = torch.randperm(5, generator=torch.Generator().manual_seed(0))
    out_p = channel_attention(q[:, :, perm], k[:, :, perm], v[:, :, perm])
    torch.testing.assert_close(out_p, out[:, :, perm])


@pytest.mark.parametrize("l1_axis", ["query", "group"])
def test_offset_group_mode_vs_loop(l1_axis):
    q, k, v = _qkv(B=2, H=1, Nq=12, Nk=12, D=3, Dv=3)
    groups = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    nbr = Neighborhood(mode="group", index=torch.tensor([groups]))
    out = attention(q, k, v, nbr, kernel="offset", l1_axis=l1_axis)
    ref = ref_offset(q, k, v, groups, l1_axis)
    _close_with_grads(out, ref, (q, k, v))


def test_offset_global_is_pct():
    q, k, v = _qkv(B=2, H=1, Nq=6, Nk=6, D=3, Dv=3)
    out = attention(q, k, v, kernel="offset")
    torch.testing.assert_close(out, ref_offset(q, k, v, [list(range(6))], "query"))


def test_offset_group_independence_query_axis_and_coupling_group_axis():
    q, k, v = _qkv(B=1, H=1, Nq=12, Nk=12, D=3, Dv=3)
    nbr = Neighborhood(mode="group", index=torch.arange(12).view(1, 3, 4))
    q2, k2, v2 = (t.detach().clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[:, :, 4:] += 1.0  # change groups 1 and 2 only
    for axis, coupled in (("query", False), ("group", True)):
        a = attention(q, k, v, nbr, kernel="offset", l1_axis=axis)[..., :4, :]
        b = attention(q2, k2, v2, nbr, kernel="offset", l1_axis=axis)[..., :4, :]
        diff = (a - b).abs().max().item()
        assert (diff > 1e-3) if coupled else (diff < 1e-12), (axis, diff)


def test_offset_single_group_axis_group_sums_values():
    """RISurConv group_all quirk (spec 9a): with one group, A / (1e-9 + A) ~ 1 -> sum of values."""
    q, k, v = _qkv(B=1, H=1, Nq=5, Nk=5, D=3, Dv=3)
    nbr = Neighborhood(mode="group", index=torch.arange(5).view(1, 1, 5))
    out = attention(q, k, v, nbr, kernel="offset", l1_axis="group")
    torch.testing.assert_close(out, v.sum(2, keepdim=True).expand_as(out), atol=1e-7, rtol=1e-7)


def test_return_attn_shapes():
    q, k, v = _qkv(B=2, H=2, Nq=16, Nk=16)
    assert attention(q, k, v, return_attn=True)[1].shape == (2, 2, 16, 16)
    nbr = windows(4, 4, 2, halo=1)
    out, w = attention(q, k, v, nbr, return_attn=True)
    assert out.shape == (2, 2, 16, 4) and w.shape == (2, 2, 4, 4, 16)
    ek = torch.zeros(2, 2, 3, 3, dtype=DT)
    ev = torch.zeros(2, 2, 3, 4, dtype=DT)
    _, w = attention(q, k, v, _knn_nbr(N=16), extra_k=ek, extra_v=ev, return_attn=True)
    assert w.shape == (2, 2, 16, 7)


def test_errors():
    q, k, v = _qkv()
    idx = torch.zeros(2, 7, 3, dtype=torch.long)
    with pytest.raises(IndexError, match="out of range"):
        attention(q, k, v, Neighborhood(mode="query", index=idx + 7))
    with pytest.raises(IndexError, match="out of range"):
        attention(q, k, v, Neighborhood(mode="query", index=idx - 1))
    with pytest.raises(ValueError, match="rows"):
        attention(q, k, v, Neighborhood(mode="query", index=idx[:, :5]))
    with pytest.raises(ValueError, match="B=2"):
        attention(q, k, v, Neighborhood(mode="query", index=idx.repeat(2, 1, 1)))
    with pytest.raises(ValueError, match="index must be"):
        Neighborhood(mode="query", index=idx[0])
    with pytest.raises(TypeError, match="int64"):
        Neighborhood(mode="query", index=idx.float())
    with pytest.raises(ValueError, match="valid"):
        Neighborhood(mode="query", index=idx, valid=torch.ones(2, 7, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs an index"):
        Neighborhood(mode="query")
    with pytest.raises(ValueError, match="bias last dim"):
        attention(q, k, v, Neighborhood(mode="query", index=idx), bias=torch.zeros(2, 2, 7, 5))
    with pytest.raises(ValueError, match="backend='sdpa'"):
        attention(q, k, v, backend="sdpa", return_attn=True)
    with pytest.raises(ValueError, match="kernel must be"):
        attention(q, k, v, kernel="cosine")
    with pytest.raises(ValueError, match="head-split"):
        attention(q[0], k, v)
    with pytest.raises(ValueError, match="offset"):
        attention(q, k, v, Neighborhood(mode="query", index=idx), kernel="offset")
    with pytest.raises(ValueError, match="linear"):
        attention(q, k, v, kernel="linear", bias=torch.zeros(1))
    with pytest.raises(ValueError, match="Nq == Nk"):
        attention(q, k[:, :, :5], v[:, :, :5], Neighborhood(mode="group", index=idx[:1, :2]))


@pytest.mark.parametrize("backend", ["sdpa", "explicit"])
def test_gated_positional_query_and_group_modes(backend):
    q, k, v = _qkv(B=2, H=2, Nq=16, Nk=16)
    g = torch.Generator().manual_seed(4)
    gate = torch.rand(2, generator=g, dtype=DT)
    nbr = _knn_nbr(N=16)
    pos = torch.randn(2, 2, 16, 4, generator=g, dtype=DT, requires_grad=True)
    out = attention(q, k, v, nbr, pos_logits=pos, pos_gate=gate, backend=backend)
    zq, zk = torch.zeros_like(q), torch.zeros_like(k)
    gg = gate.view(1, 2, 1, 1)
    ref = (1 - gg) * ref_softmax(q, k, v, nbr) + gg * ref_softmax(zq, zk, v, nbr, bias=pos)
    _close_with_grads(out, ref, (q, k, v, pos))
    wnb = windows(4, 4, 2)
    wnb_none = Neighborhood(mode="group", index=wnb.index, reduce="none")
    pos = torch.randn(1, 2, 4, 4, 4, generator=g, dtype=DT)
    per_group = attention(q, k, v, wnb_none, pos_logits=pos, pos_gate=gate, backend=backend)
    assert per_group.shape == (2, 2, 4, 4, 4)
    tok = attention(q, k, v, wnb, pos_logits=pos, pos_gate=gate, backend=backend)
    ref = (1 - gg) * ref_group(q, k, v, wnb) + gg * ref_group(
        zq, zk, v, wnb, bias=pos.expand(2, -1, -1, -1, -1)
    )
    torch.testing.assert_close(tok, ref)
    torch.testing.assert_close(per_group[:, :, 1, 2], tok[:, :, int(wnb.index[0, 1, 2])])


def test_offset_global_group_axis_is_single_group():
    q, k, v = _qkv(B=1, H=1, Nq=5, Nk=5, D=3, Dv=3)
    out = attention(q, k, v, kernel="offset", l1_axis="group")
    torch.testing.assert_close(out, v.sum(2, keepdim=True).expand_as(out), atol=1e-7, rtol=1e-7)
