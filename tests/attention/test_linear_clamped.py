"""L2ViT's clamped ReLU linear attention against a per-query loop, forward and backward."""

from __future__ import annotations

import pytest
import torch

from pointlib.attention.linear import clamped_linear_attention


def _loop(q, k, v, tau, floor):
    B, H, N, _ = q.shape
    fq, fk = q.relu(), k.relu()
    out = torch.zeros(B, H, N, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for i in range(N):  # one query: similarities to every key, clamped total
                sim = torch.stack([fq[b, h, i] @ fk[b, h, j] for j in range(N)])
                den = torch.clamp(sim.sum(), min=floor)
                out[b, h, i] = tau[h, 0, 0] * (sim[:, None] * v[b, h]).sum(0) / den
    return out


def test_matches_the_loop_in_both_regimes():
    g = torch.Generator().manual_seed(0)
    B, H, N, D = 1, 2, 8, 4
    q = torch.randn(B, H, N, D, generator=g, dtype=torch.float64)
    q[:, :, : N // 2] *= 12.0  # large similarities: above the floor; the rest are clamped
    q.requires_grad_(True)
    k = (3 * torch.randn(B, H, N, D, generator=g, dtype=torch.float64)).requires_grad_(True)
    v = torch.randn(B, H, N, 3, generator=g, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([0.5, 2.0], dtype=torch.float64).view(H, 1, 1).requires_grad_(True)
    floor = 20.0
    den = q.relu() @ k.relu().sum(-2, keepdim=True).transpose(-1, -2)
    assert (den > floor).any() and (den < floor).any()  # both branches of the clamp are used
    out = clamped_linear_attention(q, k, v, tau, min_denominator=floor)
    ref = _loop(q, k, v, tau, floor)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-10)
    cot = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((out * cot).sum(), (q, k, v, tau))
    exp = torch.autograd.grad((ref * cot).sum(), (q, k, v, tau))
    for a, e in zip(got, exp):
        assert e.abs().max() > 1e-6
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-10)


def test_module_matches_explicit_weights():
    from pointlib.models.vision.l2vit import LinearGlobalAttention

    torch.manual_seed(0)
    m = LinearGlobalAttention(8, 2).double()
    x = 20 * torch.randn(2, 6, 8, dtype=torch.float64)
    q, k, v = m.qkv(x).view(2, 6, 3, 2, 4).permute(2, 0, 3, 1, 4)
    ref = _loop(q, k, v, m.temperature, 100.0).transpose(1, 2).reshape(2, 6, 8)
    torch.testing.assert_close(m(x), m.proj(ref), atol=1e-12, rtol=1e-10)


def test_bad_shapes():
    with pytest.raises(ValueError, match="need q, k"):
        clamped_linear_attention(
            torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 5), torch.randn(1, 2, 3, 4)
        )
