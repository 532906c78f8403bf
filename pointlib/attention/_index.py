"""Validation and gathering of the attention core (head-split tensors, neighbour indices,
additive bias) - private helpers of :mod:`pointlib.attention.functional`."""

from __future__ import annotations

import torch
from torch import Tensor


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 4:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a head-split (B, H, N, D) tensor, got {shape}")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}; "
            "need q (B,H,Nq,D), k (B,H,Nk,D), v (B,H,Nk,Dv)"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k head widths differ: {q.shape[-1]} vs {k.shape[-1]}")


def _check_index(idx: Tensor, name: str, B: int, n: int, rows: int | None) -> Tensor:
    if idx.dim() != 3 or idx.shape[0] not in (1, B):
        raise ValueError(f"{name} must have shape (1 or B={B}, rows, K), got {tuple(idx.shape)}")
    if rows is not None and idx.shape[1] != rows:
        raise ValueError(f"{name} has {idx.shape[1]} rows, expected {rows} (one per query)")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(
            f"{name} is out of range: values in [{int(idx.min())}, {int(idx.max())}] "
            f"but there are {n} tokens"
        )
    return idx.long()


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """``x (B, H, N, D)``, ``idx (Bi, R, K)`` -> ``(B, R, H, K, D)`` (autograd through index)."""
    B, H, N, D = x.shape
    _Bi, R, K = idx.shape
    flat = x.transpose(1, 2).reshape(B * N, H * D)
    gidx = idx + (torch.arange(B, device=idx.device) * N).view(B, 1, 1)  # broadcasts Bi == 1
    out = flat.index_select(0, gidx.reshape(-1)).view(B, R, K, H, D)
    return out.transpose(2, 3)


def _fold_bias(bias: Tensor | None, shape: tuple[int, ...], K: int, M: int) -> Tensor | None:
    """Broadcast ``bias`` to ``shape[:-1] + (K + M,)`` (zeros on extras when it covers K only)."""
    if bias is None:
        return None
    last = bias.shape[-1]
    try:
        if last == K + M:
            return bias.expand(*shape[:-1], K + M)
        if M and last == K:
            b = bias.expand(*shape[:-1], K)
            return torch.cat([b, b.new_zeros(*shape[:-1], M)], -1)
        if last == 1:
            return bias.expand(*shape[:-1], K + M)
    except RuntimeError as e:
        raise ValueError(f"bias {tuple(bias.shape)} does not broadcast to {shape}") from e
    raise ValueError(f"bias last dim {last} must be K={K} or K+M={K + M} (logits {shape})")
