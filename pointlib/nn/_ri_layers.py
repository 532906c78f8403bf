r"""The skeleton shared by the rotation-invariant set-abstraction and propagation layers (private).

RISurConv (:mod:`pointlib.nn.risurconv`) and RIConv++ (:mod:`pointlib.nn.riconv2`) layers do the
same thing around a family-specific core: pick centres (FPS, or the centroid for the global
layer), find their neighbours (kNN, or all points), compute rotation-invariant features of each
neighbourhood in ring order, and reduce ``[E(RI_k), f^{prev}_k]`` over the neighbours. A family
supplies the core as a mixin of :class:`RINeighbourhoodLayer` (``feature_kind``, ``ri_features``,
``aggregate``); :class:`RISetAbstractionBase` and :class:`RIFeaturePropagationBase` supply the
sampling, grouping, validation and skip handling.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from pointlib.nn._grouping import (
    FeatureKind,
    GlobalCenter,
    KnnOrder,
    LraSign,
    check_features_dim,
    check_inputs,
    global_group,
    knn_indices,
    sample_centers,
)
from pointlib.nn.blocks import Gathered


class RINeighbourhoodLayer(nn.Module):
    """A layer that reduces rotation-invariant neighbourhood features (abstract).

    Subclasses set ``feature_kind`` and implement :meth:`ri_features` and :meth:`aggregate`.
    """

    feature_kind: ClassVar[FeatureKind]
    knn_order: KnnOrder

    def ri_features(
        self, points: Tensor, normals: Tensor, centers: Tensor, center_normals: Tensor, idx: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Features ``(B, S, K, F)`` of ``points[idx]`` around ``centers`` and the ring-ordered
        ``idx (B, S, K)``."""
        raise NotImplementedError

    def aggregate(self, ri: Tensor, grouped: Gathered | None) -> Tensor:
        """``ri (B, S, K, F)`` and the previous features grouped by the ordered neighbour
        indices (a :class:`~pointlib.nn.blocks.Gathered` ``(B, S, K, D)``, not built; or
        ``None``) -> ``(B, S, C)``."""
        raise NotImplementedError


class RISetAbstractionBase(RINeighbourhoodLayer):
    """Set abstraction: FPS centres with their kNN, or (``group_all``) the global layer.

    Shapes:
        - input: ``xyz (B, N, 3)``, ``normals (B, N, 3)``, ``feats (B, N, D)`` or ``None``
        - output: ``new_xyz (B, S, 3)``, ``new_normals (B, S, 3)``, ``new_feats (B, S, C)``
    """

    def __init__(
        self,
        npoint: int | None,
        nsample: int | None,
        in_channels: int,
        *,
        group_all: bool,
        knn_order: KnnOrder,
        lra_sign: LraSign,
        global_center: GlobalCenter,
        fps_ties: str = "lowest",
    ) -> None:
        super().__init__()
        if not group_all and (npoint is None or npoint < 1 or nsample is None or nsample < 1):
            raise ValueError("npoint and nsample must be >= 1 unless group_all=True")
        self.npoint, self.nsample, self.group_all = npoint, nsample, group_all
        self.in_channels = in_channels
        self.knn_order, self.lra_sign, self.global_center = knn_order, lra_sign, global_center
        self.fps_ties = fps_ties

    def group(self, xyz: Tensor, normals: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Centres, their normals, features ``(B, S, K, F)`` and ordered ``idx (B, S, K)``.

        ``F = 14`` (RISP, RISurConv) or ``8`` (RIConv++); ``S = 1``, ``K = N`` for ``group_all``.
        """
        if self.group_all:
            return global_group(
                xyz, normals, kind=self.feature_kind, knn_order=self.knn_order,
                lra_sign=self.lra_sign, global_center=self.global_center,
            )  # fmt: skip
        assert self.npoint is not None and self.nsample is not None
        centers, center_normals = sample_centers(
            xyz, normals, self.npoint, type(self).__name__, tolerant=self.knn_order == "sorted",
            fps_ties=self.fps_ties,
        )  # fmt: skip
        idx = knn_indices(xyz, self.nsample, centers, self.knn_order)
        feats, idx_ordered = self.ri_features(xyz, normals, centers, center_normals, idx)
        return centers, center_normals, feats, idx_ordered

    def forward(
        self, xyz: Tensor, normals: Tensor, feats: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        check_inputs(xyz, normals, feats, type(self).__name__)
        check_features_dim(feats, self.in_channels, type(self).__name__)
        centers, center_normals, ri, idx_ordered = self.group(xyz, normals)
        grouped = None if feats is None else Gathered(feats, idx_ordered)
        return centers, center_normals, self.aggregate(ri.to(xyz.dtype), grouped)

    def extra_repr(self) -> str:
        return (
            f"npoint={self.npoint}, nsample={self.nsample}, group_all={self.group_all}, "
            f"knn_order={self.knn_order!r}"
        )


class RIFeaturePropagationBase(RINeighbourhoodLayer):
    """Feature propagation: each dense point is a centre, its ``K`` nearest sparse points the
    neighbours; the reduced sparse features are concatenated with the dense skip features and
    passed through :attr:`skip_mlp`.

    Shapes:
        - input: ``xyz1, normals1 (B, N1, 3)`` (dense), ``xyz2, normals2 (B, N2, 3)`` (sparse),
          ``feats1 (B, N1, D1)`` or ``None``, ``feats2 (B, N2, D2)``
        - output: ``(B, N1, out_channels)``
    """

    def __init__(
        self, nsample: int, in_channels: int, skip_channels: int, *, knn_order: KnnOrder
    ) -> None:
        super().__init__()
        self.nsample, self.in_channels, self.skip_channels = nsample, in_channels, skip_channels
        self.knn_order = knn_order

    @property
    def skip_mlp(self) -> nn.Module:
        """The stack applied after the skip concatenation."""
        raise NotImplementedError

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
        ri, idx_ordered = self.ri_features(xyz2, normals2, xyz1, normals1, idx)
        h = self.aggregate(ri.to(xyz1.dtype), Gathered(feats2, idx_ordered))
        if feats1 is not None:
            h = torch.cat([h, feats1], dim=-1)
        return self.skip_mlp(h)

    def extra_repr(self) -> str:
        return f"nsample={self.nsample}, knn_order={self.knn_order!r}"
