"""L2ViT's linear global attention (Zheng et al., arXiv 2501.16182): ReLU features, a learned
per-head temperature and a denominator clamped from below.

    ``out_i = tau_h * phi(q_i)^T (sum_j phi(k_j) v_j^T) / max(phi(q_i) . sum_j phi(k_j), c)``

with ``phi = ReLU`` and ``c = 100``. It is the core's positive linear kernel
(:func:`pointlib.attention.attention` with ``kernel="linear"``, ``feature_map="relu"``) with two
changes that the core's normalisation does not have: the clamp (a floor of 100 instead of a tiny
epsilon, so that queries with a small total similarity are damped, not amplified) and the
temperature on the numerator. Computed kv-first, ``O(N d^2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["clamped_linear_attention"]


def clamped_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    temperature: Tensor | float = 1.0,
    *,
    min_denominator: float = 100.0,
) -> Tensor:
    """ReLU linear attention with a clamped denominator (kv first).

    Args:
        q, k: ``(B, H, N, D)`` queries and keys (ReLU is applied here).
        v: ``(B, H, N, Dv)`` values.
        temperature: multiplier of the numerator, broadcastable to ``(B, H, N, Dv)``
            (L2ViT: a learned ``(H, 1, 1)`` parameter initialised to ``D ** -0.5``).
        min_denominator: the floor of ``phi(q_i) . sum_j phi(k_j)`` (L2ViT: 100).

    Returns:
        ``(B, H, N, Dv)``.
    """
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"need q, k (B, H, N, D) and v (B, H, N, Dv); got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    fq, fk = torch.relu(q), torch.relu(k)
    den = (fq @ fk.sum(-2, keepdim=True).transpose(-1, -2)).clamp(min=min_denominator)
    kv = fk.transpose(-1, -2) @ v  # (B, H, D, Dv)
    return (fq @ (kv * temperature)) / den
