r"""The PCT / RISurConv offset-attention kernel on dense groups, with a hand-written backward.

For groups of ``L`` tokens (a point cloud's centres, a centre's ``K`` neighbours, an image
window), with ``A = softmax_j(q_i . k_j * scale)`` per group (query ``i``, key ``j``):

.. math::
    \tilde A_{gij} = \frac{A_{gij}}{\epsilon + \sum_{a} A_{aij}}, \qquad
    \mathrm{out}_{gj} = \sum_i \tilde A_{gij}\, v_{gi}, \qquad \epsilon = 10^{-9},

where the normalising sum runs over the queries ``a = i'`` of the same group (``l1_axis="query"``,
PCT; groups independent) or over the groups ``a = g'`` at the same slot pair ``(i, j)``
(``l1_axis="group"``, RISurConv's ``SA_Layer_2d``; couples the groups of a batch element).

This is the fast path of :func:`pointlib.attention.attention` with ``kernel="offset"``, and the
kernel that RISurConv's :class:`~pointlib.nn.OffsetAttention` and
:class:`~pointlib.nn.GroupOffsetAttention` call. The maps are built in blocks of groups
(:data:`MAP_BLOCK` elements) and never kept: the custom autograd function saves ``q``, ``k``,
``v`` only, recomputes each block's softmax map in
backward and computes the gradients with batched matrix products:

- ``G' = u G`` (query axis, ``u_j = 1 / (\epsilon + \sum_i A_ij)``), ``dv = A G'``,
  ``P = v G'^T``, ``dA = P - u \odot \sum_i (A \odot P)``;
- group axis: ``dv = \tilde A G``, ``P = v G^T``, ``dA = u \odot (P - \sum_g \tilde A \odot P)``;
- then the softmax backward and ``dq = dS k * scale``, ``dk = dS^T q * scale``.

With the query axis the normaliser is applied to whichever is smaller, the ``L x L`` map or the
``L x Dv`` output (the same value).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["OFFSET_EPS", "offset_attention"]

#: the ``1e-9`` of the column normalisation (PCT, RISurConv)
OFFSET_EPS = 1e-9

L1Axis = Literal["query", "group"]


#: attention-map elements per block of groups (4 MiB in float32): the maps are built, used and
#: freed block by block, so no map larger than this is ever allocated (on CPU a fresh tensor
#: above glibc's mmap threshold is page-faulted in on every allocation).
MAP_BLOCK = 1 << 20


def _softmax_map(q: Tensor, k: Tensor, scale: float) -> Tensor:
    s = q @ k.transpose(-1, -2)
    if scale != 1.0:
        s = s.mul_(scale)
    return torch.softmax(s, dim=-1)


def _normaliser(A: Tensor, group: bool) -> Tensor:
    """``u = 1 / (eps + sum)``: ``(N, 1, L, L)`` (group axis) or ``(N, G, 1, L)`` (query)."""
    return torch.reciprocal(A.sum(dim=-3 if group else -2, keepdim=True).add_(OFFSET_EPS))


def _fold(q: Tensor, group: bool) -> tuple[int, int]:
    """Blocking of ``(N, G, L, D)``: ``(items, per_block)`` along axis 0 after folding the
    groups into it for the query axis (groups independent)."""
    N, G, L = q.shape[0], q.shape[1], q.shape[2]
    if group:
        return N, max(1, MAP_BLOCK // max(1, G * L * L))
    return N * G, max(1, MAP_BLOCK // max(1, L * L))


def _as_blocks(t: Tensor, group: bool) -> Tensor:
    """``(N, G, L, D)`` -> ``(N, G, L, D)`` (group axis) or ``(N * G, 1, L, D)`` (query)."""
    return t if group else t.reshape(-1, 1, *t.shape[2:])


def _forward_block(q: Tensor, k: Tensor, v: Tensor, scale: float, group: bool, out: Tensor) -> None:
    A = _softmax_map(q, k, scale)  # (n, G, L, L)
    u = _normaliser(A, group)
    if group or A.shape[-1] <= v.shape[-1]:
        torch.matmul(A.mul_(u).transpose(-1, -2), v, out=out)
    else:
        torch.matmul(A.transpose(-1, -2), v, out=out).mul_(u.transpose(-1, -2))


def _forward(q: Tensor, k: Tensor, v: Tensor, scale: float, group: bool) -> Tensor:
    """``(*, G, L, *)`` inputs -> a fresh ``(*, G, L, Dv)`` tensor (never a view), computed in
    blocks of groups."""
    G, L = q.shape[-3], q.shape[-2]
    q4, k4, v4 = (t.reshape(-1, G, L, t.shape[-1]) for t in (q, k, v))
    n, per = _fold(q4, group)
    qb, kb, vb = (_as_blocks(t, group) for t in (q4, k4, v4))
    out = v.new_empty(v.shape)
    ob = _as_blocks(out.view(v4.shape), group)
    for a in range(0, n, per):
        b = min(n, a + per)
        _forward_block(qb[a:b], kb[a:b], vb[a:b], scale, group, ob[a:b])
    return out


def _backward_block(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    scale: float,
    group: bool,
    out: tuple[Tensor, Tensor, Tensor],
) -> None:
    """Gradients of one block of groups, written into ``out = (dq, dk, dv)``."""
    dq, dk, dv = out
    A = _softmax_map(q, k, scale)  # recomputed, bitwise as in forward
    u = _normaliser(A, group)
    if group:
        At = A * u  # normalised map
        torch.matmul(At, g, out=dv)
        P = v @ g.transpose(-1, -2)  # (n, G, L_i, L_j)
        dA = P.sub_((At.mul_(P)).sum(dim=-3, keepdim=True)).mul_(u)
        del At
    else:
        gs = g * u.transpose(-1, -2)  # G'_j = u_j G_j
        torch.matmul(A, gs, out=dv)
        P = v @ gs.transpose(-1, -2)
        dA = P.sub_((A * P).sum(dim=-2, keepdim=True).mul_(u))
    dS = torch._softmax_backward_data(dA, A, -1, A.dtype)
    if scale != 1.0:
        dS = dS.mul_(scale)
    torch.matmul(dS, k, out=dq)
    torch.matmul(dS.transpose(-1, -2), q, out=dk)


class _OffsetAttentionFn(torch.autograd.Function):
    """Keeps ``q``, ``k``, ``v``; the maps are recomputed block by block in backward."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float, group: bool) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(q, k, v)
        ctx.scale, ctx.group = scale, group
        return _forward(q, k, v, scale, group)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        q, k, v = ctx.saved_tensors
        scale, group = ctx.scale, ctx.group
        G, L = q.shape[-3], q.shape[-2]
        q4, k4, v4, g4 = (t.reshape(-1, G, L, t.shape[-1]) for t in (q, k, v, g))
        n, per = _fold(q4, group)
        qb, kb, vb, gb = (_as_blocks(t, group) for t in (q4, k4, v4, g4))
        dq, dk, dv = q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
        dqb, dkb, dvb = (
            _as_blocks(t.view(s.shape), group) for t, s in ((dq, q4), (dk, k4), (dv, v4))
        )
        for a in range(0, n, per):
            b = min(n, a + per)
            _backward_block(
                qb[a:b], kb[a:b], vb[a:b], gb[a:b], scale, group, (dqb[a:b], dkb[a:b], dvb[a:b])
            )
        return dq, dk, dv, None, None


def offset_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    l1_axis: L1Axis = "query",
    scale: float = 1.0,
) -> Tensor:
    r"""Offset attention inside dense groups (PCT / RISurConv double normalisation).

    Args:
        q: ``(*, G, L, D)`` queries: ``G`` groups of ``L`` tokens (``G = 1`` for one set, e.g.
            ``(B, 1, S, D)`` for attention among a cloud's ``S`` centres, or ``(B, S, K, D)``
            for each centre's ``K`` neighbours); any leading batch shape ``*``.
        k: ``(*, G, L, D)`` keys.
        v: ``(*, G, L, Dv)`` values.
        l1_axis: ``"query"`` (normalise each key column over the group's queries) or
            ``"group"`` (over the ``G`` groups at the same slot pair), see the module docstring.
        scale: logit scale (``1.0``: PCT and RISurConv use none).

    Returns:
        ``(*, G, L, Dv)``: ``out[..., g, j, :] = sum_i Ã[g, i, j] v[..., g, i, :]``. Differentiable
        in ``q``, ``k`` and ``v`` (hand-written backward); runs under :func:`torch.compile`.
    """
    if q.dim() < 3 or q.shape != k.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(
            f"need q, k (*, G, L, D) and v (*, G, L, Dv); got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if l1_axis not in ("query", "group"):
        raise ValueError(f"l1_axis must be 'query' or 'group', got {l1_axis!r}")
    group = l1_axis == "group"
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _OffsetAttentionFn.apply(q, k, v, float(scale), group)
    return _forward(q, k, v, float(scale), group)
