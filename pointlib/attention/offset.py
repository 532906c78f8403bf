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
kernel RISurConv's :class:`~pointlib.nn.OffsetAttention` / :class:`~pointlib.nn.GroupOffsetAttention`
call. The custom autograd function keeps ``q``, ``k``, ``v``, the softmax map and the (small)
normaliser for backward, and computes the gradients with batched matrix products:

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


def _softmax_map(q: Tensor, k: Tensor, scale: float) -> Tensor:
    s = q @ k.transpose(-1, -2)
    if scale != 1.0:
        s = s.mul_(scale)
    return torch.softmax(s, dim=-1)


def _forward(q: Tensor, k: Tensor, v: Tensor, scale: float, group: bool) -> tuple[Tensor, ...]:
    A = _softmax_map(q, k, scale)  # (*, G, L, L)
    L, Dv = A.shape[-1], v.shape[-1]
    if group:
        u = torch.reciprocal(A.sum(dim=-3, keepdim=True).add_(OFFSET_EPS))  # (*, 1, L, L)
        out = (A * u).transpose(-1, -2) @ v
    else:
        u = torch.reciprocal(A.sum(dim=-2, keepdim=True).add_(OFFSET_EPS))  # (*, G, 1, L)
        if L <= Dv:
            out = (A * u).transpose(-1, -2) @ v
        else:
            out = (A.transpose(-1, -2) @ v).mul_(u.transpose(-1, -2))
    return out, A, u


class _OffsetAttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float, group: bool) -> Tensor:  # type: ignore[override]
        out, A, u = _forward(q, k, v, scale, group)
        ctx.save_for_backward(q, k, v, A, u)
        ctx.scale, ctx.group = scale, group
        return out

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        q, k, v, A, u = ctx.saved_tensors
        scale = ctx.scale
        if ctx.group:
            At = A * u  # normalised map
            dv = At @ g
            P = v @ g.transpose(-1, -2)  # (*, G, L_i, L_j)
            dA = (P - (At * P).sum(dim=-3, keepdim=True)).mul_(u)
            del At
        else:
            gs = g * u.transpose(-1, -2)  # (*, G, L_j, Dv): G'_j = u_j G_j
            dv = A @ gs
            P = v @ gs.transpose(-1, -2)
            dA = P.sub_((A * P).sum(dim=-2, keepdim=True).mul_(u))
        dS = torch._softmax_backward_data(dA, A, -1, A.dtype)
        if scale != 1.0:
            dS = dS.mul_(scale)
        dq = dS @ k if ctx.needs_input_grad[0] else None
        dk = dS.transpose(-1, -2) @ q if ctx.needs_input_grad[1] else None
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
    return _forward(q, k, v, float(scale), group)[0]
