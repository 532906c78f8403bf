"""Our backbones reproduce timm's forward on the same (random) weights, via load_timm_weights.

timm is a test dependency only; the library never imports it. Each case builds the timm model
and ours at a small resolution, randomises timm's weights (BatchNorm statistics included),
loads them through :func:`pointlib.models.load_timm_weights` and compares eval-mode logits in
float64.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pointlib.models import create_model, load_timm_weights
from pointlib.models.timm_weights import convert_timm_state_dict

timm = pytest.importorskip("timm")


def _randomise_fan_in(model: torch.nn.Module, seed: int = 0) -> None:
    """He-scaled weights and unit-ish norm gains: deep conv + BatchNorm stacks (SHViT) attenuate
    0.1-std weights so much that attention logits vanish and the comparison would be vacuous
    (SHViT, VOLO: checked by MIXER_LOGITS below)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, val in model.state_dict().items():
        if not val.is_floating_point():
            sd[key] = val
        elif "running_var" in key:
            sd[key] = torch.rand(val.shape, generator=g, dtype=val.dtype) + 0.5
        elif val.dim() > 1:
            std = val[0].numel() ** -0.5
            sd[key] = std * torch.randn(val.shape, generator=g, dtype=val.dtype)
        elif key.endswith(".weight"):
            sd[key] = 1 + 0.2 * torch.randn(val.shape, generator=g, dtype=val.dtype)
        else:
            sd[key] = 0.1 * torch.randn(val.shape, generator=g, dtype=val.dtype)
    model.load_state_dict(sd)


def _halonet_timm(**kw):
    from timm.models.byoanet import model_cfgs
    from timm.models.byobnet import ByoBlockCfg, ByobNet, interleave_blocks

    blocks = (
        ByoBlockCfg(type="bottle", d=1, c=32, s=1, gs=0, br=0.25),
        ByoBlockCfg(type="bottle", d=1, c=64, s=2, gs=0, br=0.25),
        interleave_blocks(types=("bottle", "self_attn"), d=2, c=96, s=2, gs=0, br=0.25),
        ByoBlockCfg(type="self_attn", d=2, c=128, s=2, gs=0, br=0.25),
    )
    cfg = dataclasses.replace(
        model_cfgs["halonet26t"], blocks=blocks, stem_chs=16, self_attn_kwargs=kw
    )
    return ByobNet(cfg)


_SHVIT_SMALL = {
    "embed_dim": (16, 32, 48),
    "partial_dim": (8, 12, 16),
    "qk_dim": (8, 8, 8),
    "depth": (1, 2, 1),
    "types": ("i", "s", "s"),
    "num_classes": 10,
}

# Reduced widths/depths keep the check fast; every code path of the full variants is exercised
# (the full variants' parameter counts are checked in test_backbones.py).
CASES = {
    # name: (timm builder, our kwargs, input size)
    "convit_tiny": (
        # timm's embed_dim is per head: 8 * 4 heads = 32
        lambda: timm.create_model(
            "convit_tiny", img_size=32, patch_size=8, embed_dim=8, depth=3, local_up_to_layer=2
        ),
        {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 3, "local_up_to_layer": 2},
        32,
    ),
    "crossvit_tiny_240": (
        lambda: timm.create_model(
            "crossvit_tiny_240", img_size=120, embed_dim=[24, 48], depth=[[1, 2, 0], [1, 1, 0]]
        ),
        {"img_size": 120, "embed_dim": (24, 48), "depth": ((1, 2, 0), (1, 1, 0))},
        120,
    ),
    # 72 px: stage maps 18/9/5/3, so windows are zero-padded and a downsample pads an odd map
    "davit_tiny": (
        lambda: timm.create_model("davit_tiny", depths=(1, 1, 2, 1), embed_dims=(12, 24, 48, 96)),
        {"depths": (1, 1, 2, 1), "embed_dims": (12, 24, 48, 96)},
        72,
    ),
    # block 4 + halo 2 at 128 px: border halos and the stride-2 halo block are exercised
    "halonet26t": (
        lambda: _halonet_timm(block_size=4, halo_size=2, num_heads=2),
        {
            "stem_chs": 16,
            "channels": (32, 64, 96, 128),
            "blocks": (("bottle",), ("bottle",), ("bottle", "halo"), ("halo", "halo")),
            "num_heads": 2,
            "block_size": 4,
        },
        128,
    ),
    # 40 px, stride-4 stem: a 10x10 outlook map (5x5 stride-2 windows, zero-padded borders),
    # two outlookers, two class-attention blocks and the aux head
    "volo_d1_224": (
        lambda: timm.models.volo.VOLO(
            layers=(2, 1, 1),
            img_size=40,
            patch_size=4,
            stem_hidden_dim=16,
            embed_dims=(24, 48, 48),
            num_heads=(2, 4, 4),
        ),
        {
            "layers": (2, 1, 1),
            "img_size": 40,
            "patch_size": 4,
            "stem_hidden_dim": 16,
            "embed_dims": (24, 48, 48),
            "num_heads": (2, 4, 4),
        },
        40,
    ),
    # 72 px: stage maps 5x5 (no mixer), 3x3 and 2x2 (single-head attention on a channel slice)
    "shvit_s1": (
        lambda: timm.models.shvit.SHViT(**_SHVIT_SMALL),
        _SHVIT_SMALL,
        72,
    ),
}
# He-scaled weights everywhere: with 0.1-std weights HaloNet's logits barely depended on the
# input (relative sample spread 1e-10, q/k x3 moved the output by 3e-6), CrossViT's by 5e-3
# the token mixer's logit projection of one block, per model: scaling it must change the output
MIXER_LOGITS = {
    "halonet26t": lambda m: m.stages[3][0].self_attn.q.weight,
    "crossvit_tiny_240": lambda m: m.blocks[0].blocks[0][0].attn.qkv.weight,
    "volo_d1_224": lambda m: m.network[0][0].attn.attn.weight,
    "shvit_s1": lambda m: m.stages[1].blocks[0].mixer.m.qkv.c.weight[:8],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_timm(name):
    build_timm, kwargs, size = CASES[name]
    torch.manual_seed(0)
    ref = build_timm().double().eval()
    _randomise_fan_in(ref)
    ours = create_model(name, **kwargs).double().eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    load_timm_weights(ours, ref.state_dict())
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert expected.abs().max() > 1e-3  # a meaningful comparison, not two zero vectors
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-9)
    if name in MIXER_LOGITS:  # the attention itself is exercised: its logits move the output
        with torch.no_grad():
            for model in (ref, ours):
                MIXER_LOGITS[name](model).mul_(3.0)
            moved, got = ref(x), ours(x)
        assert (moved - expected).abs().max() > 1e-3 * expected.abs().max()
        torch.testing.assert_close(got, moved, atol=1e-10, rtol=1e-9)


def test_conversion_is_not_the_identity_where_layouts_differ():
    ref = _halonet_timm(block_size=4, halo_size=2, num_heads=2)
    ours = create_model("halonet26t", **CASES["halonet26t"][1])
    sd = convert_timm_state_dict(ours, ref.state_dict())
    key = "stages.3.0.self_attn.kv.weight"
    assert not torch.equal(sd[key], ref.state_dict()[key])  # per-head [k_h; v_h] regrouped
    assert "stages.3.0.self_attn.pos.tables.0" in sd


def test_mismatched_variant_is_a_clear_error():
    ref = timm.create_model("convit_tiny", img_size=32, embed_dim=8, depth=3)
    ours = create_model("convit_tiny", img_size=64, embed_dim=32, depth=3)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_timm_weights(ours, ref.state_dict())


def test_unsupported_model_is_a_type_error():
    with pytest.raises(TypeError, match="no timm weight mapping"):
        load_timm_weights(torch.nn.Linear(2, 2), {})


def test_non_strict_skips_a_different_classifier():
    small = {"depths": (1, 1, 1, 1), "embed_dims": (12, 24, 48, 96)}
    ref = timm.create_model("davit_tiny", num_classes=5, **small)
    ours = create_model("davit_tiny", num_classes=7, **small)
    with pytest.raises(ValueError):
        load_timm_weights(ours, ref.state_dict())
    sd = {k: v for k, v in ref.state_dict().items() if not k.startswith("head.fc")}
    load_timm_weights(ours, sd, strict=False)
    torch.testing.assert_close(ours.stem.conv.weight, ref.stem.conv.weight)
