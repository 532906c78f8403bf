"""ConViT (d'Ascoli et al., ICML 2021): ViT with gated positional self-attention (GPSA).

Core mapping: global mode. A GPSA head mixes two softmaxes with a learned per-head gate
``g = sigmoid(lambda_h)``::

    A = (1 - g) softmax(q kᵀ / sqrt(d)) + g softmax(r_ij · w_h)

with ``r_ij = (dx, dy, dx² + dy²)`` the patch offset. Because the output is linear in ``A``
this is two calls of the core softmax kernel: ``(1-g)·attention(q, k, v) + g·attention(0, 0, v,
pos_logits)``. After ``local_up_to_layer`` GPSA blocks a CLS token is appended and plain
multi-head self-attention follows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pointlib.attention import GatedPositional, Neighborhood, NeighborhoodAttention
from pointlib.models._registry import register_model
from pointlib.models.vision._layers import (
    PatchEmbed,
    PreNormBlock,
    check_image,
    classifier,
    drop_path_rates,
    init_vit_model_,
    patch_grid,
    prepend_token,
)

__all__ = [
    "ConViT",
    "convit_test_tiny",
    "convit_tiny",
    "gpsa_attention",
    "gpsa_local_init_",
    "gpsa_neighborhood",
]


def patch_offsets(h: int, w: int) -> Tensor:
    """Relative offsets ``r[i, j] = (x_j - x_i, y_j - y_i, |Δ|²)`` of a row-major ``h x w`` grid.

    Returns:
        ``[h*w, h*w, 3]`` (float32).
    """
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    xs, ys = xs.reshape(-1).float(), ys.reshape(-1).float()
    dx = xs[None, :] - xs[:, None]
    dy = ys[None, :] - ys[:, None]
    return torch.stack([dx, dy, dx * dx + dy * dy], dim=-1)


def gpsa_neighborhood(h: int, w: int, device=None, dtype=None) -> Neighborhood:
    """Global-mode neighbourhood with ConViT's ``rel = (dx, dy, dx² + dy²)`` as ``[1, N, N, 3]``."""
    return Neighborhood(mode="global", rel=patch_offsets(h, w).to(device=device, dtype=dtype)[None])


def gpsa_attention(
    dim: int, num_heads: int, qkv_bias: bool = False, locality_strength: float = 1.0
) -> NeighborhoodAttention:
    """ConViT GPSA as a core module: global attention + :class:`GatedPositional` on ``rel``.

    The convolutional ("local") initialisation sets ``v = I`` and places the heads on a
    ``sqrt(H) x sqrt(H)`` grid of offsets ``Δ_h`` around the query, with positional logits
    ``alpha (2 Δ_h · Δ - |Δ|²)`` (maximal at ``Δ = Δ_h``).
    """
    gate = GatedPositional(3, num_heads)
    attn = NeighborhoodAttention(dim, num_heads, qkv_bias=qkv_bias, gate_pos=gate)
    gpsa_local_init_(attn, locality_strength)
    return attn


def gpsa_local_init_(attn: NeighborhoodAttention, locality_strength: float = 1.0) -> None:
    """ConViT's convolutional initialisation of a :func:`gpsa_attention` module (in place)."""
    num_heads, dim = attn.heads, attn.dim
    side = int(num_heads**0.5)
    center = (side - 1) / 2 if side % 2 == 0 else side // 2
    offsets = torch.zeros(num_heads, 2)
    for h1 in range(side):
        for h2 in range(side):
            offsets[h1 + side * h2] = torch.tensor([h2 - center, h1 - center])  # (dx, dy)
    # heads beyond side**2 (non-square head counts) keep offset 0: they start centred
    attn.gate_pos.local_init_(offsets, locality_strength)
    with torch.no_grad():
        attn.qkv.weight[2 * dim :].copy_(torch.eye(dim))


class ConViTBlock(PreNormBlock):
    """Pre-norm transformer block with a GPSA or MHSA mixer.

    Shapes:
        input/output ``[B, N, C]``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path: float = 0.0,
        use_gpsa: bool = True,
        locality_strength: float = 1.0,
    ) -> None:
        attn = (
            gpsa_attention(dim, num_heads, qkv_bias, locality_strength)
            if use_gpsa
            else NeighborhoodAttention(dim, num_heads, qkv_bias=qkv_bias)
        )
        super().__init__(dim, attn, mlp_ratio, drop_path)
        self.use_gpsa = use_gpsa

    def forward(self, x: Tensor, nbr: Neighborhood) -> Tensor:
        """``nbr``: the GPSA neighbourhood (used by GPSA blocks only)."""
        return super().forward(x, nbr if self.use_gpsa else None)


class ConViT(nn.Module):
    """ConViT classifier.

    Args:
        img_size: square input size (the absolute position embedding is fixed to it).
        patch_size: patch size ``p``.
        in_chans: input channels.
        num_classes: classifier outputs (0: return pooled features).
        embed_dim: token width ``C`` (timm passes per-head width × heads; here the total).
        depth: number of blocks.
        num_heads: heads per block.
        mlp_ratio: MLP hidden width / ``C``.
        qkv_bias: bias on q/k/v projections.
        local_up_to_layer: number of leading GPSA blocks; the CLS token joins after them.
        locality_strength: ``alpha`` of the GPSA local init.
        drop_rate, drop_path_rate: head dropout and (linearly increasing) stochastic depth.
        global_pool: ``"token"`` (CLS, as published) or ``"avg"`` (mean of the patch tokens).

    Shapes:
        input ``[B, C_in, img, img]``; output ``[B, num_classes]``.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        local_up_to_layer: int = 10,
        locality_strength: float = 1.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "token",
    ) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        self.global_pool = global_pool
        self.grid = patch_grid(img_size, patch_size)
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.num_classes, self.num_features = num_classes, embed_dim
        self.local_up_to_layer = local_up_to_layer
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dim))
        rates = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            ConViTBlock(
                embed_dim,
                num_heads,
                mlp_ratio,
                qkv_bias,
                rates[i],
                use_gpsa=i < local_up_to_layer,
                locality_strength=locality_strength,
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = classifier(embed_dim, num_classes)
        init_vit_model_(self, self.pos_embed, self.cls_token)
        for blk in self.blocks:  # the generic init above overwrote the GPSA local init
            if blk.use_gpsa:
                gpsa_local_init_(blk.attn, locality_strength)

    def forward_features(self, x: Tensor) -> Tensor:
        """Images ``[B, C_in, H, W]`` -> normalised tokens ``[B, 1 + N, C]`` (CLS first)."""
        check_image(
            x, self.in_chans, multiple=self.patch_size, size=(self.img_size,) * 2, model="ConViT"
        )
        x = self.patch_embed(x) + self.pos_embed
        nbr = gpsa_neighborhood(*self.grid, device=x.device, dtype=x.dtype)
        for i, blk in enumerate(self.blocks):
            if i == self.local_up_to_layer:
                x = prepend_token(self.cls_token, x)
            x = blk(x, nbr)
        if len(self.blocks) <= self.local_up_to_layer:  # no MHSA blocks: CLS still heads the output
            x = prepend_token(self.cls_token, x)
        return self.norm(x)

    def forward_head(self, x: Tensor) -> Tensor:
        """Tokens ``[B, 1 + N, C]`` -> logits: the CLS token, or the mean patch token (``avg``)."""
        x = x[:, 1:].mean(1) if self.global_pool == "avg" else x[:, 0]
        return self.head(self.head_drop(x))

    def forward(self, x: Tensor) -> Tensor:
        """Images ``[B, C_in, H, W]`` -> logits ``[B, num_classes]``."""
        return self.forward_head(self.forward_features(x))


@register_model
def convit_tiny(**kwargs: Any) -> ConViT:
    """ConViT-Ti: 192 wide, 12 blocks (10 GPSA), 4 heads; 5,710,512 params (timm: 5.71M)."""
    cfg: dict[str, Any] = dict(embed_dim=192, depth=12, num_heads=4, local_up_to_layer=10)
    return ConViT(**{**cfg, **kwargs})


@register_model
def convit_test_tiny(**kwargs: Any) -> ConViT:
    """Test variant: 32x32 images, 8x8 patches, 32 wide, 2 GPSA + 1 MHSA blocks."""
    cfg: dict[str, Any] = dict(
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=3,
        num_heads=4,
        local_up_to_layer=2,
        num_classes=10,
    )
    return ConViT(**{**cfg, **kwargs})
