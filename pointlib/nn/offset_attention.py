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

When the normalisation is over the query axis (the PCT pattern, and the only choice for
:class:`OffsetAttention`), ``x_r`` is computed as ``(A^T V) / colsum`` rather than by first
dividing ``A``: the same value, one full pass over the attention map less.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from pointlib.nn.blocks import BatchNormLast

NormAxis = Literal["query", "group"]
_EPS = 1e-9


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
        """Row-softmaxed map ``(..., L, L)`` (query i, key j) and values ``(..., L, C)``."""
        q = self.q_proj(x)
        k = self.k_proj(x)
        attn = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        return attn, self.v_proj(x)

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
        attn, v = self._attention(x)
        x_r = (attn.transpose(-1, -2) @ v) / (_EPS + attn.sum(dim=-2)).unsqueeze(-1)
        return self._residual(x, x_r)


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
        attn, v = self._attention(x)  # (B, S, K, K), (B, S, K, C)
        if self.norm_axis == "query":
            x_r = (attn.transpose(-1, -2) @ v) / (_EPS + attn.sum(dim=-2)).unsqueeze(-1)
        else:
            attn = attn / (_EPS + attn.sum(dim=1, keepdim=True))
            x_r = attn.transpose(-1, -2) @ v
        return self._residual(x, x_r)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, norm_axis={self.norm_axis!r}"
