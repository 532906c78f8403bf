"""Outlook (slot) attention against a per-query loop re-derivation, forward and backward."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from pointlib.attention.outlook import OutlookAttention, outlook_attention, outlook_windows


def _loop_reference(logits, v, index, scale):
    """Per output token: sum over every (group, output slot) that lands on it of the softmax-
    weighted sum of the group's input-slot values; index N is a zero value / dropped output."""
    B, H, G, K, _ = logits.shape
    N, D = v.shape[2], v.shape[3]
    idx = index.expand(B, -1, -1)
    w = torch.softmax(logits * scale, dim=-1)
    rows = []
    for b in range(B):
        for n in range(N):
            acc = v.new_zeros(H, D)
            for g in range(G):
                for s in range(K):
                    if int(idx[b, g, s]) != n:
                        continue
                    for t in range(K):
                        j = int(idx[b, g, t])
                        if j < N:
                            acc = acc + w[b, :, g, s, t, None] * v[b, :, j]
            rows.append(acc)
    return torch.stack(rows).view(B, N, H, D).transpose(1, 2)


@pytest.mark.parametrize("shared", [True, False])
def test_forward_and_backward_match_the_loop(shared):
    g = torch.Generator().manual_seed(0)
    B, H, N, D, G, K = 2, 2, 7, 3, 5, 4
    if shared:  # an image-style batch-shared index with padding slots
        index = torch.randint(0, N + 1, (1, G, K), generator=g)
    else:  # per-sample point rings (repeated tokens too)
        index = torch.randint(0, N, (B, G, K), generator=g)
    logits = torch.randn(B, H, G, K, K, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, H, N, D, generator=g, dtype=torch.float64, requires_grad=True)
    out = outlook_attention(logits, v, index, scale=0.7)
    ref = _loop_reference(logits, v, index, 0.7)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    cot = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((out * cot).sum(), (logits, v))
    grads_ref = torch.autograd.grad((ref * cot).sum(), (logits, v))
    for got, exp in zip(grads, grads_ref):
        assert exp.abs().max() > 1e-3
        torch.testing.assert_close(got, exp, atol=1e-12, rtol=1e-12)


def test_gradcheck():
    g = torch.Generator().manual_seed(1)
    index = torch.randint(0, 5, (1, 3, 3), generator=g)
    logits = torch.randn(1, 1, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 1, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: outlook_attention(a, b, index), (logits, v))


@pytest.mark.parametrize(("h", "w", "k", "s", "p"), [(5, 6, 3, 1, 1), (7, 5, 3, 2, 1)])
def test_windows_are_unfold(h, w, k, s, p):
    index, (oh, ow) = outlook_windows(h, w, k, s, p)
    ids = torch.arange(1.0, h * w + 1).view(1, 1, h, w)  # ids + 1 so that padding reads 0
    cols = F.unfold(ids, k, padding=p, stride=s)[0]  # (k*k, oh*ow)
    expect = (cols.t().long() - 1) % (h * w + 1)  # padding -> h*w
    assert cols.shape[1] == oh * ow
    torch.testing.assert_close(index[0], expect)


def test_image_fold_equals_unfold_fold():
    """On image windows the fold is nn.Fold of the weighted unfolded values."""
    g = torch.Generator().manual_seed(2)
    B, H, D, h, w, k = 2, 2, 3, 5, 7, 3
    index, (oh, ow) = outlook_windows(h, w, k, 2, 1)
    G, K = oh * ow, k * k
    logits = torch.randn(B, H, G, K, K, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, h * w, D, generator=g, dtype=torch.float64)
    out = outlook_attention(logits, v, index)
    vm = v.transpose(2, 3).reshape(B, H * D, h, w)
    cols = F.unfold(vm, k, padding=1, stride=2).view(B, H, D, K, G).permute(0, 1, 4, 3, 2)
    y = logits.softmax(-1) @ cols  # (B, H, G, K, D)
    y = y.permute(0, 1, 4, 3, 2).reshape(B, H * D * K, G)
    ref = F.fold(y, (h, w), k, padding=1, stride=2).view(B, H, D, h * w).transpose(2, 3)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize(("h", "w", "stride"), [(6, 6, 2), (7, 5, 2), (5, 4, 1)])
def test_module_matches_timm(h, w, stride):
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    volo = pytest.importorskip("timm.models.volo")
    torch.manual_seed(0)
    ref = volo.OutlookAttention(12, 3, 3, 1, stride).double().eval()
    ours = OutlookAttention(12, 3, 3, 1, stride).double().eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, h, w, 12, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-12, rtol=1e-10)


def test_bad_shapes_are_clear_errors():
    logits = torch.randn(1, 2, 3, 4, 4)
    v = torch.randn(1, 2, 5, 3)
    with pytest.raises(ValueError, match="index must be"):
        outlook_attention(logits, v, torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="logits must be"):
        outlook_attention(logits[..., :3], v, torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="int64"):
        outlook_attention(logits, v, torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="channels-last"):
        OutlookAttention(8, 2)(torch.randn(1, 8, 4, 4)[:, :3])


def test_contiguous_groups_without_an_index():
    """``index=None`` (each group owns K consecutive tokens) equals the explicit index."""
    g = torch.Generator().manual_seed(3)
    B, H, G, K, D = 2, 2, 4, 5, 3
    logits = torch.randn(B, H, G, K, K, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, G * K, D, generator=g, dtype=torch.float64)
    index = torch.arange(G * K).view(1, G, K)
    for groups in (False, True):
        torch.testing.assert_close(
            outlook_attention(logits, v, None, return_groups=groups),
            outlook_attention(logits, v, index, return_groups=groups),
        )
    torch.testing.assert_close(
        outlook_attention(logits, v, None), _loop_reference(logits, v, index, 1.0)
    )
    with pytest.raises(ValueError, match="G\\*K"):
        outlook_attention(logits, v[:, :, :-1], None)
