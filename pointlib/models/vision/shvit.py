"""SHViT (Yun & Ro, "SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design",
CVPR 2024).

A 16x patchify stem (four stride-2 3x3 convolutions) and three stages of
``dwconv -> mixer -> FFN`` residual blocks (conv + BatchNorm everywhere). The token mixer,
**single-head self-attention (SHSA)**, runs on the first ``pdim`` channels only:
``x1 -> GroupNorm -> (q, k, v) = 1x1 conv+BN`` with ``q, k`` of width ``qk_dim`` and ``v`` of width
``pdim``, global attention with one head (the core's global mode, ``H = 1``, ``scale =
qk_dim^-1/2``), then ``proj(ReLU([x1'; x2]))`` over all channels, the untouched channels ``x2``
passed through. Stage 1 of S1-S4 has no attention (``type "i"``).

Module names follow timm's ``shvit.py`` (``c``/``bn`` pairs, ``Residual.m``), so timm checkpoints
load with identical keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pointlib.attention import attention
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import check_image

__all__ = ["SHViT", "SingleHeadAttention", "shvit_s1", "shvit_test_tiny"]


class _ConvBN(nn.Sequential):
    """Bias-free convolution + BatchNorm (``c``, ``bn``)."""

    def __init__(
        self, cin: int, cout: int, k: int = 1, s: int = 1, p: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class _Residual(nn.Module):
    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: Tensor) -> Tensor:
        return x + self.m(x)


class _FFN(nn.Module):
    """1x1 conv+BN, ReLU, 1x1 conv+BN (NCHW)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.pw1 = _ConvBN(dim, hidden)
        self.act = nn.ReLU()
        self.pw2 = _ConvBN(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw2(self.act(self.pw1(x)))


class _SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with ``round(C / 4)`` to a multiple of 8 reduced channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        rd = max(8, int(dim * 0.25 + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(dim, rd, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class _PatchMerging(nn.Module):
    """Inverted-bottleneck stride-2 downsampling: 1x1 (4x), 3x3 dw stride 2, SE, 1x1."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        hid = 4 * dim
        self.conv1 = _ConvBN(dim, hid)
        self.act1 = nn.ReLU()
        self.conv2 = _ConvBN(hid, hid, 3, 2, 1, groups=hid)
        self.act2 = nn.ReLU()
        self.se = _SqueezeExcite(hid)
        self.conv3 = _ConvBN(hid, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.se(self.act2(self.conv2(self.act1(self.conv1(x))))))


class SingleHeadAttention(nn.Module):
    """SHSA: one-head global attention on a ``pdim``-channel slice, the rest passed through.

    Shapes:
        input/output ``[B, dim, H, W]``.
    """

    def __init__(self, dim: int, qk_dim: int, pdim: int) -> None:
        super().__init__()
        if not 0 < pdim <= dim:
            raise ValueError(f"pdim must be in (0, dim={dim}], got {pdim}")
        self.dim, self.qk_dim, self.pdim = dim, qk_dim, pdim
        self.pre_norm = nn.GroupNorm(1, pdim)
        self.qkv = _ConvBN(pdim, 2 * qk_dim + pdim)
        self.proj = nn.Sequential(nn.ReLU(), _ConvBN(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        B, _, h, w = x.shape
        x1, x2 = x.split([self.pdim, self.dim - self.pdim], dim=1)
        qkv = self.qkv(self.pre_norm(x1)).flatten(2).transpose(1, 2)  # [B, N, 2qk + pdim]
        q, k, v = (t[:, None] for t in qkv.split([self.qk_dim, self.qk_dim, self.pdim], -1))
        x1 = attention(q, k, v)[:, 0]  # global mode, one head, scale qk_dim^-1/2
        x1 = x1.transpose(1, 2).reshape(B, self.pdim, h, w)
        return self.proj(torch.cat([x1, x2], dim=1))


class _Block(nn.Module):
    """``x + dwconv(x)``, ``x + SHSA(x)`` (type ``"s"``; none for ``"i"``), ``x + FFN(x)``."""

    def __init__(self, dim: int, qk_dim: int, pdim: int, kind: str) -> None:
        super().__init__()
        self.conv = _Residual(_ConvBN(dim, dim, 3, 1, 1, groups=dim))
        mixer = SingleHeadAttention(dim, qk_dim, pdim)
        self.mixer = _Residual(mixer) if kind == "s" else nn.Identity()
        self.ffn = _Residual(_FFN(dim, 2 * dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn(self.mixer(self.conv(x)))


class _Stage(nn.Module):
    def __init__(self, prev: int, dim: int, qk_dim: int, pdim: int, kind: str, depth: int) -> None:
        super().__init__()
        self.downsample: nn.Module = nn.Identity()
        if prev != dim:
            self.downsample = nn.Sequential(
                _Residual(_ConvBN(prev, prev, 3, 1, 1, groups=prev)),
                _Residual(_FFN(prev, 2 * prev)),
                _PatchMerging(prev, dim),
                _Residual(_ConvBN(dim, dim, 3, 1, 1, groups=dim)),
                _Residual(_FFN(dim, 2 * dim)),
            )
        self.blocks = nn.Sequential(*(_Block(dim, qk_dim, pdim, kind) for _ in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class _NormLinear(nn.Sequential):
    """BatchNorm1d then Linear (``bn``, ``l``)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.l = nn.Linear(dim, num_classes)  # timm's name


class SHViT(nn.Module):
    """Single-Head Vision Transformer.

    Args:
        in_chans, num_classes: input channels and classes (``0``: pooled features out).
        embed_dim: widths of the three stages (the stem ends at ``embed_dim[0]``).
        partial_dim: channels that go through attention (``pdim``) per stage.
        qk_dim: query/key width per stage.
        depth: blocks per stage.
        types: ``"s"`` (SHSA) or ``"i"`` (no mixer) per stage.

    Shapes:
        input ``[B, in_chans, H, W]`` (any size; 16x stem, then two stride-2 stages);
        output ``[B, num_classes]``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: Sequence[int] = (128, 224, 320),
        partial_dim: Sequence[int] = (32, 48, 68),
        qk_dim: Sequence[int] = (16, 16, 16),
        depth: Sequence[int] = (2, 4, 5),
        types: Sequence[str] = ("i", "s", "s"),
    ) -> None:
        super().__init__()
        if not len(embed_dim) == len(partial_dim) == len(qk_dim) == len(depth) == len(types):
            raise ValueError("embed_dim, partial_dim, qk_dim, depth and types differ in length")
        if any(t not in ("s", "i") for t in types):
            raise ValueError(f"types must be 's' or 'i', got {types}")
        self.in_chans, self.num_classes = in_chans, num_classes
        c = embed_dim[0]
        self.patch_embed = nn.Sequential(
            _ConvBN(in_chans, c // 8, 3, 2, 1),
            nn.ReLU(),
            _ConvBN(c // 8, c // 4, 3, 2, 1),
            nn.ReLU(),
            _ConvBN(c // 4, c // 2, 3, 2, 1),
            nn.ReLU(),
            _ConvBN(c // 2, c, 3, 2, 1),
        )
        stages, prev = [], c
        for i in range(len(embed_dim)):
            stages.append(_Stage(prev, embed_dim[i], qk_dim[i], partial_dim[i], types[i], depth[i]))
            prev = embed_dim[i]
        self.stages = nn.Sequential(*stages)
        self.num_features = prev
        self.head: nn.Module = _NormLinear(prev, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # zero-init the last BN of the residual branches, as the reference: every FFN, the
        # blocks' depthwise convolutions and the SHSA projections
        for m in self.modules():
            if isinstance(m, _FFN):
                nn.init.zeros_(m.pw2.bn.weight)
            elif isinstance(m, _Block):
                nn.init.zeros_(m.conv.m.bn.weight)
                if isinstance(m.mixer, _Residual):
                    nn.init.zeros_(m.mixer.m.proj[1].bn.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's map ``[B, C, H/64, W/64]`` (ceil at odd sizes)."""
        check_image(x, self.in_chans, model="SHViT")
        return self.stages(self.patch_embed(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x).mean((2, 3)))


def _build(kwargs: dict[str, Any], **defaults: Any) -> SHViT:
    return SHViT(**{**defaults, **kwargs})


@register_model
def shvit_s1(**kwargs: Any) -> SHViT:
    """SHViT-S1 (timm ``shvit_s1``; paper 6.3M parameters, 72.8%)."""
    return _build(kwargs)


@register_model
def shvit_test_tiny(**kwargs: Any) -> SHViT:
    """A small SHViT for tests (64 px inputs: 4x4, 2x2 and 1x1 stage maps)."""
    return _build(
        kwargs,
        num_classes=10,
        embed_dim=(16, 32, 48),
        partial_dim=(8, 12, 16),
        qk_dim=(8, 8, 8),
        depth=(1, 1, 1),
        types=("s", "s", "s"),
    )
