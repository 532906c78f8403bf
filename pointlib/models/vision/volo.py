"""VOLO (Yuan et al., "VOLO: Vision Outlooker for Visual Recognition", TPAMI 2022).

Stage 1 (stride 8) mixes tokens with **outlook attention**: each 3x3 window (stride 2) predicts
its own ``9 x 9`` slot weights from its pooled centre token, applies them to the window's values
and folds the results back by overlap-add. In the core this is :func:`pointlib.attention.outlook`
on the ``nn.Unfold`` windows of the map (:func:`~pointlib.attention.outlook.outlook_windows`).
Stages 2-4 (stride 16) are global ViT blocks (``NeighborhoodAttention``, global mode) after an
absolute position embedding; two class-attention blocks (CaiT-style cross mode: the CLS token is
the single query over ``[CLS; tokens]``) and the token-labelling auxiliary head finish the model.

Module names follow timm's ``volo.py``, so timm checkpoints load with identical keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pointlib.attention import NeighborhoodAttention
from pointlib.attention.outlook import OutlookAttention
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import (
    Mlp,
    PreNormBlock,
    check_image,
    classifier,
    init_vit_model_,
)

__all__ = ["VOLO", "volo_d1_224", "volo_test_tiny"]

_EPS = 1e-5  # nn.LayerNorm default, as the reference


class _MapAttention(NeighborhoodAttention):
    """Global multi-head self-attention on channels-last maps ``[B, H, W, C]``."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        B, h, w, C = x.shape
        return super().forward(x.reshape(B, h * w, C)).view(B, h, w, -1)


class _ClassBlock(nn.Module):
    """CaiT class attention: the CLS token (token 0) attends over all tokens, then an MLP.

    Shapes:
        input/output ``[B, 1 + N, C]`` (only token 0 changes).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_EPS)
        self.attn = NeighborhoodAttention(dim, heads, kv_dim=dim, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        normed = self.norm1(x)
        cls = x[:, :1] + self.attn(normed[:, :1], kv=normed)
        cls = cls + self.mlp(self.norm2(cls))
        return torch.cat([cls, x[:, 1:]], dim=1)


class _Stem(nn.Module):
    """Three convolutions (7x7 stride 2, 3x3, 3x3, BN + ReLU) and a ``p/2`` patch projection."""

    def __init__(self, in_chans: int, hidden: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()

        def cbr(cin: int, k: int, s: int) -> list[nn.Module]:
            conv = nn.Conv2d(cin, hidden, k, stride=s, padding=k // 2, bias=False)
            return [conv, nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]

        self.conv = nn.Sequential(*cbr(in_chans, 7, 2), *cbr(hidden, 3, 1), *cbr(hidden, 3, 1))
        self.proj = nn.Conv2d(hidden, embed_dim, patch_size // 2, stride=patch_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.conv(x))


class _Downsample(nn.Module):
    """2x2 stride-2 convolution on channels-last maps."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class VOLO(nn.Module):
    """Vision Outlooker: an outlooker stage, then global attention stages and class attention.

    Args:
        layers: blocks per stage; stage 0 uses outlook attention, the others global attention.
        img_size: the (square) input size; the position embedding is fixed to
            ``img_size / (2 * patch_size)`` per side.
        in_chans, num_classes: input channels and classes (``0``: pooled features out).
        patch_size: stride of the stem (4, 8 or 16).
        stem_hidden_dim: channels of the stem convolutions.
        embed_dims, num_heads: width and heads per stage (stage 0 -> 1 is a 2x2 downsample).
        mlp_ratio: MLP hidden ratio of every block.
        qkv_bias: bias in the value/qkv projections.
        kernel, stride: outlook window (padding ``kernel // 2``) and window stride.
        num_post: number of class-attention blocks.
        aux_head: add ``0.5 * max_tokens aux_head(token)`` to the logits (token labelling).
        drop_path_rate: stochastic depth of the attention stages (linear in the block index).

    Shapes:
        input ``[B, in_chans, img_size, img_size]``; output ``[B, num_classes]``.
    """

    def __init__(
        self,
        layers: Sequence[int] = (4, 4, 8, 2),
        img_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        patch_size: int = 8,
        stem_hidden_dim: int = 64,
        embed_dims: Sequence[int] = (192, 384, 384, 384),
        num_heads: Sequence[int] = (6, 12, 12, 12),
        mlp_ratio: float = 3.0,
        qkv_bias: bool = False,
        kernel: int = 3,
        stride: int = 2,
        num_post: int = 2,
        aux_head: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if patch_size not in (4, 8, 16):
            raise ValueError(f"patch_size must be 4, 8 or 16, got {patch_size}")
        if len(layers) < 2 or not (len(layers) == len(embed_dims) == len(num_heads)):
            raise ValueError("layers, embed_dims and num_heads need the same length (>= 2)")
        if len(set(embed_dims[1:])) != 1:
            raise ValueError(f"VOLO stages after the first share one width, got {embed_dims}")
        if img_size % (2 * patch_size):
            raise ValueError(f"img_size {img_size} is not divisible by 2 * patch_size")
        self.img_size, self.in_chans, self.num_classes = img_size, in_chans, num_classes
        self.patch_size = patch_size
        self.patch_embed = _Stem(in_chans, stem_hidden_dim, embed_dims[0], patch_size)
        grid = img_size // patch_size // 2
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dims[-1]))
        total = sum(layers)
        network: list[nn.Module] = []
        for i, depth in enumerate(layers):
            dim, heads = embed_dims[i], num_heads[i]
            blocks = []
            for j in range(depth):
                if i == 0:
                    mix: nn.Module = OutlookAttention(
                        dim, heads, kernel, kernel // 2, stride, qkv_bias=qkv_bias
                    )
                    dpr = 0.0  # the reference builds its outlookers without stochastic depth
                else:
                    mix = _MapAttention(dim, heads, qkv_bias=qkv_bias)
                    dpr = drop_path_rate * (j + sum(layers[:i])) / max(total - 1, 1)
                blocks.append(PreNormBlock(dim, mix, mlp_ratio, dpr, eps=_EPS))
            network.append(nn.Sequential(*blocks))
            if i == 0:
                network.append(_Downsample(dim, embed_dims[1]))
        self.network = nn.ModuleList(network)
        dim = embed_dims[-1]
        self.post_network = nn.ModuleList(
            _ClassBlock(dim, num_heads[-1], mlp_ratio, qkv_bias) for _ in range(num_post)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.aux_head = nn.Linear(dim, num_classes) if aux_head and num_classes > 0 else None
        self.norm = nn.LayerNorm(dim, eps=_EPS)
        self.head = classifier(dim, num_classes)
        init_vit_model_(self, self.pos_embed, self.cls_token)

    def forward_features(self, x: Tensor) -> Tensor:
        """Tokens after the class-attention blocks and the final norm: ``[B, 1 + N, C]``."""
        check_image(x, self.in_chans, size=(self.img_size,) * 2, model="VOLO")
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # [B, H, W, C]
        for i, stage in enumerate(self.network):
            if i == 2:
                x = x + self.pos_embed  # absolute position after the outlooker stage
            x = stage(x)
        x = x.flatten(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for block in self.post_network:
            x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        out = self.head(x[:, 0])
        if self.aux_head is not None:
            out = out + 0.5 * self.aux_head(x[:, 1:]).max(1).values
        return out


def _build(kwargs: dict[str, Any], **defaults: Any) -> VOLO:
    return VOLO(**{**defaults, **kwargs})


@register_model
def volo_d1_224(**kwargs: Any) -> VOLO:
    """VOLO-D1 at 224 px (timm ``volo_d1_224``: 26.63M parameters; paper 27M, 84.2%)."""
    return _build(kwargs)


@register_model
def volo_test_tiny(**kwargs: Any) -> VOLO:
    """A small VOLO for tests: 32 px, stride-4 stem, one block per stage, one class block."""
    return _build(
        kwargs,
        layers=(1, 1, 1),
        img_size=32,
        num_classes=10,
        patch_size=4,
        stem_hidden_dim=16,
        embed_dims=(32, 64, 64),
        num_heads=(2, 4, 4),
        num_post=1,
    )
