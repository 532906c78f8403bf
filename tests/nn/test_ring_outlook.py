"""RingOutlook (outlook attention on angle-ordered point rings) against a per-slot loop."""

from __future__ import annotations

import pytest
import torch

from pointlib.models import create_model
from pointlib.nn import RingOutlook
from pointlib.nn.ring_outlook import circulant


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _loop(mod: RingOutlook, h: torch.Tensor) -> torch.Tensor:
    """Per centre, per head, per output slot: softmax over input slots of the logits predicted
    from the mean normalised slot feature, times the input slots' values."""
    B, S, K, _ = h.shape
    H, d = mod.heads, mod.head_dim
    x = mod.norm(h)
    out = torch.zeros_like(h)
    for b in range(B):
        for c in range(S):
            centre = x[b, c].mean(0)
            raw = mod.attn(centre)
            v = mod.v(x[b, c])  # (K, C)
            for hd in range(H):
                for s in range(K):
                    if mod.kernel == "full":
                        row = raw.view(H, K, K)[hd, s]
                    else:  # logit of input slot t = offset (t - s) mod K
                        ell = raw.view(H, K)[hd]
                        row = torch.stack([ell[(t - s) % K] for t in range(K)])
                    w = torch.softmax(row * d**-0.5, 0)
                    y = sum(w[t] * v[t, hd * d : (hd + 1) * d] for t in range(K))
                    out[b, c, s, hd * d : (hd + 1) * d] = y
    return h + mod.proj(out)


@pytest.mark.parametrize("kernel", ["full", "cyclic"])
def test_forward_backward_match_the_loop(kernel):
    torch.manual_seed(0)
    mod = RingOutlook(6, 5, heads=2, kernel=kernel).double()
    _randomise(mod)
    h = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    out, ref = mod(h), _loop(mod, h)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    g = torch.randn_like(out)
    params = [h, *mod.parameters()]
    got = torch.autograd.grad((out * g).sum(), params)
    exp = torch.autograd.grad((ref * g).sum(), params)
    for a, b in zip(got, exp):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    assert exp[0].abs().max() > 1e-3


def test_cyclic_kernel_commutes_with_a_ring_rotation():
    """Only the cyclic order matters: rolling the slots rolls the output."""
    torch.manual_seed(1)
    mod = RingOutlook(8, 6, heads=2, kernel="cyclic").double()
    _randomise(mod)
    h = torch.randn(2, 4, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(mod(h.roll(2, dims=2)), mod(h).roll(2, dims=2))
    full = RingOutlook(8, 6, heads=2, kernel="full").double()
    _randomise(full)
    assert (full(h.roll(2, dims=2)) - full(h).roll(2, dims=2)).abs().max() > 1e-3


def test_circulant():
    ell = torch.tensor([10.0, 11.0, 12.0])
    expect = torch.tensor([[10.0, 11.0, 12.0], [12.0, 10.0, 11.0], [11.0, 12.0, 10.0]])
    torch.testing.assert_close(circulant(ell), expect)


def test_errors():
    with pytest.raises(ValueError, match="built for rings of 4"):
        RingOutlook(8, 4)(torch.randn(1, 2, 5, 8))
    with pytest.raises(ValueError, match="divisible"):
        RingOutlook(6, 4, heads=4)
    with pytest.raises(ValueError, match="kernel must be"):
        RingOutlook(8, 4, kernel="grid")
    with pytest.raises(ValueError, match="mixer must be"):
        create_model("risurconv_cls_tiny", mixer="conv")


def test_model_variant_swaps_only_the_local_group_mixers():
    stock = create_model("risurconv_cls_tiny")
    torch.manual_seed(0)
    ours = create_model("risurconv_cls_outlook_tiny")
    kinds = [type(layer.attn_group).__name__ for layer in ours.layers]
    assert kinds == ["RingOutlook"] * 4 + ["GroupOffsetAttention"]
    assert [layer.attn_group.num_slots for layer in ours.layers[:4]] == [8, 8, 8, 8]
    # the stock model is unchanged by the hook: same keys as before, no RingOutlook
    assert not any(isinstance(m, RingOutlook) for m in stock.modules())
    cyc = create_model("risurconv_cls_tiny", mixer="cyclic")
    assert cyc.layers[0].attn_group.kernel == "cyclic"


def test_the_slot_logits_reach_the_model_output():
    """The mixer is not a no-op inside the network (so the invariance tests are not vacuous):
    the slot softmax of every local layer moves the logits."""
    from pointlib.testing import make_cloud

    torch.manual_seed(0)
    model = create_model("risurconv_cls_outlook_tiny", num_classes=5).double().eval()
    xyz, nrm = make_cloud(2, 128, dtype=torch.float64)
    with torch.no_grad():
        ref = model(xyz, nrm)
        for layer in model.layers[:4]:
            before = model(xyz, nrm)
            layer.attn_group.attn.weight.mul_(4.0)
            assert (model(xyz, nrm) - before).abs().max() > 1e-3 * before.abs().max()
    assert ref.abs().max() > 0
