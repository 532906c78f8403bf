"""Building blocks shared by the 2D backbones: MLPs, norms, blocks, patch embedding, init, checks.

Token mixers live in each backbone's module and call :mod:`pointlib.attention`; this module holds
only the non-attention parts every backbone repeats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DropPath",
    "LayerNorm2d",
    "Mlp",
    "PatchEmbed",
    "PreNormBlock",
    "check_image",
    "classifier",
    "drop_path_or_identity",
    "drop_path_rates",
    "init_conv_fan_out",
    "init_vit_conv_weights",
    "init_vit_model_",
    "init_vit_weights",
    "num_params",
    "patch_grid",
    "prepend_token",
]


def num_params(model: nn.Module) -> int:
    """Number of parameters of ``model`` (all of them, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def check_image(
    x: Tensor,
    in_chans: int,
    *,
    multiple: int | tuple[int, int] = 1,
    size: tuple[int, int] | None = None,
    model: str = "model",
) -> tuple[int, int]:
    """Validate an NCHW image batch and return ``(H, W)``.

    Args:
        x: images ``[B, C, H, W]``.
        in_chans: the channel count ``C`` the model was built for.
        multiple: ``H`` and ``W`` must be divisible by this (patch size, window size, ...).
        size: when given, the exact ``(H, W)`` the model was built for (fixed position tables).
        model: name used in error messages.
    """
    if x.dim() != 4:
        raise ValueError(f"{model}: expected images [B, C, H, W], got shape {tuple(x.shape)}")
    _, c, h, w = x.shape
    if c != in_chans:
        raise ValueError(f"{model}: expected {in_chans} input channels, got {c}")
    mh, mw = (multiple, multiple) if isinstance(multiple, int) else multiple
    if h % mh or w % mw:
        raise ValueError(
            f"{model}: image size {h}x{w} is not divisible by {mh}x{mw} "
            "(patch/window/block size times the total stride)"
        )
    if size is not None and (h, w) != tuple(size):
        raise ValueError(
            f"{model}: built for {size[0]}x{size[1]} images (fixed position embedding), "
            f"got {h}x{w}; pass img_size={h} when creating the model"
        )
    return h, w


def patch_grid(img_size: int, patch_size: int) -> tuple[int, int]:
    """The ``(rows, cols)`` patch grid of a square ``img_size`` image; raises if not divisible."""
    if img_size % patch_size:
        raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
    return (img_size // patch_size,) * 2


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over ``depth`` blocks."""
    return torch.linspace(0, rate, depth).tolist()


def classifier(dim: int, num_classes: int) -> nn.Module:
    """``Linear(dim, num_classes)``, or ``Identity`` when ``num_classes == 0`` (features out)."""
    return nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()


def prepend_token(token: Tensor, x: Tensor) -> Tensor:
    """``[token; x]``: a learned ``[1, 1, C]`` token (CLS) in front of tokens ``[B, N, C]``."""
    return torch.cat([token.expand(x.shape[0], -1, -1), x], dim=1)


class DropPath(nn.Module):
    """Stochastic depth: drop whole residual branches per sample during training.

    Shapes:
        input/output ``[B, *]``.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_or_identity(p: float) -> nn.Module:
    """``DropPath(p)`` when ``p > 0``, else ``nn.Identity()`` (keeps ``forward`` branch-free)."""
    return DropPath(p) if p > 0 else nn.Identity()


class Mlp(nn.Module):
    """Two-layer perceptron ``fc2(drop(act(fc1(x))))`` on the last axis.

    Shapes:
        input ``[*, C_in]``, output ``[*, C_out]``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PreNormBlock(nn.Module):
    """Pre-norm residual block ``x + mix(norm1(x)); x + mlp(norm2(x))`` around a given mixer.

    Args:
        dim: token width ``C``.
        attn: the token mixer; ``forward(x, *args)`` passes ``args`` on to it.
        mlp: the feed-forward module, or a hidden-width ratio for an :class:`Mlp`.
        drop_path: stochastic-depth probability of both branches.
        eps: epsilon of both LayerNorms.
        layer_scale: initial per-channel residual gains ``gamma1``/``gamma2`` (``None``: none).

    Shapes:
        input/output ``[*, C]`` (tokens ``[B, N, C]`` or channels-last maps ``[B, H, W, C]``).
    """

    def __init__(
        self,
        dim: int,
        attn: nn.Module,
        mlp: nn.Module | float = 4.0,
        drop_path: float = 0.0,
        eps: float = 1e-6,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = mlp if isinstance(mlp, nn.Module) else Mlp(dim, int(dim * mlp))
        self.drop_path = drop_path_or_identity(drop_path)
        self.gamma1: nn.Parameter | None = None
        self.gamma2: nn.Parameter | None = None
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: Tensor, *args: Any) -> Tensor:
        a = self.attn(self.norm1(x), *args)
        x = x + self.drop_path(a if self.gamma1 is None else self.gamma1 * a)
        m = self.mlp(self.norm2(x))
        return x + self.drop_path(m if self.gamma2 is None else self.gamma2 * m)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of NCHW maps.

    Shapes:
        input/output ``[B, C, H, W]``.
    """

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution, flattened to tokens.

    Shapes:
        input ``[B, C_in, H, W]``; output ``[B, (H/p)(W/p), C]`` (row-major patch order).
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def init_vit_weights(module: nn.Module) -> None:
    """ViT-style init: truncated-normal(0.02) linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_vit_model_(model: nn.Module, *tokens: Tensor) -> None:
    """ViT init of a whole model: truncated-normal(0.02) ``tokens`` (position embeddings, CLS
    tokens; in the given order), then :func:`init_vit_weights` on every submodule."""
    for t in tokens:
        nn.init.trunc_normal_(t, std=0.02)
    model.apply(init_vit_weights)


def init_conv_fan_out(module: nn.Module) -> None:
    """He (fan-out) init for convolutions, unit/zero BatchNorm (ResNet convention)."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        fan_out //= module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_vit_conv_weights(module: nn.Module) -> None:
    """:func:`init_vit_weights` for linears and LayerNorms, :func:`init_conv_fan_out` for the
    convolutions and BatchNorms of hybrid (conv stem + transformer) models."""
    init_vit_weights(module)
    init_conv_fan_out(module)
