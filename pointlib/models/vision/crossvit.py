"""CrossViT (Chen et al., ICCV 2021): two ViT branches fused by CLS cross-attention.

Core mapping: global mode everywhere. Self-attention blocks are ``attention(q, k, v)``; the fusion
step is cross mode with a single query: the projected CLS token of branch A attends over
``[CLS_A; patches of branch B]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.attention import NeighborhoodAttention
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import (
    PatchEmbed,
    PreNormBlock,
    check_image,
    classifier,
    drop_path_or_identity,
    drop_path_rates,
    init_vit_model_,
    prepend_token,
)

__all__ = ["CrossViT", "crossvit_test_tiny", "crossvit_tiny_240"]


def _ln(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


def _block(
    dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float
) -> nn.Module:
    """Pre-norm ViT block. Shapes: input/output ``[B, N, C]``."""
    attn = NeighborhoodAttention(dim, num_heads, qkv_bias=qkv_bias)
    return PreNormBlock(dim, attn, mlp_ratio, drop_path)


class CrossAttentionBlock(nn.Module):
    """Token 0 (the other branch's projected CLS) cross-attends over all tokens.

    ``cls + attn(norm(cls), kv=norm(x))`` with one query per sample (core cross mode).

    Shapes:
        input ``[B, N, C]``; output ``[B, 1, C]``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, drop_path: float) -> None:
        super().__init__()
        self.norm1 = _ln(dim)
        self.attn = NeighborhoodAttention(dim, num_heads, kv_dim=dim, qkv_bias=qkv_bias)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        t = self.norm1(x)
        return x[:, :1] + self.drop_path(self.attn(t[:, :1], kv=t))


def _proj(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(_ln(d_in), nn.GELU(), nn.Linear(d_in, d_out))


class MultiScaleBlock(nn.Module):
    """Per-branch ViT blocks followed by CLS cross-attention fusion between the two branches.

    Shapes:
        input/output: list of ``[B, 1 + N_b, C_b]`` for ``b = 0, 1``.
    """

    def __init__(
        self,
        dims: Sequence[int],
        depth: Sequence[int],
        num_heads: Sequence[int],
        mlp_ratio: Sequence[float],
        qkv_bias: bool,
        drop_path: Sequence[float],
    ) -> None:
        super().__init__()
        nb = len(dims)
        self.num_branches = nb
        self.blocks = nn.ModuleList(
            nn.Sequential(
                *(
                    _block(dims[b], num_heads[b], mlp_ratio[b], qkv_bias, drop_path[i])
                    for i in range(depth[b])
                )
            )
            for b in range(nb)
        )
        self.projs = nn.ModuleList(_proj(dims[b], dims[(b + 1) % nb]) for b in range(nb))
        fusion: list[nn.Module] = []
        for b in range(nb):
            o = (b + 1) % nb
            if depth[-1] == 0:
                fusion.append(CrossAttentionBlock(dims[o], num_heads[o], qkv_bias, drop_path[-1]))
            else:  # fusion blocks stacked depth[-1] times
                fusion.append(
                    nn.Sequential(
                        *(
                            CrossAttentionBlock(dims[o], num_heads[o], qkv_bias, drop_path[-1])
                            for _ in range(depth[-1])
                        )
                    )
                )
        self.fusion = nn.ModuleList(fusion)
        self.revert_projs = nn.ModuleList(_proj(dims[(b + 1) % nb], dims[b]) for b in range(nb))

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        nb = self.num_branches
        xs = [blk(x) for blk, x in zip(self.blocks, xs)]
        cls = [proj(x[:, :1]) for proj, x in zip(self.projs, xs)]
        outs = []
        for b in range(nb):
            other = xs[(b + 1) % nb]
            fused = self.fusion[b](torch.cat([cls[b], other[:, 1:]], dim=1))
            outs.append(torch.cat([self.revert_projs[b](fused[:, :1]), xs[b][:, 1:]], dim=1))
        return outs


class CrossViT(nn.Module):
    """Two-branch CrossViT classifier.

    Args:
        img_size: square input size (position embeddings are fixed to it).
        img_scale: per-branch resize factor; the image is bicubically resized when != 1.
        patch_size: per-branch patch size.
        embed_dim: per-branch width.
        depth: per multi-scale block ``(depth_branch0, depth_branch1, fusion_depth)``.
        num_heads: per-branch heads.
        mlp_ratio: per-branch MLP ratio (the third entry is unused by the fusion blocks).
        num_classes: classifier outputs; the two branch heads are averaged.

    Shapes:
        input ``[B, C_in, img, img]``; output ``[B, num_classes]``.
    """

    def __init__(
        self,
        img_size: int = 240,
        img_scale: Sequence[float] = (1.0, 224 / 240),
        patch_size: Sequence[int] = (12, 16),
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: Sequence[int] = (96, 192),
        depth: Sequence[Sequence[int]] = ((1, 4, 0),) * 3,
        num_heads: Sequence[int] = (3, 3),
        mlp_ratio: Sequence[float] = (4.0, 4.0, 1.0),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(patch_size) != 2 or len(embed_dim) != 2:
            raise ValueError("CrossViT has exactly two branches")
        self.img_size, self.in_chans = img_size, in_chans
        self.num_classes = num_classes
        self.num_branches = 2
        self.embed_dim = tuple(embed_dim)
        self.num_features = sum(embed_dim)
        self.scaled_sizes = [int(s * img_size) for s in img_scale]
        for size, p in zip(self.scaled_sizes, patch_size):
            if size < p:
                raise ValueError(f"img_size {img_size} too small for patch size {p}")
        num_patches = [(s // p) ** 2 for s, p in zip(self.scaled_sizes, patch_size)]
        self.patch_embed = nn.ModuleList(
            PatchEmbed(p, in_chans, d) for p, d in zip(patch_size, embed_dim)
        )
        self.pos_embed_0 = nn.Parameter(torch.zeros(1, 1 + num_patches[0], embed_dim[0]))
        self.pos_embed_1 = nn.Parameter(torch.zeros(1, 1 + num_patches[1], embed_dim[1]))
        self.cls_token_0 = nn.Parameter(torch.zeros(1, 1, embed_dim[0]))
        self.cls_token_1 = nn.Parameter(torch.zeros(1, 1, embed_dim[1]))
        total = sum(sum(d[-2:]) for d in depth)
        rates = drop_path_rates(drop_path_rate, total)
        blocks, ptr = [], 0
        for cfg in depth:
            cur = max(cfg[:-1]) + cfg[-1]
            blocks.append(
                MultiScaleBlock(
                    embed_dim, cfg, num_heads, mlp_ratio, qkv_bias, rates[ptr : ptr + cur]
                )
            )
            ptr += cur
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.ModuleList(_ln(d) for d in embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.ModuleList(classifier(d, num_classes) for d in embed_dim)
        init_vit_model_(
            self, self.pos_embed_0, self.pos_embed_1, self.cls_token_0, self.cls_token_1
        )

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Images -> per-branch normalised tokens ``[B, 1 + N_b, C_b]``."""
        check_image(x, self.in_chans, size=(self.img_size,) * 2, model="CrossViT")
        xs = []
        cls_tokens = (self.cls_token_0, self.cls_token_1)
        pos_embeds = (self.pos_embed_0, self.pos_embed_1)
        for i, embed in enumerate(self.patch_embed):
            s = self.scaled_sizes[i]
            xi = x
            if xi.shape[-1] != s or xi.shape[-2] != s:
                xi = F.interpolate(xi, size=(s, s), mode="bicubic", align_corners=False)
            tokens = prepend_token(cls_tokens[i], embed(xi))
            xs.append(tokens + pos_embeds[i])
        for blk in self.blocks:
            xs = blk(xs)
        return [norm(t) for norm, t in zip(self.norm, xs)]

    def forward(self, x: Tensor) -> Tensor:
        """Images ``[B, C_in, H, W]`` -> logits ``[B, num_classes]`` (mean of the branch heads)."""
        cls = [self.head_drop(t[:, 0]) for t in self.forward_features(x)]
        if self.num_classes == 0:
            return torch.cat(cls, dim=1)
        return torch.stack([head(c) for head, c in zip(self.head, cls)]).mean(0)


@register_model
def crossvit_tiny_240(**kwargs: Any) -> CrossViT:
    """CrossViT-Ti at 240px: branches 96/192 wide, patches 12/16; 7,014,800 params (timm 7.01M)."""
    return CrossViT(**kwargs)


@register_model
def crossvit_test_tiny(**kwargs: Any) -> CrossViT:
    """Test variant: 32x32 images, patches 8/16, widths 16/32, one multi-scale block."""
    cfg: dict[str, Any] = dict(
        img_size=32,
        img_scale=(1.0, 1.0),
        patch_size=(8, 16),
        embed_dim=(16, 32),
        depth=((1, 1, 0),),
        num_heads=(2, 2),
        mlp_ratio=(2.0, 2.0, 1.0),
        num_classes=10,
    )
    return CrossViT(**{**cfg, **kwargs})
