"""Neighborhood Attention Transformer (Hassani et al., CVPR 2023), NAT-Mini.

Core mapping: query mode. Every pixel attends to its ``k x k`` nearest pixels; the window is
shifted inward at borders (NATTEN semantics, :func:`pointlib.attention.grid`), with a learned
relative-position bias table of ``(2k-1)²`` entries per head (:class:`RelPosTable` on
``Neighborhood.slot``). Maps smaller than the kernel are zero-padded (right/bottom) as in the
original NATTEN module; padded pixels stay visible as keys.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.attention import Neighborhood, NeighborhoodAttention, RelPosTable, grid
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import (
    PreNormBlock,
    check_image,
    classifier,
    drop_path_rates,
    init_vit_weights,
)

__all__ = ["NAT", "NeighborhoodAttention2d", "nat_mini", "nat_test_tiny"]


@functools.lru_cache(maxsize=32)
def _grid(h: int, w: int, kernel: int, dilation: int) -> Neighborhood:
    return grid(h, w, kernel, dilation)


class NeighborhoodAttention2d(nn.Module):
    """2D neighbourhood attention with a relative-position bias table.

    Args:
        dim: channels ``C``.
        num_heads: heads ``H``.
        kernel_size: odd window side ``k``.
        dilation: window dilation.

    Shapes:
        input/output ``[B, H, W, C]`` (channels last).
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 7, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size, self.dilation = kernel_size, dilation
        rpb = RelPosTable((2 * kernel_size - 1) ** 2, num_heads)
        self.attn = NeighborhoodAttention(dim, num_heads, qkv_bias=True, bias=rpb)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        span = self.kernel_size * self.dilation
        pad_b, pad_r = max(0, span - h), max(0, span - w)
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        nbr = _grid(hp, wp, self.kernel_size, self.dilation).to(x.device)
        out = self.attn(x.reshape(b, hp * wp, c), nbr).view(b, hp, wp, c)
        return out[:, :h, :w]


class NATLayer(PreNormBlock):
    """Pre-norm block: neighbourhood attention + MLP. Shapes: ``[B, H, W, C]``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
    ) -> None:
        attn = NeighborhoodAttention2d(dim, num_heads, kernel_size)
        super().__init__(dim, attn, mlp_ratio, drop_path, eps=1e-5, layer_scale=layer_scale)


class ConvDownsampler(nn.Module):
    """3x3 stride-2 conv (no bias) + LayerNorm: ``[B, H, W, C]`` -> ``[B, H/2, W/2, 2C]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(dim, 2 * dim, 3, stride=2, padding=1, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class NAT(nn.Module):
    """NAT classifier: conv tokenizer (stride 4), four levels, mean-pooled head.

    Args:
        embed_dim: width of the first level (doubles per level).
        depths: blocks per level.
        num_heads: heads per level.
        kernel_size: neighbourhood size ``k``.
        mlp_ratio: MLP hidden width / ``C``.
        layer_scale: per-channel residual gains (NAT-S/B), ``None`` for NAT-M/T.

    Shapes:
        input ``[B, C_in, H, W]`` (any size); output ``[B, num_classes]``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 64,
        depths: Sequence[int] = (3, 4, 6, 5),
        num_heads: Sequence[int] = (2, 4, 8, 16),
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
        drop_path_rate: float = 0.2,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError("depths and num_heads need one entry per level")
        self.in_chans, self.num_classes = in_chans, num_classes
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 2, 3, stride=2, padding=1),
            nn.Conv2d(embed_dim // 2, embed_dim, 3, stride=2, padding=1),
        )
        self.patch_embed.norm = nn.LayerNorm(embed_dim)
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.levels = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2**i
            start = sum(depths[:i])
            level = nn.Module()
            level.blocks = nn.ModuleList(
                NATLayer(dim, heads, kernel_size, mlp_ratio, rates[start + j], layer_scale)
                for j in range(depth)
            )
            level.downsample = ConvDownsampler(dim) if i < len(depths) - 1 else None
            self.levels.append(level)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = classifier(self.num_features, num_classes)
        self.apply(init_vit_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Images -> pooled features ``[B, C]``."""
        check_image(x, self.in_chans, model="NAT")
        x = self.patch_embed.norm(self.patch_embed.proj(x).permute(0, 2, 3, 1))
        for level in self.levels:
            for blk in level.blocks:
                x = blk(x)
            if level.downsample is not None:
                x = level.downsample(x)
        return self.norm(x).mean((1, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


@register_model
def nat_mini(**kwargs: Any) -> NAT:
    """NAT-Mini: dim 64, depths (3,4,6,5), heads (2,4,8,16), k=7; 19,984,174 params (paper 20M)."""
    return NAT(**kwargs)


@register_model
def nat_test_tiny(**kwargs: Any) -> NAT:
    """Test variant: dim 16, one block per level, kernel 3."""
    cfg: dict[str, Any] = dict(
        embed_dim=16,
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 2, 4),
        kernel_size=3,
        num_classes=10,
        drop_path_rate=0.0,
    )
    return NAT(**{**cfg, **kwargs})
