"""DaViT (Ding et al., ECCV 2022): alternating spatial-window and channel-group attention.

Core mapping:

* spatial block: group mode over non-overlapping ``w x w`` windows (the map is zero-padded to a
  multiple of ``w`` after the norm, and padded tokens stay visible as keys, as in the reference);
* channel block: channel-token attention, i.e. the core softmax kernel on transposed tensors:
  ``out = softmax(Kᵀ V / sqrt(d)) Qᵀ`` per head, global over all positions;
* a 3x3 depthwise convolutional position encoding (CPE) before the mixer and before the MLP.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.attention import ChannelAttention, Neighborhood, NeighborhoodAttention, windows
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import (
    LayerNorm2d,
    Mlp,
    check_image,
    classifier,
    drop_path_or_identity,
    init_vit_weights,
)

__all__ = ["DaViT", "davit_test_tiny", "davit_tiny"]


class ConvPosEnc(nn.Module):
    """``x + dwconv3x3(x)``. Shapes: input/output ``[B, C, H, W]``."""

    def __init__(self, dim: int, k: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(x)


@functools.lru_cache(maxsize=32)
def _windows(h: int, w: int, size: int) -> Neighborhood:
    return windows(h, w, size)


class _CPEBlock(nn.Module):
    """CPE -> norm -> mixer -> CPE -> norm -> MLP; subclasses define the mixer step ``mix``.

    Shapes:
        input/output ``[B, C, H, W]``.
    """

    def __init__(
        self, dim: int, attn: Callable[[], nn.Module], mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.cpe1 = ConvPosEnc(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn()  # built after cpe1, as the reference (same parameter order)
        self.drop_path1 = drop_path_or_identity(drop_path)
        self.cpe2 = ConvPosEnc(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path2 = drop_path_or_identity(drop_path)

    def mix(self, x: Tensor, h: int, w: int) -> Tensor:
        """The token mixer on ``norm1``-ed tokens ``[B, h*w, C]``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x = self.cpe1(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        x = x + self.drop_path1(self.mix(self.norm1(x), h, w))
        x = self.cpe2(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.transpose(1, 2).reshape(b, c, h, w)


class SpatialBlock(_CPEBlock):
    """CPE -> window attention -> CPE -> MLP. Shapes: input/output ``[B, C, H, W]``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        attn = functools.partial(NeighborhoodAttention, dim, num_heads, qkv_bias=qkv_bias)
        super().__init__(dim, attn, mlp_ratio, drop_path)
        self.window_size = window_size

    def mix(self, x: Tensor, h: int, w: int) -> Tensor:
        b, _, c = x.shape
        ws = self.window_size
        t = x.view(b, h, w, c)
        # zero-pad to whole windows; padded tokens stay visible as keys (as the reference)
        pad_b, pad_r = (-h) % ws, (-w) % ws
        t = F.pad(t, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        nbr = _windows(hp, wp, ws).to(x.device)
        t = self.attn(t.reshape(b, hp * wp, c), nbr).view(b, hp, wp, c)
        return t[:, :h, :w].reshape(b, h * w, c)


class ChannelBlock(_CPEBlock):
    """CPE -> channel attention -> CPE -> MLP. Shapes: input/output ``[B, C, H, W]``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        attn = functools.partial(ChannelAttention, dim, num_heads, qkv_bias=qkv_bias)
        super().__init__(dim, attn, mlp_ratio, drop_path)

    def mix(self, x: Tensor, h: int, w: int) -> Tensor:
        return self.attn(x)


class Stem(nn.Module):
    """7x7 stride-4 convolution + LayerNorm2d; pads right/bottom to a multiple of 4."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 7, stride=4, padding=3)
        self.norm = LayerNorm2d(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % 4, 0, (-h) % 4))
        return self.norm(self.conv(x))


class Downsample(nn.Module):
    """LayerNorm2d + 2x2 stride-2 conv (pads odd maps): ``[B,C,H,W]`` -> ``[B,C',H/2,W/2]``."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(in_chs)
        self.conv = nn.Conv2d(in_chs, out_chs, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = F.pad(self.norm(x), (0, w % 2, 0, h % 2))
        return self.conv(x)


class DaViTStage(nn.Module):
    """Optional downsample, then ``depth`` (spatial, channel) block pairs."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        downsample: bool,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path: Sequence[float],
    ) -> None:
        super().__init__()
        self.downsample = Downsample(in_chs, out_chs) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(
                    SpatialBlock(out_chs, num_heads, window_size, mlp_ratio, qkv_bias, dp),
                    ChannelBlock(out_chs, num_heads, mlp_ratio, qkv_bias, dp),
                )
                for dp in drop_path[:depth]
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class Head(nn.Module):
    """Global average pool -> LayerNorm -> Linear. ``[B, C, H, W]`` -> ``[B, classes]``."""

    def __init__(self, dim: int, num_classes: int, drop: float = 0.0) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.drop = nn.Dropout(drop)
        self.fc = classifier(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x.mean((2, 3), keepdim=True)).flatten(1)
        return self.fc(self.drop(x))


class DaViT(nn.Module):
    """DaViT classifier (any input size; stride 32).

    Args:
        depths: (spatial, channel) pairs per stage.
        embed_dims: width per stage.
        num_heads: heads (= channel groups) per stage.
        window_size: spatial window side ``w``.

    Shapes:
        input ``[B, C_in, H, W]``; output ``[B, num_classes]``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (1, 1, 3, 1),
        embed_dims: Sequence[int] = (96, 192, 384, 768),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not len(depths) == len(embed_dims) == len(num_heads):
            raise ValueError("depths, embed_dims and num_heads need one entry per stage")
        self.in_chans, self.num_classes = in_chans, num_classes
        self.num_features = embed_dims[-1]
        self.stem = Stem(in_chans, embed_dims[0])
        rates = [r.tolist() for r in _split_rates(drop_path_rate, depths)]
        self.stages = nn.Sequential(
            *(
                DaViTStage(
                    embed_dims[max(i - 1, 0)],
                    embed_dims[i],
                    depths[i],
                    i > 0,
                    num_heads[i],
                    window_size,
                    mlp_ratio,
                    qkv_bias,
                    rates[i],
                )
                for i in range(len(depths))
            )
        )
        self.head = Head(embed_dims[-1], num_classes, drop_rate)
        self.apply(init_vit_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Images ``[B, C_in, H, W]`` -> last-stage map ``[B, C, H/32, W/32]``."""
        check_image(x, self.in_chans, model="DaViT")
        return self.stages(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


def _split_rates(rate: float, depths: Sequence[int]) -> list[Any]:
    return list(torch.linspace(0, rate, sum(depths)).split(list(depths)))


@register_model
def davit_tiny(**kwargs: Any) -> DaViT:
    """DaViT-T: depths (1,1,3,1), widths 96-768; 28,360,168 params (paper 28.3M, timm 28.36M)."""
    return DaViT(**kwargs)


@register_model
def davit_test_tiny(**kwargs: Any) -> DaViT:
    """Test variant: widths 16-64, window 2, one block pair per stage."""
    cfg: dict[str, Any] = dict(
        depths=(1, 1, 1, 1),
        embed_dims=(16, 32, 48, 64),
        num_heads=(2, 2, 4, 4),
        window_size=2,
        num_classes=10,
    )
    return DaViT(**{**cfg, **kwargs})
