"""Shared attention core for points and images (issue 6).

One formula, ``out_i = sum_{j in N(i)} softmax_j(q_i . k_j * s + bias(i, j)) v_j``, in three modes
selected by a :class:`Neighborhood`:

* ``global``: no index (ViT, ConViT, CrossViT, linear attention);
* ``query``: a per-query index ``(B, Nq, K)`` (NAT grid windows, kNN point attention);
* ``group``: full attention inside index groups ``(B, G, K)``, optionally with separate query
  groups (Swin/DaViT windows, HaloNet blocks, BiFormer routed regions, RISurConv neighbourhoods).

Extensions: extra global tokens under the same softmax, ConViT's gated positional softmax, a
linear kernel (positive / InLine injective / RALA), DaViT channel-token attention and the
PCT/RISurConv offset kernel (:func:`offset_attention`: dense groups, hand-written backward; the
kernel RISurConv's attention blocks run on). See ``docs/attention.md``.

>>> import torch
>>> from pointlib.attention import attention, knn_neighborhood
>>> pos = torch.randn(2, 64, 3)
>>> nbr = knn_neighborhood(pos, 8)
>>> q = k = v = torch.randn(2, 4, 64, 16)
>>> attention(q, k, v, nbr).shape
torch.Size([2, 4, 64, 16])
"""

from __future__ import annotations

from pointlib.attention.functional import attention, channel_attention, feature_map
from pointlib.attention.modules import ChannelAttention, NeighborhoodAttention
from pointlib.attention.neighborhood import (
    Neighborhood,
    ball_neighborhood,
    grid,
    knn_neighborhood,
    route,
    windows,
)
from pointlib.attention.offset import offset_attention
from pointlib.attention.position import (
    ContentRelPos,
    GatedPositional,
    RelPosMLP,
    RelPosTable,
)
from pointlib.attention.spec import AttentionSpec

__all__ = [
    "AttentionSpec",
    "ChannelAttention",
    "ContentRelPos",
    "GatedPositional",
    "Neighborhood",
    "NeighborhoodAttention",
    "RelPosMLP",
    "RelPosTable",
    "attention",
    "ball_neighborhood",
    "channel_attention",
    "feature_map",
    "grid",
    "knn_neighborhood",
    "offset_attention",
    "route",
    "windows",
]
