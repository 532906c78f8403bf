"""Linear-attention DeiTs: InLine (Han et al., NeurIPS 2024) and a RALA variant (Fan et al., 2025).

Core mapping: global mode with ``kernel="linear"``.

* **InLine**: identity feature map and the *injective* normalisation
  ``w_ij = s (q_i·k_j - mean_l q_i·k_l) + 1/N`` with ``s = d^-1/2 / N`` (rows sum to one), plus a
  local residual: a 3x3 depthwise convolution of ``v`` over the patch grid whose kernels are
  predicted per sample and channel from the mean token (the CLS token attends but gets no
  local term). ``inline_deit_tiny`` is the paper's DeiT-T (6 heads).
* **RALA**: ``phi = ELU + 1``, keys reweighted by ``alpha_j = N softmax_j(mean_i phi(q_i)·phi(k_j)
  / sqrt(d))`` (``linear_norm="rala"``), 2D RoPE on ``phi(q), phi(k)`` in the numerator, a 5x5
  depthwise LePE on ``v`` and a linear output gate, as RAVLT's linear blocks. ``rala_deit_tiny``
  puts that mixer into the same DeiT-T body (no CLS token: mean-pooled head); it is this
  library's configuration, there is no published figure for it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.attention import AttentionSpec, attention
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
    "InLineAttention",
    "LinearDeiT",
    "RALAAttention",
    "inline_deit_tiny",
    "inline_test_tiny",
    "rala_deit_tiny",
    "rala_test_tiny",
]


class InLineAttention(nn.Module):
    """InLine attention over ``[CLS; patches]`` with a predicted local residual.

    Shapes:
        ``forward(x [B, 1 + h*w, C], (h, w))`` -> ``[B, 1 + h*w, C]``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        # per-sample 3x3 depthwise kernels predicted from the mean token (grouped by head)
        self.residual = nn.Sequential(
            nn.Conv1d(dim, dim, 1, groups=num_heads),
            nn.GELU(),
            nn.Conv1d(dim, 9 * dim, 1, groups=num_heads),
        )

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        b, n, c = x.shape
        h, w = grid
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        scale = self.head_dim**-0.5 / n
        spec = AttentionSpec(
            kernel="linear", feature_map="identity", linear_norm="injective", scale=scale
        )
        out = attention(q, k, v, spec=spec)
        out = out.transpose(1, 2).reshape(b, n, c)
        kernels = self.residual(x.mean(1).unsqueeze(-1)).reshape(b * c, 1, 3, 3)
        vp = v[:, :, 1:].transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)
        local = F.conv2d(vp.reshape(1, b * c, h, w), kernels, padding=1, groups=b * c)
        local = local.reshape(b, c, h * w).transpose(1, 2)
        out = torch.cat([out[:, :1], out[:, 1:] + local], dim=1)
        return self.proj(out)


def rope_2d(h: int, w: int, head_dim: int, device=None, dtype=None) -> tuple[Tensor, Tensor]:
    """2D rotary tables: first half of the channels rotate with the row, second with the column.

    Returns:
        ``(sin, cos)``, each ``[h*w, head_dim]``.
    """
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {head_dim}")
    angle = 1.0 / (10000 ** torch.linspace(0, 1, head_dim // 4, device=device, dtype=dtype))
    angle = angle.repeat_interleave(2)  # (head_dim/2,)
    ys = torch.arange(h, device=device, dtype=dtype)[:, None] * angle
    xs = torch.arange(w, device=device, dtype=dtype)[:, None] * angle
    phase = torch.cat(
        [ys[:, None, :].expand(h, w, -1), xs[None, :, :].expand(h, w, -1)], dim=-1
    ).reshape(h * w, head_dim)
    return phase.sin(), phase.cos()


def apply_rope(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """Rotate channel pairs ``(x_2i, x_2i+1)`` of ``x [..., N, d]`` by the given phases."""
    x1, x2 = x[..., ::2], x[..., 1::2]
    rotated = torch.stack([-x2, x1], dim=-1).flatten(-2)
    return x * cos + rotated * sin


class RALAAttention(nn.Module):
    """Rank-augmented linear attention over the patch grid.

    Shapes:
        ``forward(x [B, h*w, C], (h, w))`` -> ``[B, h*w, C]``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.qkvo = nn.Linear(dim, 4 * dim)
        self.lepe = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        b, n, c = x.shape
        h, w = grid
        qkv, o = self.qkvo(x).split([3 * c, c], dim=-1)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        lepe = self.lepe(qkv[..., 2 * c :].transpose(1, 2).reshape(b, c, h, w))
        sin, cos = rope_2d(h, w, self.head_dim, device=x.device, dtype=x.dtype)
        out = attention(
            q,
            k,
            v,
            kernel="linear",
            feature_map="elu1",
            linear_norm="rala",
            rope=lambda t: apply_rope(t, sin, cos),
        )
        out = out.transpose(1, 2).reshape(b, n, c) + lepe.flatten(2).transpose(1, 2)
        return self.proj(out * o)


def _mixer(dim: int, num_heads: int, mixer: Literal["inline", "rala"]) -> nn.Module:
    return InLineAttention(dim, num_heads) if mixer == "inline" else RALAAttention(dim, num_heads)


class LinearDeiT(nn.Module):
    """DeiT body with a linear-attention mixer.

    Args:
        mixer: ``"inline"`` (CLS token + InLine attention) or ``"rala"`` (no CLS token).
        img_size: square input size (absolute position embedding).
        global_pool: ``"token"`` (CLS; InLine's default) or ``"avg"`` (mean patch token; RALA).

    Shapes:
        input ``[B, C_in, img, img]``; output ``[B, num_classes]``.
    """

    def __init__(
        self,
        mixer: Literal["inline", "rala"] = "inline",
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        global_pool: Literal["token", "avg"] | None = None,
    ) -> None:
        super().__init__()
        if mixer not in ("inline", "rala"):
            raise ValueError(f"mixer must be 'inline' or 'rala', got {mixer!r}")
        self.global_pool = global_pool or ("token" if mixer == "inline" else "avg")
        if self.global_pool not in ("token", "avg") or (
            self.global_pool == "token" and mixer != "inline"
        ):
            raise ValueError(f"global_pool {self.global_pool!r} is not available for {mixer!r}")
        self.grid = patch_grid(img_size, patch_size)
        self.mixer, self.img_size, self.patch_size = mixer, img_size, patch_size
        self.in_chans, self.num_classes, self.num_features = in_chans, num_classes, embed_dim
        n = self.grid[0] * self.grid[1]
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.num_prefix = 1 if mixer == "inline" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if self.num_prefix else None
        self.pos_embed = nn.Parameter(torch.zeros(1, n + self.num_prefix, embed_dim))
        self.blocks = nn.ModuleList(
            PreNormBlock(embed_dim, _mixer(embed_dim, num_heads, mixer), mlp_ratio, rate)
            for rate in drop_path_rates(drop_path_rate, depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = classifier(embed_dim, num_classes)
        tokens = (self.pos_embed,) if self.cls_token is None else (self.pos_embed, self.cls_token)
        init_vit_model_(self, *tokens)

    def forward_features(self, x: Tensor) -> Tensor:
        """Images -> pooled features ``[B, C]`` (CLS token or mean token)."""
        check_image(
            x,
            self.in_chans,
            multiple=self.patch_size,
            size=(self.img_size,) * 2,
            model="LinearDeiT",
        )
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = prepend_token(self.cls_token, x)
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x, self.grid)
        x = self.norm(x)
        return x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix :].mean(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


@register_model
def inline_deit_tiny(**kwargs: Any) -> LinearDeiT:
    """InLine-DeiT-T: 192 wide, 12 blocks, 6 heads; 6,477,736 params (paper 6.5M)."""
    return LinearDeiT(mixer="inline", **kwargs)


@register_model
def rala_deit_tiny(**kwargs: Any) -> LinearDeiT:
    """DeiT-T body with RALA attention (3 heads, head width 64); pointlib's configuration."""
    cfg: dict[str, Any] = dict(num_heads=3)
    return LinearDeiT(mixer="rala", **{**cfg, **kwargs})


@register_model
def inline_test_tiny(**kwargs: Any) -> LinearDeiT:
    """Test variant: 32x32 images, 8x8 patches, 24 wide, 2 blocks, InLine mixer.

    Mean-pooled head: with CLS pooling the last block's local residual (patch tokens only)
    cannot reach the output, in the reference too.
    """
    cfg: dict[str, Any] = dict(
        img_size=32,
        patch_size=8,
        embed_dim=24,
        depth=2,
        num_heads=3,
        num_classes=10,
        global_pool="avg",
    )
    return LinearDeiT(mixer="inline", **{**cfg, **kwargs})


@register_model
def rala_test_tiny(**kwargs: Any) -> LinearDeiT:
    """Test variant: 32x32 images, 8x8 patches, 32 wide (head width 16), 2 blocks, RALA mixer."""
    cfg: dict[str, Any] = dict(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10
    )
    return LinearDeiT(mixer="rala", **{**cfg, **kwargs})
