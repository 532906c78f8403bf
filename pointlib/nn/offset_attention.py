r"""RISurConv's two offset-attention blocks (spec §2.2, §2.3), channels-last.

Both are PCT-style *offset* attention with the "double normalisation": a row softmax over the
keys, then a division of every column by its sum over an axis (``+ 1e-9``), then

.. math::
    x_r[j] = \sum_i A[i, j]\, V[i], \qquad
    \mathrm{out} = x + \mathrm{ReLU}(\mathrm{BN}(W (x - x_r) + b)).

Single head, no ``1/sqrt(d)`` scaling, query/key projections ``C -> C/4`` without bias and not
shared, value and output projections ``C -> C`` with bias. The column normalisation is not a
softmax, so these maps cannot be routed through
:func:`torch.nn.functional.scaled_dot_product_attention` without changing the outputs; the maps
are built explicitly.

The map and ``x_r`` are computed by the shared attention core,
:func:`pointlib.attention.offset_attention` (hand-written backward, the normaliser applied to the
smaller of the ``L x L`` map and the ``L x C`` output); the three projections run as one
``C -> C/4 + C/4 + C`` matrix product and ``out_proj -> BN -> ReLU`` (+ the residual) as one fused
block (:func:`pointlib.nn.blocks.linear_bn_act`). Parameters and state-dict keys are those of
the separate ``q_proj``/``k_proj``/``v_proj``/``out_proj``/``norm`` modules.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.attention.offset import offset_attention
from pointlib.nn.blocks import BatchNormLast, linear_bn_act

NormAxis = Literal["query", "group"]


class _OffsetAttentionBase(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        if channels < reduction or channels % reduction:
            raise ValueError(f"channels={channels} must be a positive multiple of {reduction}")
        self.channels = channels
        self.q_proj = nn.Linear(channels, channels // reduction, bias=False)
        self.k_proj = nn.Linear(channels, channels // reduction, bias=False)
        self.v_proj = nn.Linear(channels, channels)
        self.out_proj = nn.Linear(channels, channels)
        self.norm = BatchNormLast(channels)

    def _attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Row-softmaxed map ``(..., L, L)`` (query i, key j) and values ``(..., L, C)``
        (unfused reference computation, kept for tests and inspection)."""
        q = self.q_proj(x)
        k = self.k_proj(x)
        attn = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        return attn, self.v_proj(x)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The three projections as one matrix product: views ``(..., C/4)``, ``(..., C/4)``,
        ``(..., C)`` of one ``(..., C/2 + C)`` tensor."""
        c4 = self.q_proj.out_features
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        vb = self.v_proj.bias
        b = torch.cat([vb.new_zeros(2 * c4), vb])
        q, k, v = F.linear(x, w, b).split([c4, c4, self.channels], dim=-1)
        return q, k, v

    def _offset(self, x: Tensor, l1_axis: NormAxis) -> Tensor:
        """``x + ReLU(BN(W (x - x_r) + b))`` for ``x (*, G, L, C)``."""
        q, k, v = self._qkv(x)
        x_r = offset_attention(q, k, v, l1_axis=l1_axis)
        d = x_r.neg_().add_(x)  # x - x_r in x_r's buffer (the kernel does not keep its output)
        return linear_bn_act(d, self.out_proj, self.norm, residual=x)

    def _residual(self, x: Tensor, x_r: Tensor) -> Tensor:
        return x + torch.relu(self.norm(self.out_proj(x - x_r)))


class OffsetAttention(_OffsetAttentionBase):
    r"""Offset self-attention among the points of a set (spec §2.2, ``SA_Layer``).

    The column normalisation runs over the query axis, ``A[i, j] / (1e-9 + sum_i A[i, j])``, so
    ``x_r[j]`` is a convex combination of the values. With a single point (``L = 1``, the global
    layer) ``x_r = V``.

    Args:
        channels: feature channels ``C`` (a multiple of 4).

    Shapes:
        - input: ``(B, L, C)`` channels-last (``L`` points, e.g. the ``S`` centres of a layer)
        - output: ``(B, L, C)``
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected (B, L, C), got {tuple(x.shape)}")
        return self._offset(x[:, None], "query")[:, 0]


class GroupOffsetAttention(_OffsetAttentionBase):
    r"""Offset self-attention among the ``K`` neighbours of each centre (§2.3, ``SA_Layer_2d``).

    Args:
        channels: feature channels ``C`` (a multiple of 4).
        norm_axis: the axis of the column normalisation (default: ``"query"``).

            - ``"query"`` (fixed): ``A[s, i, j] / (1e-9 + sum_i A[s, i, j])``, the PCT pattern;
              every neighbourhood is processed independently.
            - ``"group"`` (faithful, the reference code):
              ``A[s, i, j] / (1e-9 + sum_s A[s, i, j])``, a sum over the ``S`` **centres** of
              the same slot pair ``(i, j)``. Entries shrink to ``~1/S`` (the layer tends to
              ``x + ReLU(BN(W x + b))`` for large ``S``) and neighbourhoods of one sample
              are coupled through their ring order. Samples of a batch stay independent.

    Shapes:
        - input: ``(B, S, K, C)`` channels-last (``S`` centres, ``K`` neighbours)
        - output: ``(B, S, K, C)``
    """

    def __init__(self, channels: int, *, norm_axis: NormAxis = "query") -> None:
        super().__init__(channels)
        if norm_axis not in ("query", "group"):
            raise ValueError(f"norm_axis must be 'query' or 'group', got {norm_axis!r}")
        self.norm_axis: NormAxis = norm_axis

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected (B, S, K, C), got {tuple(x.shape)}")
        return self._offset(x, self.norm_axis)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, norm_axis={self.norm_axis!r}"
