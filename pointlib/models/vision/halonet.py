"""HaloNet (Vaswani et al., CVPR 2021) on a ResNet-26-T body, as ``halonet26t`` in timm.

Core mapping: group mode where query groups and key/value groups differ. Queries are the
non-overlapping ``b x b`` blocks; each block's keys/values are the ``(b + 2h)²`` haloed window
around it. Windows reaching past the border see zero-valued keys/values (the reference pads the
projected map with zeros, and those slots stay in the softmax). The positional term is
content-relative and factorised per axis:
``bias(i, j) = q_i · R_h[Δy_ij] + q_i · R_w[Δx_ij]``.
A stride-2 block strides the query projection (``b/2 x b/2`` queries per block).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.attention import AttentionSpec, ContentRelPos, Neighborhood, attention, windows
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import check_image, classifier, init_conv_fan_out

__all__ = ["HaloAttention", "HaloNet", "halo_neighborhood", "halonet26t", "halonet_test_tiny"]


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> optional ReLU. Shapes: ``[B, C, H, W] -> [B, C', H', W']``."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()


@functools.lru_cache(maxsize=32)
def halo_neighborhood(h: int, w: int, block: int, halo: int, stride: int = 1) -> Neighborhood:
    """Group-mode neighbourhood of HaloNet blocks on an ``h x w`` key/value grid.

    Keys of group ``g`` are its ``(block + 2 halo)²`` haloed window; slots outside the image point
    at token ``h*w``, one past the last, where the caller appends an all-zero key/value token
    (zero padding, as the reference). Queries are the ``(block/stride)²`` tokens of the block on
    the ``(h/stride) x (w/stride)`` query grid. ``rel = (dy, dx)`` is the key's position in its
    window minus ``halo`` minus the query's position in its block, in query-grid units (for
    ``stride=1`` the plain pixel offset; for ``stride=2`` the reference's convention).

    Returns:
        ``Neighborhood(mode="group", index (1, G, win²), q_index (1, G, bq²),
        rel (1, G, bq², win², 2))``.
    """
    win, bq = block + 2 * halo, block // stride
    kv = windows(h, w, block, halo, border="zero")
    qn = windows(h // stride, w // stride, bq)
    kp = torch.arange(win) - halo
    qp = torch.arange(bq)
    d = kp[None, :] - qp[:, None]  # (bq, win)
    dy = d[:, None, :, None].expand(bq, bq, win, win).reshape(bq * bq, win * win)
    dx = d[None, :, None, :].expand(bq, bq, win, win).reshape(bq * bq, win * win)
    g = kv.index.shape[1]
    rel = torch.stack([dy, dx], -1).float()[None, None].expand(1, g, -1, -1, -1)
    return Neighborhood(mode="group", index=kv.index, q_index=qn.index, rel=rel)


class HaloAttention(nn.Module):
    """Blocked local self-attention with haloed key/value windows (core group mode).

    Args:
        dim: input channels.
        dim_out: output channels (value width); defaults to ``dim``.
        num_heads: heads ``H``.
        block_size: query block side ``b``.
        halo_size: halo ``h`` (key window side ``b + 2h``).
        stride: 1, or 2 for a strided query projection.
        qkv_bias: bias on the projections.

    Shapes:
        input ``[B, C, H, W]`` (``H, W`` multiples of ``b``); output ``[B, C_out, H/s, W/s]``.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int | None = None,
        num_heads: int = 8,
        block_size: int = 8,
        halo_size: int = 3,
        stride: int = 1,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        dim_out = dim_out or dim
        if dim_out % num_heads:
            raise ValueError(f"dim_out {dim_out} is not divisible by num_heads {num_heads}")
        if stride not in (1, 2) or block_size % stride:
            raise ValueError(f"stride must be 1 or 2 and divide block_size, got {stride}")
        self.num_heads = num_heads
        self.dim_head = dim_out // num_heads
        self.block_size, self.halo_size, self.stride = block_size, halo_size, stride
        self.win = block_size + 2 * halo_size
        self.scale = self.dim_head**-0.5
        self.q = nn.Conv2d(dim, dim_out, 1, stride=stride, bias=qkv_bias)
        self.kv = nn.Conv2d(dim, 2 * dim_out, 1, bias=qkv_bias)  # [k (all heads); v (all heads)]
        # content-relative logits, one table per axis over offsets in [-(win-1), win-1]
        self.pos = ContentRelPos(self.dim_head, tables=(2 * self.win - 1, 2 * self.win - 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.q.weight.shape[1] ** -0.5
        nn.init.trunc_normal_(self.q.weight, std=std)
        nn.init.trunc_normal_(self.kv.weight, std=std)
        for table in self.pos.tables:
            nn.init.trunc_normal_(table, std=self.scale)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        bs, nh, d, s = self.block_size, self.num_heads, self.dim_head, self.stride
        if h % bs or w % bs:
            raise ValueError(f"HaloAttention: feature map {h}x{w} not divisible by block {bs}")
        nbr = halo_neighborhood(h, w, bs, self.halo_size, s).to(x.device)
        q = self.q(x).flatten(2).transpose(1, 2).reshape(b, -1, nh, d).transpose(1, 2)
        k, v = self.kv(x).flatten(2).view(b, 2, nh, d, h * w).permute(1, 0, 2, 4, 3)
        pad = k.new_zeros(b, nh, 1, d)  # the zero token that out-of-image halo slots point at
        k, v = torch.cat([k, pad], 2), torch.cat([v, pad], 2)
        bias = self.pos(q, nbr)  # [B, H, G, bq², win²]
        out = attention(q, k, v, nbr, AttentionSpec(scale=self.scale), bias=bias)  # [B, H, Nq, d]
        return out.transpose(2, 3).reshape(b, nh * d, h // s, w // s)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """Projection (1x1 conv + BN) when the width or stride changes, else identity."""
    if cin != cout or stride != 1:
        return ConvNormAct(cin, cout, 1, stride, act=False)
    return nn.Identity()


class Bottleneck(nn.Module):
    """ResNet bottleneck ``1x1 -> 3x3(stride) -> 1x1`` + projection shortcut when needed."""

    def __init__(self, cin: int, cout: int, stride: int, ratio: float = 0.25) -> None:
        super().__init__()
        mid = int(cout * ratio)
        self.shortcut = _shortcut(cin, cout, stride)
        self.conv1_1x1 = ConvNormAct(cin, mid, 1)
        self.conv2_kxk = ConvNormAct(mid, mid, 3, stride)
        self.conv3_1x1 = ConvNormAct(mid, cout, 1, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv3_1x1(self.conv2_kxk(self.conv1_1x1(x)))
        return self.act(y + self.shortcut(x))


class HaloBlock(nn.Module):
    """Bottleneck whose 3x3 conv is replaced by halo attention (+ BN-ReLU)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        ratio: float,
        num_heads: int,
        block_size: int,
        halo_size: int,
    ) -> None:
        super().__init__()
        mid = int(cout * ratio)
        self.shortcut = _shortcut(cin, cout, stride)
        self.conv1_1x1 = ConvNormAct(cin, mid, 1)
        self.self_attn = HaloAttention(mid, mid, num_heads, block_size, halo_size, stride)
        self.post_attn = nn.BatchNorm2d(mid)
        self.conv3_1x1 = ConvNormAct(mid, cout, 1, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.post_attn(self.self_attn(self.conv1_1x1(x))))
        return self.act(self.conv3_1x1(y) + self.shortcut(x))


class HaloNet(nn.Module):
    """ResNet-T body with halo-attention blocks.

    Args:
        stem_chs: width after the 3-conv ("tiered") stem: ``(3/8, 1/2, 1) * stem_chs``.
        channels: output width per stage.
        strides: stride per stage.
        blocks: per stage, the block types (``"bottle"`` or ``"halo"``) in order.
        ratio: bottleneck width ratio.
        num_heads, block_size, halo_size: halo attention settings.

    Shapes:
        input ``[B, C_in, H, W]`` (``H, W`` multiples of ``block_size`` times the largest stride
        at which a halo block sees its input); output ``[B, num_classes]``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        stem_chs: int = 64,
        channels: Sequence[int] = (256, 512, 1024, 2048),
        strides: Sequence[int] = (1, 2, 2, 2),
        blocks: Sequence[Sequence[str]] = (
            ("bottle", "bottle"),
            ("bottle", "bottle"),
            ("bottle", "halo"),
            ("halo", "halo"),
        ),
        ratio: float = 0.25,
        num_heads: int = 8,
        block_size: int = 8,
        halo_size: int = 2,
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        self.num_features = channels[-1]
        self.block_size = block_size
        self.stem = nn.Sequential()
        self.stem.conv1 = ConvNormAct(in_chans, 3 * stem_chs // 8, 3, 2)
        self.stem.conv2 = ConvNormAct(3 * stem_chs // 8, stem_chs // 2, 3)
        self.stem.conv3 = ConvNormAct(stem_chs // 2, stem_chs, 3)
        self.stem.pool = nn.MaxPool2d(3, 2, 1)
        stages, cin, reduction = [], stem_chs, 4
        self.attn_reduction = 0  # largest stride at which a halo block sees its input
        for cout, stride, kinds in zip(channels, strides, blocks):
            stage = []
            for i, kind in enumerate(kinds):
                s = stride if i == 0 else 1
                if kind == "bottle":
                    stage.append(Bottleneck(cin, cout, s, ratio))
                elif kind == "halo":
                    self.attn_reduction = max(self.attn_reduction, reduction)
                    stage.append(HaloBlock(cin, cout, s, ratio, num_heads, block_size, halo_size))
                else:
                    raise ValueError(f"unknown block type {kind!r}")
                cin = cout
                reduction *= s
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Module()
        self.head.fc = classifier(cin, num_classes)
        self.apply(init_conv_fan_out)
        for m in self.modules():
            if isinstance(m, HaloAttention):
                m.reset_parameters()
            if isinstance(m, Bottleneck | HaloBlock):
                nn.init.zeros_(m.conv3_1x1.bn.weight)  # residual branches start at zero

    def forward_features(self, x: Tensor) -> Tensor:
        """Images -> final feature map ``[B, C, H/32, W/32]``."""
        check_image(
            x, self.in_chans, multiple=self.attn_reduction * self.block_size, model="HaloNet"
        )
        return self.stages(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head.fc(self.forward_features(x).mean((2, 3)))


@register_model
def halonet26t(**kwargs: Any) -> HaloNet:
    """HaloNet-26T (timm): halo blocks in the last two stages; 12,480,288 params (timm 12.48M).

    Inputs must be multiples of 256 px (block 8 at stride 32, as timm).
    """
    return HaloNet(**kwargs)


@register_model
def halonet_test_tiny(**kwargs: Any) -> HaloNet:
    """Test variant: widths 32-128, block 2, halo 1, 2 heads; inputs multiples of 32 px."""
    cfg: dict[str, Any] = dict(
        stem_chs=16,
        channels=(32, 64, 96, 128),
        blocks=(("bottle",), ("bottle",), ("bottle", "halo"), ("halo",)),
        num_heads=2,
        block_size=2,
        halo_size=1,
        num_classes=10,
    )
    return HaloNet(**{**cfg, **kwargs})
