"""DHVT (Lu et al., "Bridging the Gap Between Vision Transformers and Convolutional Neural
Networks on Small Datasets", NeurIPS 2022).

A plain ViT (no position embedding) with three changes for small datasets:

* **SOPE** patch embedding: affine -> stride-2 3x3 conv+BN stack (GELU between) -> affine;
* **HI-MHSA**: every block appends ``H`` *head tokens* to ``[CLS; patches]``. Head token ``g`` is
  ``GELU(LN(Linear(mean over tokens of channel group g))) + head embedding_g`` (the Linear maps a
  ``C/H`` group to ``C``, the LayerNorm acts per ``C/H`` chunk). Global multi-head attention runs
  over all ``1 + N + H`` tokens (core global mode, the head tokens are queries and keys), and the
  head tokens' outputs are averaged into the CLS token;
* **DAFF** feed-forward: 1x1 conv -> 3x3 depthwise conv (residual) -> 1x1 conv, BN after each, on
  the patch map; the CLS token is rescaled channel-wise by a squeeze-excitation of the map
  (no sigmoid, as the official code).

Parameter count of DHVT-T (ImageNet: 192 wide, 12 blocks, 3 heads, patch 16) against the
official README's 6.2M: see ``docs/backbones.md``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from pointlib.attention import NeighborhoodAttention
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import (
    check_image,
    classifier,
    drop_path_or_identity,
    drop_path_rates,
    init_vit_weights,
)

__all__ = ["DHVT", "dhvt_test_tiny", "dhvt_tiny"]

_EPS = 1e-6


class _Affine(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.alpha + self.beta


class SOPE(nn.Module):
    """Sequence of overlapping patch embeddings: ``log2(patch)`` stride-2 3x3 conv+BN layers.

    Shapes:
        input ``[B, 3, H, W]``; output ``[B, (H/p)(W/p), C]``.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        steps = {16: 4, 4: 2, 2: 1}.get(patch_size)
        if steps is None:
            raise ValueError(f"patch_size must be 2, 4 or 16 (as the reference), got {patch_size}")
        widths = [embed_dim // 2 ** (steps - 1 - i) for i in range(steps)]
        layers: list[nn.Module] = []
        cin = in_chans
        for i, c in enumerate(widths):
            layers.append(nn.Sequential(nn.Conv2d(cin, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c)))
            if i < steps - 1 or steps == 1:
                layers.append(nn.GELU())
            cin = c
        self.pre_affine = _Affine(in_chans)
        self.proj = nn.Sequential(*layers)
        self.post_affine = _Affine(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.post_affine(self.proj(self.pre_affine(x))).flatten(2).transpose(1, 2)


class HeadTokenAttention(nn.Module):
    """HI-MHSA: multi-head self-attention over ``[CLS; patches; H head tokens]``.

    Shapes:
        input/output ``[B, 1 + N, C]`` (the head tokens live inside the call only).
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.heads, self.group = heads, dim // heads
        self.attn = NeighborhoodAttention(dim, heads, qkv_bias=qkv_bias)
        self.ht_proj = nn.Linear(self.group, dim)
        self.ht_norm = nn.LayerNorm(self.group)
        self.act = nn.GELU()
        self.head_embed = nn.Parameter(torch.zeros(1, heads, dim))
        nn.init.trunc_normal_(self.head_embed, std=0.02)

    def head_tokens(self, x: Tensor) -> Tensor:
        """``[B, H, C]``: one token per channel group, from the group's mean over all tokens."""
        B, _, C = x.shape
        g = x.view(B, -1, self.heads, self.group).mean(1)  # [B, H, C/H]
        t = self.ht_proj(g).view(B, self.heads, self.heads, self.group)
        return self.act(self.ht_norm(t)).reshape(B, self.heads, C) + self.head_embed

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[1]
        y = self.attn(torch.cat([x, self.head_tokens(x)], dim=1))  # global mode, N + H tokens
        cls, patches, ht = y.split([1, n - 1, self.heads], dim=1)
        return torch.cat([cls + ht.mean(1, keepdim=True), patches], dim=1)


class DAFF(nn.Module):
    """Dynamic aggregation feed-forward on the patch map; CLS rescaled by a squeeze-excitation.

    Shapes:
        input/output ``[B, 1 + h*w, C]``.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, dim, 1)
        self.bn3 = nn.BatchNorm2d(dim)
        self.act = nn.GELU()
        self.compress = nn.Linear(dim, dim // 4)
        self.excitation = nn.Linear(dim // 4, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, n, C = x.shape
        side = math.isqrt(n - 1)
        cls, tokens = x.split([1, n - 1], dim=1)
        m = tokens.transpose(1, 2).reshape(B, C, side, side)
        m = self.act(self.bn1(self.conv1(m)))
        m = m + self.act(self.bn2(self.conv2(m)))
        m = self.bn3(self.conv3(m))
        w = self.excitation(self.act(self.compress(m.mean((2, 3)))))[:, None]
        return torch.cat([cls * w, m.flatten(2).transpose(1, 2)], dim=1)


class _Block(nn.Module):
    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_EPS)
        self.attn = HeadTokenAttention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=_EPS)
        self.mlp = DAFF(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DHVT(nn.Module):
    """DHVT: SOPE embedding, ``depth`` HI-MHSA + DAFF blocks, CLS classifier.

    Args:
        img_size: square input size (any multiple of ``patch_size`` works; kept for messages).
        patch_size: 2, 4 or 16 (the SOPE stack depth).
        in_chans, num_classes: input channels and classes (``0``: CLS features out).
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: the ViT body.
        drop_path_rate: stochastic depth (linear over the blocks).

    Shapes:
        input ``[B, in_chans, H, W]`` with square ``H = W`` divisible by ``patch_size``;
        output ``[B, num_classes]``.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.in_chans, self.num_classes = in_chans, num_classes
        self.patch_embed = SOPE(in_chans, embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        rates = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.Sequential(
            *(_Block(embed_dim, num_heads, mlp_ratio, qkv_bias, r) for r in rates)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=_EPS)
        self.head = classifier(embed_dim, num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_vit_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """The normalised CLS token ``[B, C]``."""
        h, w = check_image(x, self.in_chans, multiple=self.patch_size, model="DHVT")
        if h != w:
            raise ValueError(f"DHVT: the DAFF map is square; got a {h}x{w} image")
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm(self.blocks(x))[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


def _build(kwargs: dict[str, Any], **defaults: Any) -> DHVT:
    return DHVT(**{**defaults, **kwargs})


@register_model
def dhvt_tiny(**kwargs: Any) -> DHVT:
    """DHVT-T for ImageNet (official ``dhvt_tiny_imagenet_patch16``; README: 6.2M, 77.6%)."""
    return _build(kwargs)


@register_model
def dhvt_test_tiny(**kwargs: Any) -> DHVT:
    """A small DHVT for tests: 32 px, patch 4 (8x8 map), 2 blocks, 2 heads."""
    return _build(
        kwargs, img_size=32, patch_size=4, num_classes=10, embed_dim=32, depth=2, num_heads=2
    )
