"""DaViT channel-group attention (channels as tokens), one SDPA call."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pointlib.attention._index import _check_qkv

__all__ = ["channel_attention"]


def channel_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None) -> Tensor:
    """DaViT channel-group attention: channels are the tokens, positions the features.

    ``A = softmax_c'(sum_n k[n, c] v[n, c'] * scale)`` (``(B, H, D, D)`` per head/group), and
    ``out[n, c] = sum_c' A[c, c'] q[n, c']``; computed as one SDPA call on the transposed
    tensors. Index-free and permutation-equivariant over positions.

    Args:
        q, k, v: ``(B, H, N, D)`` head-split (``H`` = channel groups).
        scale: default ``D ** -0.5`` (DaViT).

    Returns:
        ``(B, H, N, D)``.
    """
    _check_qkv(q, k, v)
    if v.shape[-1] != q.shape[-1]:
        raise ValueError("channel attention needs equal q/k/v head widths")
    s = q.shape[-1] ** -0.5 if scale is None else scale
    out = F.scaled_dot_product_attention(
        k.transpose(-1, -2), v.transpose(-1, -2), q.transpose(-1, -2), scale=s
    )
    return out.transpose(-1, -2)
