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

from torch import Tensor, nn

from pointlib import features as ri_features
from pointlib.nn._grouping import GlobalCenter, KnnOrder, LraSign
from pointlib.nn._ri_layers import (
    RIFeaturePropagationBase,
    RINeighbourhoodLayer,
    RISetAbstractionBase,
)
from pointlib.nn.blocks import Gathered, SharedMLP

RICONV2_CHANNELS = 8


class _RIConv2Core(RINeighbourhoodLayer):
    """RIConv++ features (ring shift 1), embedding, ``mlp``, max; no attention."""

    feature_kind = "riconv2"

    def _build_core(
        self, in_channels: int, mlp: Sequence[int], embed_channels: Sequence[int]
    ) -> None:
        if not mlp:
            raise ValueError("mlp must have at least one width")
        self.embed = SharedMLP(RICONV2_CHANNELS, embed_channels)
        self.mlp = SharedMLP(self.embed.out_channels + in_channels, mlp)

    def ri_features(
        self, points: Tensor, normals: Tensor, centers: Tensor, center_normals: Tensor, idx: Tensor
    ) -> tuple[Tensor, Tensor]:
        return ri_features.riconv2_features(
            points, normals, centers, center_normals, idx, faithful=self.knn_order == "unsorted"
        )

    def aggregate(self, ri: Tensor, grouped: Gathered | None) -> Tensor:
        h = self.embed(ri)
        parts = [h] if grouped is None else [h, grouped]  # concatenation never built
        return self.mlp.fused(parts, pool_k=h.shape[-2])


class RIConv2SetAbstraction(_RIConv2Core, RISetAbstractionBase):
    r"""RIConv++ set-abstraction layer (spec §7.2).

    Args:
        npoint: centres ``S`` (FPS from index 0); ignored when ``group_all``.
        nsample: neighbours ``K`` (kNN, clipped to ``N``); ignored when ``group_all``.
        in_channels: previous-level channels ``D`` (0 for the first layer).
        mlp: widths of the ``Linear + BN + ReLU`` stack after the concatenation (the reference
            uses one entry, the output width ``C``).
        group_all: the global layer (centroid, all points, global reference axis).
        embed_channels: embedding widths (default: ``(32, 64)``).
        knn_order, lra_sign, global_center, fps_ties: quirk switches (fixed defaults).

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
        fps_ties: str = "lowest",
    ) -> None:
        super().__init__(
            npoint, nsample, in_channels, group_all=group_all, knn_order=knn_order,
            lra_sign=lra_sign, global_center=global_center, fps_ties=fps_ties,
        )  # fmt: skip
        self._build_core(in_channels, mlp, embed_channels)
        self.out_channels = self.mlp.out_channels


class RIConv2FeaturePropagation(_RIConv2Core, RIFeaturePropagationBase):
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
        super().__init__(nsample, in_channels, skip_channels, knn_order=knn_order)
        self._build_core(in_channels, mlp, embed_channels)
        self.mlp2 = SharedMLP(self.mlp.out_channels + skip_channels, mlp2)
        self.out_channels = self.mlp2.out_channels

    @property
    def skip_mlp(self) -> nn.Module:
        return self.mlp2
