"""BiFormer (Zhu et al., CVPR 2023): bi-level routing attention, BiFormer-T.

Core mapping: group mode with a content-built index. The map is split into ``n_win x n_win``
regions (:func:`pointlib.attention.windows`); region descriptors are the mean query and key, each
region keeps the ``topk`` regions with the largest ``mean_q · mean_k`` (:func:`route`), and every
token attends over all tokens of its region's routed regions (``q_index`` = the region's own
tokens). A 5x5 depthwise LePE on ``v`` is added to the output. As in the reference, the logit
scale is ``qk_dim^-1/2`` (the full query width, not the head width) and routing carries no
gradient. The last stage uses plain global attention (8 heads) with a LePE on its input.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from pointlib.attention import AttentionSpec, Neighborhood, attention, route, windows
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import (
    PreNormBlock,
    check_image,
    classifier,
    drop_path_rates,
    init_vit_weights,
)

__all__ = ["BiFormer", "BiLevelRoutingAttention", "biformer_test_tiny", "biformer_tiny"]


@functools.lru_cache(maxsize=32)
def _regions(h: int, w: int, n_win: int) -> Neighborhood:
    return windows(h, w, (h // n_win, w // n_win))


class BiLevelRoutingAttention(nn.Module):
    """Routed region attention on channels-last maps.

    Args:
        dim: channels ``C`` (value width).
        num_heads: heads.
        n_win: regions per side.
        topk: routed regions per region.
        qk_dim: query/key width (default ``dim``).
        side_dwconv: LePE kernel size.

    Shapes:
        input/output ``[B, H, W, C]`` (``H, W`` multiples of ``n_win``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        n_win: int = 7,
        topk: int = 4,
        qk_dim: int | None = None,
        side_dwconv: int = 5,
    ) -> None:
        super().__init__()
        self.dim, self.qk_dim = dim, qk_dim or dim
        if self.qk_dim % num_heads or dim % num_heads:
            raise ValueError(f"qk_dim {self.qk_dim} and dim {dim} must be divisible by {num_heads}")
        self.num_heads, self.n_win, self.topk = num_heads, n_win, topk
        self.scale = self.qk_dim**-0.5
        self.qkv = nn.Linear(dim, 2 * self.qk_dim + dim)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim)
        self.wo = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        if h % self.n_win or w % self.n_win:
            raise ValueError(
                f"BiLevelRoutingAttention: map {h}x{w} not divisible by n_win={self.n_win}"
            )
        tokens = x.reshape(b, h * w, c)
        q, k, v = self.qkv(tokens).split([self.qk_dim, self.qk_dim, self.dim], dim=-1)
        regions = _regions(h, w, self.n_win).to(x.device)
        nbr = route(q, k, regions, min(self.topk, regions.index.shape[1]), scale=self.scale)
        nh = self.num_heads

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, h * w, nh, -1).transpose(1, 2)

        out = attention(heads(q), heads(k), heads(v), nbr, AttentionSpec(scale=self.scale))
        out = out.transpose(1, 2).reshape(b, h, w, c)
        lepe = self.lepe(v.transpose(1, 2).reshape(b, c, h, w)).permute(0, 2, 3, 1)
        return self.wo(out + lepe)


class AttentionLePE(nn.Module):
    """Global attention + 5x5 depthwise LePE of the input. Shapes: ``[B, H, W, C]``."""

    def __init__(self, dim: int, num_heads: int = 8, side_dwconv: int = 5) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        t = x.reshape(b, h * w, c)
        q, k, v = self.qkv(t).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v).transpose(1, 2).reshape(b, h, w, c)
        return self.proj(out + self.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class BiFormerBlock(PreNormBlock):
    """``x + dwconv3x3(x)``, then pre-norm attention and MLP. Shapes: ``[B, C, H, W]``."""

    def __init__(
        self, dim: int, attn: nn.Module, mlp_ratio: float = 3.0, drop_path: float = 0.0
    ) -> None:
        pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)  # created first, as before
        super().__init__(dim, attn, mlp_ratio, drop_path)
        self.pos_embed = pos_embed

    def forward(self, x: Tensor) -> Tensor:
        x = (x + self.pos_embed(x)).permute(0, 2, 3, 1)
        return super().forward(x).permute(0, 3, 1, 2)


class BiFormer(nn.Module):
    """BiFormer classifier.

    Args:
        depths: blocks per stage.
        embed_dims: width per stage.
        topks: routed regions per stage; ``-1`` selects global attention with LePE.
        head_dim: head width of the routed stages.
        n_win: regions per side (images must be multiples of ``32 * n_win`` for routed stages).

    Shapes:
        input ``[B, C_in, H, W]``; output ``[B, num_classes]``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (2, 2, 8, 2),
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        topks: Sequence[int] = (1, 4, 16, -1),
        head_dim: int = 32,
        n_win: int = 7,
        mlp_ratio: float = 3.0,
        global_heads: int = 8,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        self.num_features = embed_dims[-1]
        self.n_win = n_win
        routed = [i for i, t in enumerate(topks) if t > 0]
        self.multiple = n_win * 2 ** (max(routed) + 2) if routed else 1
        d0 = embed_dims[0]
        self.downsample_layers = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(in_chans, d0 // 2, 3, stride=2, padding=1),
                    nn.BatchNorm2d(d0 // 2),
                    nn.GELU(),
                    nn.Conv2d(d0 // 2, d0, 3, stride=2, padding=1),
                    nn.BatchNorm2d(d0),
                )
            ]
            + [
                nn.Sequential(
                    nn.Conv2d(embed_dims[i], embed_dims[i + 1], 3, stride=2, padding=1),
                    nn.BatchNorm2d(embed_dims[i + 1]),
                )
                for i in range(len(embed_dims) - 1)
            ]
        )
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        for i, (depth, dim, topk) in enumerate(zip(depths, embed_dims, topks)):
            blocks = []
            for j in range(depth):
                attn: nn.Module = (
                    BiLevelRoutingAttention(dim, dim // head_dim, n_win, topk)
                    if topk > 0
                    else AttentionLePE(dim, global_heads)
                )
                blocks.append(BiFormerBlock(dim, attn, mlp_ratio, rates[sum(depths[:i]) + j]))
            self.stages.append(nn.Sequential(*blocks))
        self.norm = nn.BatchNorm2d(embed_dims[-1])
        self.head = classifier(embed_dims[-1], num_classes)
        self.apply(init_vit_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Images -> last-stage map ``[B, C, H/32, W/32]``."""
        check_image(x, self.in_chans, multiple=self.multiple, model="BiFormer")
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x).mean((2, 3)))


@register_model
def biformer_tiny(**kwargs: Any) -> BiFormer:
    """BiFormer-T: depths (2,2,8,2), widths 64-512; 13,142,760 params (paper 13.1M)."""
    return BiFormer(**kwargs)


@register_model
def biformer_test_tiny(**kwargs: Any) -> BiFormer:
    """Test variant: widths 16-64, 2x2 regions, routing in stages 1-3; inputs multiples of 32 px."""
    cfg: dict[str, Any] = dict(
        depths=(1, 1, 1, 1),
        embed_dims=(16, 32, 48, 64),
        topks=(1, 2, 2, -1),
        head_dim=8,
        n_win=2,
        global_heads=4,
        num_classes=10,
    )
    return BiFormer(**{**cfg, **kwargs})
