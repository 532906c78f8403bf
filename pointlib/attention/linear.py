"""Linear-attention kernels: feature maps, the explicit (qk-first) weights and the O(N D^2)
kv-first global path (positive, InLine-injective and RALA normalisations).

Also L2ViT's clamped variant, :func:`clamped_linear_attention`:

L2ViT's linear global attention (Zheng et al., arXiv 2501.16182): ReLU features, a learned
per-head temperature and a denominator clamped from below.

    ``out_i = tau_h * phi(q_i)^T (sum_j phi(k_j) v_j^T) / max(phi(q_i) . sum_j phi(k_j), c)``

with ``phi = ReLU`` and ``c = 100``. It is the core's positive linear kernel
(:func:`pointlib.attention.attention` with ``kernel="linear"``, ``feature_map="relu"``) with two
changes that the core's normalisation does not have: the clamp (a floor of 100 instead of a tiny
epsilon, so that queries with a small total similarity are damped, not amplified) and the
temperature on the numerator. Computed kv-first, ``O(N d^2)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["clamped_linear_attention", "feature_map", "linear_kv_first", "linear_weights"]


def feature_map(x: Tensor, name: str) -> Tensor:
    """Positive feature maps of linear attention: ``"elu1"`` (ELU+1), ``"relu"``, ``"identity"``."""
    if name == "elu1":
        return F.elu(x) + 1.0
    if name == "relu":
        return F.relu(x)
    if name == "identity":
        return x
    raise ValueError(f"feature_map must be 'elu1', 'relu' or 'identity', got {name!r}")


def linear_weights(
    q: Tensor,
    k: Tensor,
    scale: float | None,
    mask: Tensor | None,
    fmap: str,
    norm: str,
    rope: Callable[[Tensor], Tensor] | None,
) -> Tensor:
    """Explicit (qk-first) linear-attention weights ``(Bf, H, Lq, Lk)``; the oracle for
    :func:`linear_kv_first`."""
    fq, fk = feature_map(q, fmap), feature_map(k, fmap)
    m = None if mask is None else mask.to(fq.dtype)
    n = fk.new_full((), fk.shape[-2]) if m is None else m.sum(-1, keepdim=True).clamp(min=1)
    if norm == "rala":
        fk = _rala_reweight(fq, fk, scale, m)
    sim = fq @ fk.transpose(-1, -2)
    if m is not None:
        sim = sim * m
    if norm in ("positive", "rala"):
        den = sim.sum(-1, keepdim=True)
        if rope is not None:
            sim = rope(fq) @ rope(fk).transpose(-1, -2)
            if m is not None:
                sim = sim * m
        return sim / den.clamp_min(1e-6)
    # injective (InLine): rows sum to 1, entries may be negative
    s = 1.0 / n if scale is None else scale
    cen = sim - sim.sum(-1, keepdim=True) / n
    w = cen * s + 1.0 / n
    return w if m is None else w * m


def _rala_reweight(fq: Tensor, fk: Tensor, scale: float | None, m: Tensor | None) -> Tensor:
    """RALA key reweighting ``alpha_j = n * softmax_j(mean_i phi(q_i) . phi(k_j) * scale)``."""
    s = fq.shape[-1] ** -0.5 if scale is None else scale
    qm = fq.mean(-2, keepdim=True)  # (Bf, H, 1, D)
    logit = (qm @ fk.transpose(-1, -2)) * s  # (Bf, H, 1, Lk)
    if m is not None:
        mk = m.amax(-2, keepdim=True) > 0  # key valid for any query
        logit = logit.masked_fill(~mk, float("-inf"))
        n = mk.sum(-1, keepdim=True).to(fq.dtype)
    else:
        n = fk.new_full((), fk.shape[-2])
    alpha = logit.softmax(-1) * n
    return fk * alpha.transpose(-1, -2)


def linear_kv_first(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: float | None,
    fmap: str,
    norm: str,
    rope: Callable[[Tensor], Tensor] | None,
) -> Tensor:
    """Global linear attention in O(N D^2): ``phi(q) (phi(k)^T v)`` (no mask)."""
    fq, fk = feature_map(q, fmap), feature_map(k, fmap)
    n = fk.shape[-2]
    if norm == "rala":
        fk = _rala_reweight(fq, fk, scale, None)
    ksum = fk.sum(-2, keepdim=True)  # (Bf, H, 1, D)
    if norm in ("positive", "rala"):
        den = (fq * ksum).sum(-1, keepdim=True)
        nq, nk = (rope(fq), rope(fk)) if rope is not None else (fq, fk)
        kv = nk.transpose(-1, -2) @ v  # (Bf, H, D, Dv)
        return (nq @ kv) / den.clamp_min(1e-6)
    s = 1.0 / n if scale is None else scale
    kv = fk.transpose(-1, -2) @ v
    vsum = v.sum(-2, keepdim=True)
    centred = fq @ kv - (fq * ksum).sum(-1, keepdim=True) * vsum / n
    return centred * s + vsum / n


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
