"""Fused blocks (issue 11) against the unfused module chains they replace.

``linear_bn_act`` (Linear -> BN -> ReLU [-> max over K]), the analytic ``RISPEmbedding`` and the
offset-attention kernel must give the unfused values, gradients and BatchNorm running statistics
(float64, to rounding), also when their passes run in several blocks.
"""

from __future__ import annotations

import copy

import pytest
import torch

import pointlib.attention.offset as offset_mod
import pointlib.nn.blocks as blocks
from pointlib.attention import offset_attention
from pointlib.nn import GroupOffsetAttention, LinearBNReLU, OffsetAttention, RISPEmbedding
from pointlib.nn.blocks import linear_bn_act

DT = torch.float64


@pytest.fixture(params=[4096, 8], ids=["one-block", "many-blocks"])
def block_rows(request, monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_ROWS", request.param)
    monkeypatch.setattr(blocks, "BLOCK_ELEMS", 1 << 20 if request.param > 8 else 1)
    monkeypatch.setattr(offset_mod, "MAP_BLOCK", 1 << 20 if request.param > 8 else 7)
    return request.param


def _randomise(m: torch.nn.Module, gen: torch.Generator, gamma: str = "random") -> None:
    """Random BN parameters and statistics; ``gamma``: ``"random"``, ``"mixed"`` (every other
    scale negative: pooling must take the min there), ``"positive"`` or ``"negative"``."""
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                C = mod.num_features
                w = torch.randn(C, generator=gen, dtype=DT)
                if gamma == "mixed":
                    w[::2] = -w[::2].abs()
                    w[1::2] = w[1::2].abs()
                elif gamma in ("positive", "negative"):
                    w = w.abs() if gamma == "positive" else -w.abs()
                mod.weight.copy_(w)
                mod.bias.copy_(torch.randn(C, generator=gen, dtype=DT))
                mod.running_mean.copy_(torch.randn(C, generator=gen, dtype=DT))
                mod.running_var.copy_(torch.rand(C, generator=gen, dtype=DT) + 0.5)


def _unfused_block(m: LinearBNReLU, parts: list[torch.Tensor], pool: bool) -> torch.Tensor:
    h = torch.cat(parts, -1)
    y = m[1](m[0](h))
    if m.act:
        y = torch.relu(y)
    return y.amax(-2) if pool else y


def _grads(module: torch.nn.Module, inputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {f"in{i}": t.grad for i, t in enumerate(inputs)}
    out.update({n: p.grad for n, p in module.named_parameters()})
    return out


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("widths", [(12,), (5, 7)])
@pytest.mark.parametrize("act", [True, False])
@pytest.mark.parametrize("gamma", ["mixed", "positive", "negative"])
def test_linear_bn_act_equals_modules(pool, widths, act, gamma, block_rows, gen):
    m = LinearBNReLU(sum(widths), 6, act=act).to(DT)
    _randomise(m, gen, gamma=gamma)
    ref = copy.deepcopy(m)
    xs = [torch.randn(3, 5, 4, c, generator=gen, dtype=DT, requires_grad=True) for c in widths]
    xs_ref = [x.detach().clone().requires_grad_() for x in xs]
    pool_k = 4 if pool else None
    out = m.fused(xs, pool_k=pool_k)
    expect = _unfused_block(ref, xs_ref, pool)
    torch.testing.assert_close(out, expect, rtol=1e-12, atol=1e-12)
    w = torch.randn(out.shape, generator=gen, dtype=DT)
    (out * w).sum().backward()
    (expect * w).sum().backward()
    got, want = _grads(m, xs), _grads(ref, xs_ref)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-10, msg=name)
    for (name, a), (_, b) in zip(m.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=name)
    m.eval()
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            m.fused(xs, pool_k=pool_k), _unfused_block(ref, xs, pool), rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("layout", ["dense+gathered", "gathered", "gathered+gathered"])
def test_linear_bn_act_gathered_parts(pool, layout, block_rows, gen):
    """``Gathered`` parts (projected on the source rows, gradients summed back into them) give
    the values and gradients of the materialised grouped tensor."""
    B, N, M, K = 3, 7, 5, 4
    kinds = layout.split("+")
    widths = [5, 6][: len(kinds)]
    m = LinearBNReLU(sum(widths), 6).to(DT)
    _randomise(m, gen, gamma="mixed")
    ref = copy.deepcopy(m)
    leaves: list[torch.Tensor] = []
    parts: list = []
    parts_ref: list[torch.Tensor] = []
    for kind, c in zip(kinds, widths):
        if kind == "dense":
            x = torch.randn(B, M, K, c, generator=gen, dtype=DT, requires_grad=True)
            parts.append(x)
        else:
            x = torch.randn(B, N, c, generator=gen, dtype=DT, requires_grad=True)
            idx = torch.randint(0, N, (B, M, K), generator=gen)  # repeats: summed gradients
            parts.append(blocks.Gathered(x, idx))
        leaves.append(x)
    leaves_ref = [x.detach().clone().requires_grad_() for x in leaves]
    for p, x in zip(parts, leaves_ref):
        gathered = isinstance(p, blocks.Gathered)
        parts_ref.append(blocks.Gathered(x, p.idx).materialize() if gathered else x)
    pool_k = K if pool else None
    out = m.fused(parts, pool_k=pool_k)
    expect = _unfused_block(ref, parts_ref, pool)
    torch.testing.assert_close(out, expect, rtol=1e-12, atol=1e-12)
    w = torch.randn(out.shape, generator=gen, dtype=DT)
    (out * w).sum().backward()
    (expect * w).sum().backward()
    got, want = _grads(m, leaves), _grads(ref, leaves_ref)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-10, msg=name)
    m.eval()
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            m.fused(parts, pool_k=pool_k), _unfused_block(ref, parts_ref, pool), rtol=1e-12,
            atol=1e-12,
        )  # fmt: skip


def test_linear_bn_act_eval_with_grad_and_residual(gen):
    m = LinearBNReLU(8, 8).to(DT).eval()
    _randomise(m, gen)
    x = torch.randn(4, 3, 8, generator=gen, dtype=DT, requires_grad=True)
    r = torch.randn(4, 3, 8, generator=gen, dtype=DT, requires_grad=True)
    out = linear_bn_act(x, m[0], m[1], residual=r)
    torch.testing.assert_close(out, torch.relu(m[1](m[0](x))) + r)
    out.sum().backward()  # eval-mode graph stays differentiable (no in-place on saved tensors)
    assert x.grad is not None and torch.equal(r.grad, torch.ones_like(r))


def test_linear_bn_act_validation(gen):
    m = LinearBNReLU(8, 4)
    with pytest.raises(ValueError, match="input channels"):
        m.fused([torch.zeros(2, 3, 5), torch.zeros(2, 3, 4)])
    with pytest.raises(ValueError, match="leading shapes"):
        m.fused([torch.zeros(2, 3, 4), torch.zeros(2, 2, 4)])
    with pytest.raises(ValueError, match="pool_k"):
        m.fused(torch.zeros(2, 3, 5, 8), pool_k=4)


def test_risp_embedding_fused_equals_chain(block_rows, gen):
    e = RISPEmbedding().to(DT)
    _randomise(e, gen)
    ref = copy.deepcopy(e)
    x = torch.randn(2, 6, 5, 14, generator=gen, dtype=DT) * 3 + 1  # off-centre features
    out = e(x)
    expect = ref._unfused(x)
    torch.testing.assert_close(out, expect, rtol=1e-11, atol=1e-11)
    w = torch.randn(out.shape, generator=gen, dtype=DT)
    (out * w).sum().backward()
    (expect * w).sum().backward()
    for (name, p), (_, q) in zip(e.named_parameters(), ref.named_parameters()):
        if name == "bn1.bias":  # cancelled by bn2: exactly no gradient (the chain: ~1e-14)
            assert p.grad is None and q.grad.abs().max() < 1e-9
            continue
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-10, msg=name)
    for (name, a), (_, b) in zip(e.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13, msg=name)
    # gradient w.r.t. the input too (statistics are differentiated)
    xg, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    (e(xg) * w).sum().backward()
    (ref._unfused(xr) * w).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-10, atol=1e-10)
    e.eval()
    ref.eval()
    torch.testing.assert_close(e(x), ref._unfused(x), rtol=1e-12, atol=1e-12)


def _offset_reference(q, k, v, l1_axis, scale):
    A = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)
    A = A / (1e-9 + A.sum(dim=-2 if l1_axis == "query" else -3, keepdim=True))
    return A.transpose(-1, -2) @ v


@pytest.mark.parametrize("l1_axis", ["query", "group"])
@pytest.mark.parametrize(("G", "L", "D", "Dv"), [(3, 4, 2, 6), (2, 6, 3, 4), (1, 5, 2, 3)])
def test_offset_attention_values_and_gradcheck(l1_axis, G, L, D, Dv, block_rows, gen):
    q, k = (torch.randn(2, G, L, D, generator=gen, dtype=DT, requires_grad=True) for _ in "qk")
    v = torch.randn(2, G, L, Dv, generator=gen, dtype=DT, requires_grad=True)
    out = offset_attention(q, k, v, l1_axis=l1_axis, scale=0.7)
    torch.testing.assert_close(out, _offset_reference(q, k, v, l1_axis, 0.7))
    assert torch.autograd.gradcheck(
        lambda a, b, c: offset_attention(a, b, c, l1_axis=l1_axis, scale=0.7), (q, k, v)
    )


def test_offset_attention_leading_dims_and_errors(gen):
    q = torch.randn(2, 3, 4, 5, 2, generator=gen, dtype=DT)
    v = torch.randn(2, 3, 4, 5, 6, generator=gen, dtype=DT)
    out = offset_attention(q, q, v, l1_axis="group")
    torch.testing.assert_close(out, _offset_reference(q, q, v, "group", 1.0))
    with pytest.raises(ValueError, match="l1_axis"):
        offset_attention(q, q, v, l1_axis="keys")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="need q, k"):
        offset_attention(q, q[..., :1, :], v)


@pytest.mark.parametrize("norm_axis", ["query", "group"])
def test_attention_blocks_train_mode_match_unfused(norm_axis, gen):
    """The fused blocks (one qkv product, offset kernel, fused out_proj/BN/ReLU + residual) equal
    the explicit formula in training mode, including gradients and running statistics."""
    for mod, shape in (
        (GroupOffsetAttention(8, norm_axis=norm_axis), (2, 5, 6, 8)),
        (OffsetAttention(8), (3, 7, 8)),
    ):
        m = mod.to(DT).train()
        _randomise(m, gen)
        ref = copy.deepcopy(m)
        x = torch.randn(*shape, generator=gen, dtype=DT, requires_grad=True)
        xr = x.detach().clone().requires_grad_()
        out = m(x)
        attn, v = ref._attention(xr if xr.dim() == 4 else xr[:, None])
        ax = -2 if (norm_axis == "query" or isinstance(m, OffsetAttention)) else 1
        attn = attn / (1e-9 + attn.sum(dim=ax, keepdim=True))
        x_r = attn.transpose(-1, -2) @ v
        expect = ref._residual(xr if xr.dim() == 4 else xr[:, None], x_r)
        expect = expect if xr.dim() == 4 else expect[:, 0]
        torch.testing.assert_close(out, expect, rtol=1e-10, atol=1e-10)
        w = torch.randn(out.shape, generator=gen, dtype=DT)
        (out * w).sum().backward()
        (expect * w).sum().backward()
        torch.testing.assert_close(x.grad, xr.grad, rtol=1e-9, atol=1e-9)
        for (name, p), (_, q) in zip(m.named_parameters(), ref.named_parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-9, msg=name)
        torch.testing.assert_close(m.norm.running_var, ref.norm.running_var)


def test_fused_blocks_trace_under_compile(gen):
    """The custom autograd functions trace with fake tensors (``aot_eager``: no codegen)."""
    m = LinearBNReLU(6, 5)
    g = GroupOffsetAttention(8)
    x = torch.randn(2, 3, 4, 6, generator=gen)
    y = torch.randn(2, 3, 4, 8, generator=gen)

    def f(x, y):
        return m.fused(x, pool_k=4).sum() + g(y).sum()

    expect = f(x, y)
    m.train()
    got = torch.compile(f, backend="aot_eager")(x, y)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)
    got.backward()
    assert m[0].weight.grad is not None and g.q_proj.weight.grad is not None
