"""Neural-network layers: RISurConv, RIConv++ and PointNet++ blocks, attention, heads.

All public layers are **channels-last**: points ``(B, N, 3)``, features ``(B, N, C)``, grouped
features ``(B, M, K, C)``; 1x1 convolutions are :class:`torch.nn.Linear` maps on the last axis.

==================================  ========================================================
:class:`RISurConvSetAbstraction`     RISurConv SA layer (spec §2.1)
:class:`RISurConvFeaturePropagation`  RISurConv decoder layer (spec §2.4)
:class:`OffsetAttention`             offset attention among points (spec §2.2, ``SA_Layer``)
:class:`GroupOffsetAttention`        offset attention within neighbourhoods (§2.3, ``SA_Layer_2d``)
:class:`RingOutlook`                 outlook attention on angle-ordered rings (issue 17)
:class:`RISPEmbedding`               ``14 -> 32 -> 64`` conv-BN-conv-BN-ReLU embedding
:class:`RIConv2SetAbstraction`       RIConv++ SA layer (spec §7.2)
:class:`RIConv2FeaturePropagation`   RIConv++ decoder layer
:class:`PointNetSetAbstraction`      PointNet++ SSG SA layer (non-invariant baseline)
:class:`GlobalTransformer`           RISurConv's global TransformerEncoder head (spec §3.1)
:class:`ClassifierHead`              ``Linear-BN-ReLU-Dropout`` MLP head returning logits
:class:`Quirks`                      the spec §9 switches; presets ``FIXED`` and ``FAITHFUL``
==================================  ========================================================
"""

from __future__ import annotations

from pointlib.nn.blocks import BatchNormLast, LinearBNReLU, RISPEmbedding, SharedMLP
from pointlib.nn.heads import ClassifierHead, GlobalTransformer
from pointlib.nn.offset_attention import GroupOffsetAttention, OffsetAttention
from pointlib.nn.pointnet2 import PointNetSetAbstraction
from pointlib.nn.quirks import FAITHFUL, FIXED, Quirks
from pointlib.nn.riconv2 import RIConv2FeaturePropagation, RIConv2SetAbstraction
from pointlib.nn.ring_outlook import RingOutlook
from pointlib.nn.risurconv import RISurConvFeaturePropagation, RISurConvSetAbstraction

__all__ = [
    "FAITHFUL",
    "FIXED",
    "BatchNormLast",
    "ClassifierHead",
    "GlobalTransformer",
    "GroupOffsetAttention",
    "LinearBNReLU",
    "OffsetAttention",
    "PointNetSetAbstraction",
    "Quirks",
    "RIConv2FeaturePropagation",
    "RIConv2SetAbstraction",
    "RISPEmbedding",
    "RISurConvFeaturePropagation",
    "RISurConvSetAbstraction",
    "RingOutlook",
    "SharedMLP",
]
