"""TransNeXt (Shi, CVPR 2024): aggregated attention, TransNeXt-Micro.

Core mapping: query mode plus extra tokens under one softmax. Each pixel attends to its 3x3
neighbourhood (centred, zero-padded, border slots masked: ``valid=False``) *and* to the ``P``
pooled tokens of the stage (``extra_k``/``extra_v``). Queries and keys are L2-normalised, a
learned query embedding is added, and the logits are scaled by ``softplus(tau_h) · log(n_i + P)``
with ``n_i`` the valid local keys of pixel ``i`` (length-scaled cosine attention; folded into
``q`` with ``scale=1``). Biases: a learned table per local slot and a continuous MLP over
log-spaced query-to-pooled-cell offsets (:class:`RelPosMLP`), concatenated on the last logit
axis (``K + P``). A post-softmax per-slot term ``(q̂·T_s + b_s) v_s`` on the local part is added
outside the core (it needs slot-ordered values). The last stage is global cosine attention
with the same scaling and an MLP bias. FFN: convolutional GLU.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.attention import AttentionSpec, Neighborhood, RelPosMLP, attention
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import (
    PreNormBlock,
    check_image,
    classifier,
    drop_path_rates,
    init_vit_conv_weights,
)

__all__ = ["TransNeXt", "centred_window", "transnext_micro", "transnext_test_tiny"]

#: TransNeXt's logits are pre-scaled (normalised q, k and a learned temperature): scale 1.
UNIT_SCALE = AttentionSpec(scale=1.0)


@functools.lru_cache(maxsize=32)
def centred_window(h: int, w: int, kernel: int) -> Neighborhood:
    """Query-mode ``k x k`` window centred on each pixel; slots outside the map are invalid.

    Unlike :func:`pointlib.attention.grid` (NATTEN: windows shift inward at borders) this is the
    zero-padded ``unfold`` neighbourhood TransNeXt uses; border pixels have fewer valid keys.

    Returns:
        ``Neighborhood(mode="query", index (1, h*w, k²), valid (1, h*w, k²), slot (1, h*w, k²))``.
    """
    if kernel % 2 == 0:
        raise ValueError(f"kernel must be odd, got {kernel}")
    r = kernel // 2
    off = torch.arange(-r, r + 1)
    qy, qx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ky = qy.reshape(-1, 1, 1) + off.view(1, -1, 1)
    kx = qx.reshape(-1, 1, 1) + off.view(1, 1, -1)
    ky, kx = ky.expand(-1, kernel, kernel), kx.expand(-1, kernel, kernel)
    valid = ((ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)).reshape(h * w, -1)
    index = torch.where(valid, (ky * w + kx).reshape(h * w, -1), 0)
    slot = torch.arange(kernel * kernel).expand(h * w, -1)
    return Neighborhood(
        mode="query", index=index[None], valid=valid[None], slot=slot[None], num_slots=kernel**2
    )


@functools.lru_cache(maxsize=32)
def pooled_offsets(
    q_size: tuple[int, int], k_size: tuple[int, int], ref_size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Log-spaced offsets between query pixels and pooled cells, deduplicated.

    Offsets are ``(q - k) / (ref - 1) * 8`` per axis (``k`` = centre of each adaptive-average
    pooling cell, ``ref`` the query grid size at the configured image size), encoded as
    ``sign(r) log2(1 + |r|) / 3``.

    Returns:
        ``(table [U, 2], index [Nq, Nk])``: unique encoded offsets and each pair's row.
    """
    axes = []
    for a in range(2):
        qa = torch.arange(q_size[a], dtype=torch.float32)
        ka = F.adaptive_avg_pool1d(qa[None], k_size[a])[0]
        axes.append((qa, ka))
    (qh, kh), (qw, kw) = axes
    qh, qw = (t.reshape(-1) for t in torch.meshgrid(qh, qw, indexing="ij"))
    kh, kw = (t.reshape(-1) for t in torch.meshgrid(kh, kw, indexing="ij"))
    rh = (qh[:, None] - kh[None]) / max(ref_size[0] - 1, 1) * 8
    rw = (qw[:, None] - kw[None]) / max(ref_size[1] - 1, 1) * 8
    rel = torch.stack([rh, rw], -1).reshape(-1, 2)
    table, inverse = torch.unique(rel, return_inverse=True, dim=0)
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0
    return table, inverse.view(len(qh), len(kh))


def _temperature_init(heads: int) -> Tensor:
    """Raw temperature with ``softplus(t) = 1 / 0.24``."""
    return torch.full((heads, 1, 1), math.log(math.expm1(1 / 0.24)))


class AggregatedAttention(nn.Module):
    """Pixel-focused attention: 3x3 neighbourhood ∪ pooled tokens, one softmax.

    Shapes:
        ``forward(x [B, N, C], (h, w), ref)`` -> ``[B, N, C]``; ``ref`` is the stage's query grid
        at the configured image size (scales the pooled-offset coordinates).
    """

    def __init__(
        self, dim: int, num_heads: int, sr_ratio: int, window: int = 3, qkv_bias: bool = True
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.sr_ratio, self.window = sr_ratio, window
        slots = window * window
        self.temperature = nn.Parameter(_temperature_init(num_heads))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.query_embedding = nn.Parameter(torch.zeros(num_heads, 1, self.head_dim))
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, 1)
        self.norm = nn.LayerNorm(dim)
        self.act = nn.GELU()
        self.cpb = RelPosMLP(2, num_heads, hidden=512)
        self.relative_pos_bias_local = nn.Parameter(torch.zeros(num_heads, slots))
        self.learnable_tokens = nn.Parameter(torch.zeros(num_heads, self.head_dim, slots))
        self.learnable_bias = nn.Parameter(torch.zeros(num_heads, 1, slots))
        nn.init.trunc_normal_(self.query_embedding, std=0.02)
        nn.init.trunc_normal_(self.relative_pos_bias_local, std=0.0004)
        nn.init.trunc_normal_(self.learnable_tokens, std=0.02)

    def forward(self, x: Tensor, grid: tuple[int, int], ref: tuple[int, int]) -> Tensor:
        b, n, c = x.shape
        h, w = grid
        nh, d = self.num_heads, self.head_dim
        ph, pw = max(h // self.sr_ratio, 1), max(w // self.sr_ratio, 1)
        nbr = centred_window(h, w, self.window).to(x.device)
        valid = nbr.valid[0]  # [N, K]
        length_scale = torch.log(valid.sum(-1).to(x.dtype) + ph * pw).view(1, 1, n, 1)

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, -1, nh, d).transpose(1, 2)

        q_norm = F.normalize(heads(self.q(x)), dim=-1)
        q = (q_norm + self.query_embedding) * F.softplus(self.temperature) * length_scale
        k, v = self.kv(x).chunk(2, dim=-1)
        k, v = F.normalize(heads(k), dim=-1), heads(v)
        # pooled tokens: 1x1 conv, GELU, adaptive average pool, LayerNorm
        pooled = self.act(self.sr(x.transpose(1, 2).reshape(b, c, h, w)))
        pooled = self.norm(F.adaptive_avg_pool2d(pooled, (ph, pw)).flatten(2).transpose(1, 2))
        k_pool, v_pool = self.kv(pooled).chunk(2, dim=-1)
        k_pool, v_pool = F.normalize(heads(k_pool), dim=-1), heads(v_pool)
        # biases: a table per local slot, a continuous MLP over offsets to the pooled cells
        table, index = pooled_offsets((h, w), (ph, pw), ref)
        pool_bias = self.cpb(table.to(x)[None])[0][:, index.to(x.device)]  # [H, N, P]
        local_bias = self.relative_pos_bias_local[:, None, :].expand(nh, n, -1)
        bias = torch.cat([local_bias, pool_bias], dim=-1).unsqueeze(0)
        out = attention(q, k, v, nbr, UNIT_SCALE, bias=bias, extra_k=k_pool, extra_v=v_pool)
        # post-softmax dynamic slot term (q̂·T_s + b_s) v_s on the valid local slots
        slot_w = (q_norm @ self.learnable_tokens + self.learnable_bias) * valid.to(x.dtype)
        v_slots = v[:, :, nbr.index[0]]  # [B, H, N, K, d]
        out = out + (slot_w.unsqueeze(-2) @ v_slots).squeeze(-2)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class GlobalAttention(nn.Module):
    """Length-scaled cosine attention over all tokens with a continuous MLP bias.

    Shapes:
        ``forward(x [B, N, C], (h, w), ref)`` -> ``[B, N, C]``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.temperature = nn.Parameter(_temperature_init(num_heads))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.query_embedding = nn.Parameter(torch.zeros(num_heads, 1, self.head_dim))
        self.proj = nn.Linear(dim, dim)
        self.cpb = RelPosMLP(2, num_heads, hidden=512)
        nn.init.trunc_normal_(self.query_embedding, std=0.02)

    def forward(self, x: Tensor, grid: tuple[int, int], ref: tuple[int, int]) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q = (F.normalize(q, dim=-1) + self.query_embedding) * F.softplus(self.temperature)
        q = q * math.log(n)
        table, index = pooled_offsets(grid, grid, ref)
        bias = self.cpb(table.to(x)[None])[:, :, index.to(x.device)]  # [1, H, N, N]
        out = attention(q, F.normalize(k, dim=-1), v, spec=UNIT_SCALE, bias=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class ConvGLU(nn.Module):
    """Convolutional GLU: ``fc2(GELU(dwconv3x3(a)) * g)`` with ``[a, g] = fc1(x)``.

    Shapes:
        ``forward(x [B, N, C], (h, w))`` -> ``[B, N, C]``.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = int(2 * hidden / 3)
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        b = x.shape[0]
        a, g = self.fc1(x).chunk(2, dim=-1)
        a = self.dwconv(a.transpose(1, 2).reshape(b, -1, *grid)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(a) * g)


class TransNeXtBlock(PreNormBlock):
    """Pre-norm block: aggregated (or global) attention + ConvGLU. Shapes: ``[B, N, C]``."""

    def __init__(
        self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: float, drop_path: float
    ) -> None:
        attn: nn.Module = (
            AggregatedAttention(dim, num_heads, sr_ratio)
            if sr_ratio > 1
            else GlobalAttention(dim, num_heads)
        )
        super().__init__(dim, attn, ConvGLU(dim, int(dim * mlp_ratio)), drop_path)

    def forward(self, x: Tensor, grid: tuple[int, int], ref: tuple[int, int]) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), grid, ref))
        return x + self.drop_path(self.mlp(self.norm2(x), grid))


class TransNeXt(nn.Module):
    """TransNeXt classifier.

    Args:
        img_size: the reference image size; it scales the offsets fed to the positional MLPs
            (``pretrain_size`` in the reference). Inputs may have other sizes (multiples of 32).
        embed_dims, num_heads, depths, mlp_ratios: per stage.
        sr_ratios: pooling ratio per stage (``1``: global attention).

    Shapes:
        input ``[B, C_in, H, W]``; output ``[B, num_classes]``.
    """

    def __init__(
        self,
        img_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (48, 96, 192, 384),
        num_heads: Sequence[int] = (2, 4, 8, 16),
        depths: Sequence[int] = (2, 2, 15, 2),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.img_size, self.in_chans, self.num_classes = img_size, in_chans, num_classes
        self.num_features = embed_dims[-1]
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        for i, dim in enumerate(embed_dims):
            stage = nn.Module()
            cin = in_chans if i == 0 else embed_dims[i - 1]
            k, s = (7, 4) if i == 0 else (3, 2)
            stage.patch_embed = nn.Conv2d(cin, dim, k, stride=s, padding=k // 2)
            stage.embed_norm = nn.LayerNorm(dim)
            start = sum(depths[:i])
            stage.blocks = nn.ModuleList(
                TransNeXtBlock(dim, num_heads[i], sr_ratios[i], mlp_ratios[i], rates[start + j])
                for j in range(depths[i])
            )
            stage.norm = nn.LayerNorm(dim, eps=1e-6)
            self.stages.append(stage)
        self.head = classifier(embed_dims[-1], num_classes)
        self.apply(init_vit_conv_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Images -> mean last-stage token ``[B, C]``."""
        check_image(x, self.in_chans, multiple=32, model="TransNeXt")
        b = x.shape[0]
        for i, stage in enumerate(self.stages):
            x = stage.patch_embed(x)
            h, w = x.shape[-2:]
            ref = (self.img_size // 2 ** (i + 2),) * 2
            t = stage.embed_norm(x.flatten(2).transpose(1, 2))
            for blk in stage.blocks:
                t = blk(t, (h, w), ref)
            t = stage.norm(t)
            x = t.transpose(1, 2).reshape(b, -1, h, w)
        return t.mean(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


@register_model
def transnext_micro(**kwargs: Any) -> TransNeXt:
    """TransNeXt-Micro: widths 48-384, depths (2,2,15,2); 12,809,304 params (paper 12.8M)."""
    return TransNeXt(**kwargs)


@register_model
def transnext_test_tiny(**kwargs: Any) -> TransNeXt:
    """Test variant: 64 px reference, widths 16-64, one block per stage."""
    cfg: dict[str, Any] = dict(
        img_size=64,
        embed_dims=(16, 32, 48, 64),
        num_heads=(1, 2, 2, 4),
        depths=(1, 1, 1, 1),
        mlp_ratios=(2, 2, 2, 2),
        sr_ratios=(4, 2, 2, 1),
        num_classes=10,
    )
    return TransNeXt(**{**cfg, **kwargs})
