"""Offset attention (spec §2.2, §2.3) and the global transformer head (spec §3.1)."""

from __future__ import annotations

import pytest
import torch

from pointlib.nn import ClassifierHead, GlobalTransformer, GroupOffsetAttention, OffsetAttention


def _spec_sa_layer(m: OffsetAttention, x_bcn: torch.Tensor) -> torch.Tensor:
    """Spec §2.2 literally, in the reference layout ``(B, C, N)``: divide A, then ``V·A``."""
    W = lambda lin: lin.weight  # noqa: E731
    q = torch.einsum("oc,bcn->bno", W(m.q_proj), x_bcn)  # (B, N, C/4)
    k = torch.einsum("oc,bcn->bon", W(m.k_proj), x_bcn)  # (B, C/4, N)
    v = torch.einsum("oc,bcn->bon", W(m.v_proj), x_bcn) + m.v_proj.bias[:, None]
    A = torch.softmax(q @ k, dim=-1)
    A = A / (1e-9 + A.sum(dim=1, keepdim=True))
    x_r = v @ A
    t = torch.einsum("oc,bcn->bon", W(m.out_proj), x_bcn - x_r) + m.out_proj.bias[:, None]
    t = torch.nn.functional.batch_norm(
        t,
        m.norm.running_mean,
        m.norm.running_var,
        m.norm.weight,
        m.norm.bias,
        False,
        0.0,
        m.norm.eps,
    )
    return x_bcn + torch.relu(t)


def _spec_sa_layer_2d(m: GroupOffsetAttention, x: torch.Tensor) -> torch.Tensor:
    """Spec §2.3 literally on ``(B, C, K, S)``, with the reference's sum over ``S`` (dim 1)."""
    W = lambda lin: lin.weight  # noqa: E731
    q = torch.einsum("oc,bcks->bsko", W(m.q_proj), x)
    k = torch.einsum("oc,bcks->bsok", W(m.k_proj), x)
    v = torch.einsum("oc,bcks->bsok", W(m.v_proj), x) + m.v_proj.bias[:, None]
    A = torch.softmax(q @ k, dim=-1)  # (B, S, K, K)
    A = A / (1e-9 + A.sum(dim=1, keepdim=True))
    x_r = (v @ A).permute(0, 2, 3, 1)  # (B, S, C, K) -> (B, C, K, S)
    t = torch.einsum("oc,bcks->boks", W(m.out_proj), x - x_r) + m.out_proj.bias[:, None, None]
    n = m.norm
    t = (t - n.running_mean[:, None, None]) / torch.sqrt(n.running_var[:, None, None] + n.eps)
    t = t * n.weight[:, None, None] + n.bias[:, None, None]
    return x + torch.relu(t)


def _randomise_bn(m: torch.nn.Module, g: torch.Generator) -> None:
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            C = mod.num_features
            mod.running_mean.copy_(torch.randn(C, generator=g, dtype=torch.float64))
            mod.running_var.copy_(torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
            mod.weight.data.copy_(torch.randn(C, generator=g, dtype=torch.float64))
            mod.bias.data.copy_(torch.randn(C, generator=g, dtype=torch.float64))


def test_offset_attention_matches_spec(gen):
    m = OffsetAttention(16).double().eval()
    _randomise_bn(m, gen)
    x = torch.randn(3, 10, 16, generator=gen, dtype=torch.float64)
    out = m(x)
    ref = _spec_sa_layer(m, x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert out.shape == x.shape


def test_group_offset_attention_faithful_matches_spec(gen):
    m = GroupOffsetAttention(8, norm_axis="group").double().eval()
    _randomise_bn(m, gen)
    x = torch.randn(2, 5, 6, 8, generator=gen, dtype=torch.float64)  # (B, S, K, C)
    out = m(x)
    ref = _spec_sa_layer_2d(m, x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


def test_group_offset_attention_query_axis_is_per_neighbourhood(gen):
    """Fixed mode equals OffsetAttention applied to each neighbourhood on its own."""
    m = GroupOffsetAttention(8).double().eval()
    _randomise_bn(m, gen)
    flat = OffsetAttention(8).double().eval()
    flat.load_state_dict(m.state_dict())
    x = torch.randn(2, 5, 6, 8, generator=gen, dtype=torch.float64)
    out = m(x)
    torch.testing.assert_close(out, flat(x.reshape(10, 6, 8)).reshape(x.shape))
    # changing one neighbourhood leaves the others unchanged
    x2 = x.clone()
    x2[:, 0] += 1.0
    out2 = m(x2)
    torch.testing.assert_close(out2[:, 1:], out[:, 1:], rtol=0, atol=0)


def test_group_norm_axis_couples_neighbourhoods(gen):
    m = GroupOffsetAttention(8, norm_axis="group").double().eval()
    x = torch.randn(1, 4, 6, 8, generator=gen, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert (m(x2)[:, 1:] - m(x)[:, 1:]).abs().max() > 1e-6


def test_attention_validation():
    with pytest.raises(ValueError, match="multiple of 4"):
        OffsetAttention(6)
    with pytest.raises(ValueError, match="norm_axis"):
        GroupOffsetAttention(8, norm_axis="keys")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, S, K, C\)"):
        GroupOffsetAttention(8)(torch.zeros(2, 3, 8))


def test_offset_attention_single_point_is_value_projection(gen):
    """Global layer (one point): softmax over one key is 1, so x_r = V (to ~1e-9)."""
    m = OffsetAttention(8).double().eval()
    x = torch.randn(4, 1, 8, generator=gen, dtype=torch.float64)
    expected = x + torch.relu(m.norm(m.out_proj(x - m.v_proj(x))))
    torch.testing.assert_close(m(x), expected, rtol=1e-8, atol=1e-8)


def test_global_transformer_fixed_equals_encoder_per_sample(gen):
    t = GlobalTransformer(32, 4, 2, 64).double().eval()
    x = torch.randn(5, 32, generator=gen, dtype=torch.float64)
    direct = t(x)
    via_module = t.encoder(x[None])[0]  # sequence length 1, batch B
    torch.testing.assert_close(direct, via_module, rtol=1e-12, atol=1e-12)
    # each sample alone gives the same output
    torch.testing.assert_close(t(x[2:3]), direct[2:3], rtol=1e-12, atol=1e-12)


def test_global_transformer_over_batch_mixes_samples(gen):
    t = GlobalTransformer(32, 4, 2, 64, over_batch=True).double().eval()
    x = torch.randn(5, 32, generator=gen, dtype=torch.float64)
    out = t(x)
    x2 = x.clone()
    x2[1:] = torch.randn(4, 32, generator=gen, dtype=torch.float64)
    assert (t(x2)[0] - out[0]).abs().max() > 1e-3
    torch.testing.assert_close(out, t.encoder(x[:, None])[:, 0])


def test_global_transformer_parameter_count_and_qk_gradient(gen):
    assert sum(p.numel() for p in GlobalTransformer().parameters()) == 9_457_152
    t = GlobalTransformer(16, 2, 1, 32, dropout=0.0)
    t(torch.randn(4, 16, generator=gen)).pow(2).sum().backward()
    w = t.encoder.layers[0].self_attn.in_proj_weight.grad
    assert w is not None
    assert w[:32].abs().max() == 0  # query/key rows: unused for a length-1 sequence
    assert w[32:].abs().max() > 0


def test_global_transformer_train_mode_runs(gen):
    t = GlobalTransformer(16, 2, 1, 32, dropout=0.5).train()
    out = t(torch.randn(4, 16, generator=gen))
    assert out.shape == (4, 16) and torch.isfinite(out).all()


def test_classifier_head_shapes(gen):
    head = ClassifierHead(32, 7, (16, 8)).eval()
    assert head(torch.randn(3, 32, generator=gen)).shape == (3, 7)
