"""Building blocks shared by the 2D backbones: MLPs, norms, patch embedding, input checks.

Token mixers live in each backbone's module and call :mod:`pointlib.attention`; this module holds
only the non-attention parts every backbone repeats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DropPath",
    "LayerNorm2d",
    "Mlp",
    "PatchEmbed",
    "check_image",
    "init_vit_weights",
    "num_params",
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
