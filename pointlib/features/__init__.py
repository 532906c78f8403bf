"""Rotation-invariant local features: pure functions, no parameters (spec §1, §7.1, §9).

=================================  ===========================================================
``risp_features``                  the 14 RISurConv features ``(B, M, K, 14)`` + ring order
``risp_features_global``           the same for the global (``group_all``) layer
``riconv2_features``               the 8 RIConv++ features ``(B, M, K, 8)`` + ring order
``riconv2_features_global``        the same for the global layer
``global_grouping``                the global layer's grouping with its three switches
``order_neighbors``                angular neighbour ordering around an axis (spec §1.3)
``ring_shift``                     ring shift ``s`` (faithful: 2 if ``M >= 1024``)
``local_reference_axis``           per-point weighted-PCA axis (LRA, spec §1.6)
``global_reference_axis``          the LRA of the whole cloud about its centroid
``estimate_normals``               LRA normals for clouds without normals
=================================  ===========================================================

Every function takes ``faithful``: ``True`` reproduces the reference code's quirks (slot-0 sign
rule, reference neighbour mid-ring, raw eigensolver signs, origin-as-``p`` in the global layer);
``False`` (default) uses the fixed, rotation-invariant variants. Cross products are always taken
along the last dimension. See ``docs/features.md`` for the invariance claims.
"""

from __future__ import annotations

from pointlib.features.global_layer import (
    global_grouping,
    riconv2_features_global,
    risp_features_global,
)
from pointlib.features.lra import estimate_normals, global_reference_axis, local_reference_axis
from pointlib.features.ordering import NeighborOrder, order_neighbors, ring_shift
from pointlib.features.riconv2 import RICONV2_CHANNELS, riconv2_features
from pointlib.features.risp import RISP_CHANNELS, risp_features

__all__ = [
    "RICONV2_CHANNELS",
    "RISP_CHANNELS",
    "NeighborOrder",
    "estimate_normals",
    "global_grouping",
    "global_reference_axis",
    "local_reference_axis",
    "order_neighbors",
    "riconv2_features",
    "riconv2_features_global",
    "ring_shift",
    "risp_features",
    "risp_features_global",
]
