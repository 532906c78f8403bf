"""RISurConv's offset-attention blocks (``pointlib.nn.offset_attention``) through the core.

The core's ``kernel="offset"`` reproduces ``OffsetAttention`` (spec 2.2, global mode, PCT
query-axis normalisation) and ``GroupOffsetAttention`` (spec 2.3, group mode) with the faithful
group-axis normalisation (``l1_axis="group"``) and the fixed query-axis one, on copied weights.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import pointlib.nn.offset_attention as oa  # our own module: a rename must fail, not skip
from pointlib.attention import Neighborhood, attention


def _core_offset(mod, x: Tensor, nbr: Neighborhood | None, l1_axis: str) -> Tensor:
    """``x (B, N, C)`` tokens -> the block output via the core (single head, scale 1)."""
    q = mod.q_proj(x)[:, None]  # (B, 1, N, C/4)
    k = mod.k_proj(x)[:, None]
    v = mod.v_proj(x)[:, None]  # (B, 1, N, C)
    x_r = attention(q, k, v, nbr, kernel="offset", scale=1.0, l1_axis=l1_axis)[:, 0]
    return x + torch.relu(mod.norm(mod.out_proj(x - x_r)))


def _randomise_bn(mod, gen):
    with torch.no_grad():
        for p in mod.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
        for name, buf in mod.named_buffers():
            if "running_var" in name:
                buf.copy_(torch.rand(buf.shape, generator=gen, dtype=buf.dtype) + 0.5)
            elif "running_mean" in name:
                buf.copy_(torch.randn(buf.shape, generator=gen, dtype=buf.dtype) * 0.1)


@pytest.mark.parametrize("train", [False, True])
def test_sa_layer_equals_core_global_offset(train):
    gen = torch.Generator().manual_seed(0)
    mod = oa.OffsetAttention(8).double()
    _randomise_bn(mod, gen)
    mod.train(train)
    x = torch.randn(2, 6, 8, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(_core_offset(mod, x, None, "query"), mod(x))


@pytest.mark.parametrize("norm_axis", ["group", "query"])
@pytest.mark.parametrize("S", [1, 3])
def test_sa_layer_2d_equals_core_group_offset(norm_axis, S):
    gen = torch.Generator().manual_seed(1)
    mod = oa.GroupOffsetAttention(8, norm_axis=norm_axis).double().eval()
    _randomise_bn(mod, gen)
    B, K, C = 2, 5, 8
    x = torch.randn(B, S, K, C, generator=gen, dtype=torch.float64, requires_grad=True)
    expect = mod(x)
    nbr = Neighborhood(mode="group", index=torch.arange(S * K).view(1, S, K))
    got = _core_offset(mod, x.reshape(B, S * K, C), nbr, norm_axis).view(B, S, K, C)
    torch.testing.assert_close(got, expect)
    g1 = torch.autograd.grad(got.square().sum(), x)[0]
    g2 = torch.autograd.grad(expect.square().sum(), x)[0]
    torch.testing.assert_close(g1, g2)
