r"""RIConv++ set abstraction and feature propagation (spec §7.2), channels-last.

The same sampling, kNN, ring ordering and global layer as RISurConv
(:mod:`pointlib.nn.risurconv`), but the 8 RIConv++ features
(:func:`pointlib.features.riconv2_features`, ring shift always 1), an embedding
``Linear(8 -> 32) + BN + ReLU -> Linear(32 -> 64) + BN + ReLU`` (with biases), and **no attention**:

.. math::
    f(p) = \max_{k}\ \mathrm{MLP}\big([E(\mathrm{RI}_k),\ f^{prev}_{k}]\big)

Quirk switches: ``knn_order``, and for the global layer ``lra_sign`` / ``global_center``, as in
:mod:`pointlib.nn.risurconv`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pointlib import features as ri_features
from pointlib import ops
from pointlib.nn._grouping import (
    KnnOrder,
    check_features_dim,
    check_inputs,
    knn_indices,
    sample_centers,
)
from pointlib.nn.blocks import SharedMLP, max_over_neighbours
from pointlib.nn.risurconv import GlobalCenter, LraSign, global_group

RICONV2_CHANNELS = 8


class RIConv2SetAbstraction(nn.Module):
    r"""RIConv++ set-abstraction layer (spec §7.2).

    Args:
        npoint: centres ``S`` (FPS from index 0); ignored when ``group_all``.
        nsample: neighbours ``K`` (kNN, clipped to ``N``); ignored when ``group_all``.
        in_channels: previous-level channels ``D`` (0 for the first layer).
        mlp: widths of the ``Linear + BN + ReLU`` stack after the concatenation (the reference
            uses one entry, the output width ``C``).
        group_all: the global layer (centroid, all points, global reference axis).
        embed_channels: embedding widths (default: ``(32, 64)``).
        knn_order, lra_sign, global_center: quirk switches (fixed defaults).

    Shapes:
        - input: ``xyz (B, N, 3)``, ``normals (B, N, 3)``, ``feats (B, N, D)`` or ``None``
        - output: ``new_xyz (B, S, 3)``, ``new_normals (B, S, 3)``, ``new_feats (B, S, C)``
    """

    def __init__(
        self,
        npoint: int | None,
        nsample: int | None,
        in_channels: int,
        mlp: Sequence[int],
        *,
        group_all: bool = False,
        embed_channels: Sequence[int] = (32, 64),
        knn_order: KnnOrder = "sorted",
        lra_sign: LraSign = "invariant",
        global_center: GlobalCenter = "centroid",
    ) -> None:
        super().__init__()
        if not group_all and (npoint is None or npoint < 1 or nsample is None or nsample < 1):
            raise ValueError("npoint and nsample must be >= 1 unless group_all=True")
        if not mlp:
            raise ValueError("mlp must have at least one width")
        self.npoint, self.nsample, self.group_all = npoint, nsample, group_all
        self.in_channels = in_channels
        self.knn_order, self.lra_sign, self.global_center = knn_order, lra_sign, global_center
        self.embed = SharedMLP(RICONV2_CHANNELS, embed_channels)
        self.mlp = SharedMLP(self.embed.out_channels + in_channels, mlp)
        self.out_channels = self.mlp.out_channels

    def group(self, xyz: Tensor, normals: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Centres, their normals, RIConv++ features ``(B, S, K, 8)``, ordered ``idx (B, S, K)``."""
        if self.group_all:
            return global_group(
                xyz, normals, kind="riconv2", knn_order=self.knn_order,
                lra_sign=self.lra_sign, global_center=self.global_center,
            )  # fmt: skip
        assert self.npoint is not None and self.nsample is not None
        centers, center_normals = sample_centers(xyz, normals, self.npoint, type(self).__name__)
        idx = knn_indices(xyz, self.nsample, centers, self.knn_order)
        feats, idx_ordered = ri_features.riconv2_features(
            xyz, normals, centers, center_normals, idx, faithful=self.knn_order == "unsorted"
        )
        return centers, center_normals, feats, idx_ordered

    def forward(
        self, xyz: Tensor, normals: Tensor, feats: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        check_inputs(xyz, normals, feats, type(self).__name__)
        check_features_dim(feats, self.in_channels, type(self).__name__)
        centers, center_normals, ri, idx_ordered = self.group(xyz, normals)
        h = self.embed(ri.to(xyz.dtype))
        if feats is not None:
            h = torch.cat([h, ops.group(feats, idx_ordered)], dim=-1)
        return centers, center_normals, max_over_neighbours(self.mlp(h))

    def extra_repr(self) -> str:
        return (
            f"npoint={self.npoint}, nsample={self.nsample}, group_all={self.group_all}, "
            f"knn_order={self.knn_order!r}"
        )


class RIConv2FeaturePropagation(nn.Module):
    r"""RIConv++ feature propagation (the reference's ``FeaturePropagation_v2``).

    Dense points are centres; their ``K`` nearest sparse points the neighbours. RIConv++
    features -> embedding -> concat sparse features -> ``mlp`` -> max over ``K`` -> concat the dense
    skip features -> ``mlp2``.

    Args:
        nsample: neighbours ``K`` in the sparse level (clipped to ``N2``).
        in_channels: sparse feature channels ``D2``.
        mlp: widths after the concatenation with the embedding (at least one).
        skip_channels: dense skip channels ``D1``.
        mlp2: widths after the skip concatenation; empty returns the concatenation.
        embed_channels, knn_order: as for :class:`RIConv2SetAbstraction`.

    Shapes:
        - input: ``xyz1, normals1 (B, N1, 3)`` (dense), ``xyz2, normals2 (B, N2, 3)`` (sparse),
          ``feats1 (B, N1, D1)`` or ``None``, ``feats2 (B, N2, D2)``
        - output: ``(B, N1, mlp2[-1])`` (``mlp[-1] + D1`` when ``mlp2`` is empty)
    """

    def __init__(
        self,
        nsample: int,
        in_channels: int,
        mlp: Sequence[int],
        skip_channels: int = 0,
        mlp2: Sequence[int] = (),
        *,
        embed_channels: Sequence[int] = (32, 64),
        knn_order: KnnOrder = "sorted",
    ) -> None:
        super().__init__()
        if not mlp:
            raise ValueError("mlp must have at least one width")
        self.nsample, self.in_channels, self.skip_channels = nsample, in_channels, skip_channels
        self.knn_order = knn_order
        self.embed = SharedMLP(RICONV2_CHANNELS, embed_channels)
        self.mlp = SharedMLP(self.embed.out_channels + in_channels, mlp)
        self.mlp2 = SharedMLP(self.mlp.out_channels + skip_channels, mlp2)
        self.out_channels = self.mlp2.out_channels

    def forward(
        self,
        xyz1: Tensor,
        normals1: Tensor,
        xyz2: Tensor,
        normals2: Tensor,
        feats1: Tensor | None,
        feats2: Tensor,
    ) -> Tensor:
        name = type(self).__name__
        check_inputs(xyz1, normals1, feats1, name)
        check_inputs(xyz2, normals2, feats2, name)
        check_features_dim(feats1, self.skip_channels, name + " (skip)")
        check_features_dim(feats2, self.in_channels, name)
        idx = knn_indices(xyz2, self.nsample, xyz1, self.knn_order)
        ri, idx_ordered = ri_features.riconv2_features(
            xyz2, normals2, xyz1, normals1, idx, faithful=self.knn_order == "unsorted"
        )
        h = torch.cat([self.embed(ri.to(xyz1.dtype)), ops.group(feats2, idx_ordered)], dim=-1)
        h = max_over_neighbours(self.mlp(h))
        if feats1 is not None:
            h = torch.cat([h, feats1], dim=-1)
        return self.mlp2(h)

    def extra_repr(self) -> str:
        return f"nsample={self.nsample}, knn_order={self.knn_order!r}"
