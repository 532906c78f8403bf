"""L2ViT (Zheng et al., "Breaking the Low-Rank Dilemma of Linear Attention", arXiv 2501.16182).

A four-stage hierarchical transformer whose blocks alternate (within each stage) between

* **LWA** (local window attention): CPE (3x3 depthwise residual) -> LN -> window attention over
  non-overlapping ``7 x 7`` windows (core group mode over :func:`~pointlib.attention.windows`;
  the map is zero-padded to whole windows after the norm and padded tokens stay visible as keys,
  as the reference) -> residual -> CPE -> MLP;
* **LGA** (linear global attention): CPE -> LN -> ReLU linear attention with a learned per-head
  temperature and a denominator clamped at 100
  (:func:`pointlib.attention.linear.clamped_linear_attention`) -> residual -> **LCM** (local
  concentration: LN, 7x7 depthwise conv, GELU, BN, 7x7 depthwise conv, residual) -> MLP.

Stem: two stride-2 3x3 conv+BN (ReLU between) and a LayerNorm; downsampling: LayerNorm then a
2x2 stride-2 conv. Module names follow the official ``classification/models/l2vit.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.attention import NeighborhoodAttention, windows
from pointlib.attention.linear import clamped_linear_attention
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import (
    Mlp,
    check_image,
    classifier,
    drop_path_or_identity,
    drop_path_rates,
)

__all__ = ["L2ViT", "LinearGlobalAttention", "l2vit_test_tiny", "l2vit_tiny"]


class _CPE(nn.Module):
    """``x + dwconv3x3(x)`` on tokens ``[B, N, C]`` of an ``h x w`` map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        B, _, C = x.shape
        return x + self.proj(x.transpose(1, 2).reshape(B, C, h, w)).flatten(2).transpose(1, 2)


class LinearGlobalAttention(nn.Module):
    """ReLU linear attention, temperature ``(H, 1, 1)`` (init ``D^-1/2``), denominator >= 100.

    Shapes:
        input/output ``[B, N, C]``.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.temperature = nn.Parameter(torch.full((heads, 1, 1), self.head_dim**-0.5))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = clamped_linear_attention(q, k, v, self.temperature)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class _LCM(nn.Module):
    """Local concentration module: 7x7 dwconv, GELU, BN, 7x7 dwconv (tokens in, tokens out)."""

    def __init__(self, dim: int, kernel: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.act = nn.GELU()
        self.bn = nn.BatchNorm2d(dim)
        self.conv2 = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        B, _, C = x.shape
        m = x.transpose(1, 2).reshape(B, C, h, w)
        return self.conv2(self.bn(self.act(self.conv1(m)))).flatten(2).transpose(1, 2)


class _LWABlock(nn.Module):
    def __init__(
        self, dim: int, heads: int, window: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.window = window
        self.cpe = nn.ModuleList([_CPE(dim), _CPE(dim)])
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention(dim, heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        B, N, C = x.shape
        ws = self.window
        shortcut = self.cpe[0](x, h, w)
        t = self.norm1(shortcut).view(B, h, w, C)
        pad_b, pad_r = (-h) % ws, (-w) % ws
        t = F.pad(t, (0, 0, 0, pad_r, 0, pad_b))  # padded tokens stay visible (reference)
        hp, wp = h + pad_b, w + pad_r
        t = self.attn(t.reshape(B, hp * wp, C), windows(hp, wp, ws).to(x.device))
        t = t.view(B, hp, wp, C)[:, :h, :w].reshape(B, N, C)
        x = self.cpe[1](shortcut + self.drop_path(t), h, w)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _LGABlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.cpe = nn.ModuleList([_CPE(dim)])
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LinearGlobalAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm3 = nn.LayerNorm(dim)
        self.local_mp = _LCM(dim)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        x = self.cpe[0](x, h, w)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.local_mp(self.norm3(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _ConvStem(nn.Module):
    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, dim // 2, 3, 2, 1),
            nn.BatchNorm2d(dim // 2),
            nn.ReLU(),
            nn.Conv2d(dim // 2, dim, 3, 2, 1),
            nn.BatchNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class _PatchEmbed(nn.Module):
    """Stage 0: conv stem then LN; later stages: LN on tokens then a 2x2 stride-2 conv.
    Maps not divisible by the stride are zero-padded right/bottom (as the reference)."""

    def __init__(self, in_chans: int, dim: int, first: bool) -> None:
        super().__init__()
        self.first, self.stride = first, 4 if first else 2
        self.proj: nn.Module = _ConvStem(in_chans, dim) if first else nn.Conv2d(in_chans, dim, 2, 2)
        self.norm = nn.LayerNorm(dim if first else in_chans)

    def forward(self, x: Tensor, h: int, w: int) -> tuple[Tensor, int, int]:
        if not self.first:  # tokens [B, N, C] -> normed map
            B, _, C = x.shape
            x = self.norm(x).transpose(1, 2).reshape(B, C, h, w)
        x = F.pad(x, (0, (-w) % self.stride, 0, (-h) % self.stride))
        x = self.proj(x)
        h, w = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        return (self.norm(x) if self.first else x), h, w


class _Stage(nn.ModuleList):
    def forward(self, x: Tensor, h: int, w: int) -> Tensor:  # type: ignore[override]
        for block in self:
            x = block(x, h, w)
        return x


class L2ViT(nn.Module):
    """L2ViT: conv stem, four stages of alternating LWA / LGA blocks, mean-pooled head.

    Args:
        in_chans, num_classes: input channels and classes (``0``: pooled features out).
        depths, dims, num_heads: blocks, widths and heads per stage (block ``j`` of a stage is
            LWA for even ``j``, LGA for odd ``j``).
        mlp_ratio: MLP hidden ratio; window_size: LWA window side.
        drop_path_rate: stochastic depth (linear over all blocks).

    Shapes:
        input ``[B, in_chans, H, W]`` (any size); output ``[B, num_classes]``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (2, 2, 6, 2),
        dims: Sequence[int] = (96, 192, 384, 768),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        mlp_ratio: float = 4.0,
        window_size: int = 7,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not len(depths) == len(dims) == len(num_heads):
            raise ValueError("depths, dims and num_heads need the same length")
        self.in_chans, self.num_classes = in_chans, num_classes
        self.downsample_layers = nn.ModuleList(
            _PatchEmbed(in_chans if i == 0 else dims[i - 1], dims[i], i == 0)
            for i in range(len(dims))
        )
        rates = iter(drop_path_rates(drop_path_rate, sum(depths)))
        self.stages = nn.ModuleList()
        for dim, depth, heads in zip(dims, depths, num_heads):
            blocks: list[nn.Module] = []
            for j in range(depth):
                r = next(rates)
                if j % 2 == 0:
                    blocks.append(_LWABlock(dim, heads, window_size, mlp_ratio, r))
                else:
                    blocks.append(_LGABlock(dim, heads, mlp_ratio, r))
            self.stages.append(_Stage(blocks))
        self.norm = nn.LayerNorm(dims[-1])
        self.head = classifier(dims[-1], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Mean-pooled, normalised last-stage tokens ``[B, dims[-1]]``."""
        h, w = check_image(x, self.in_chans, model="L2ViT")
        for down, stage in zip(self.downsample_layers, self.stages):
            x, h, w = down(x, h, w)
            x = stage(x, h, w)
        return self.norm(x).mean(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


def _build(kwargs: dict[str, Any], **defaults: Any) -> L2ViT:
    return L2ViT(**{**defaults, **kwargs})


@register_model
def l2vit_tiny(**kwargs: Any) -> L2ViT:
    """L2ViT-T (official ``L2ViT_Tiny``; paper 29M parameters, 83.1%)."""
    return _build(kwargs)


@register_model
def l2vit_test_tiny(**kwargs: Any) -> L2ViT:
    """A small L2ViT for tests: two blocks (LWA + LGA) per stage, 4-px windows, 64 px inputs."""
    return _build(
        kwargs,
        num_classes=10,
        depths=(2, 2, 2, 2),
        dims=(16, 32, 48, 64),
        num_heads=(1, 2, 2, 4),
        window_size=4,
    )
