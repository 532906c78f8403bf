r"""RISurConv set abstraction and feature propagation (spec §2.1, §2.4), channels-last.

A layer groups each centre with its ``K`` nearest neighbours, computes the 14 rotation-invariant
surface features (:func:`pointlib.features.risp_features`), embeds them (``14 -> 32 -> 64``),
applies offset attention among the neighbours (:class:`GroupOffsetAttention`), concatenates the
previous level's features of the (ring-ordered) neighbours, applies ``Linear + BN + ReLU``,
max-pools over the neighbours and applies offset attention among the centres
(:class:`OffsetAttention`):

.. math::
    f(p) = \mathrm{SA}\Big(\max_{k}\ \mathrm{ReLU}\big(\mathrm{BN}(
        W\,[\mathrm{SA_{2d}}(E(\mathrm{RISP}_k)),\ f^{prev}_{k}] + b)\big)\Big)

Quirk switches (spec §9), each a constructor argument; the model classes set them from
``faithful``:

- ``knn_order``: ``"sorted"`` (fixed: ascending distance, ties to the lower index, and the
  fixed ring ordering of :func:`~pointlib.features.risp_features`) or ``"unsorted"`` (faithful:
  ``topk(sorted=False)`` and the reference ordering with its slot-0 sign rule).
- ``ring_shift``: an ``int`` (fixed: a constant for the layer) or ``None`` (faithful: 2 when the
  number of centres at call time is ``>= 1024``, else 1).
- ``sa2d_norm_axis``: ``"query"`` (fixed) or ``"group"`` (faithful), see
  :class:`GroupOffsetAttention`.
- global layer only: ``lra_sign`` (``"invariant"`` / ``"raw"``) and ``global_center``
  (``"centroid"`` / ``"origin"``), see :mod:`pointlib.features`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from pointlib import features as ri_features
from pointlib.nn._grouping import (  # noqa: F401  (global_group: re-exported, as before)
    GlobalCenter,
    KnnOrder,
    LraSign,
    global_group,
    ring_shift_for,
)
from pointlib.nn._ri_layers import (
    RIFeaturePropagationBase,
    RINeighbourhoodLayer,
    RISetAbstractionBase,
)
from pointlib.nn.blocks import Gathered, LinearBNReLU, RISPEmbedding, SharedMLP
from pointlib.nn.offset_attention import GroupOffsetAttention, NormAxis, OffsetAttention


class _RISurConvCore(RINeighbourhoodLayer):
    """RISP features (ring shift per layer), embedding, group attention, conv, max, centre
    attention."""

    feature_kind = "risp"
    ring_shift: int | None

    def _build_core(
        self,
        in_channels: int,
        out_channels: int,
        embed_channels: Sequence[int],
        ring_shift: int | None,
        sa2d_norm_axis: NormAxis,
    ) -> None:
        self.ring_shift = ring_shift
        self.embed = RISPEmbedding(14, embed_channels)
        e = self.embed.out_channels
        self.attn_group = GroupOffsetAttention(e, norm_axis=sa2d_norm_axis)
        self.conv = LinearBNReLU(e + in_channels, out_channels, bias=True)
        self.attn_centers = OffsetAttention(out_channels)

    def ri_features(
        self, points: Tensor, normals: Tensor, centers: Tensor, center_normals: Tensor, idx: Tensor
    ) -> tuple[Tensor, Tensor]:
        shift = ring_shift_for(self.ring_shift, centers.shape[1])
        return ri_features.risp_features(
            points, normals, centers, center_normals, idx,
            shift=shift, faithful=self.knn_order == "unsorted",
        )  # fmt: skip

    def aggregate(self, ri: Tensor, grouped: Gathered | None) -> Tensor:
        h = self.attn_group(self.embed(ri))
        parts = [h] if grouped is None else [h, grouped]  # concatenation never built
        return self.attn_centers(self.conv.fused(parts, pool_k=h.shape[-2]))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ring_shift={self.ring_shift}"


class RISurConvSetAbstraction(_RISurConvCore, RISetAbstractionBase):
    r"""RISurConv set-abstraction layer (spec §2.1).

    Args:
        npoint: number of centres ``S`` (FPS from index 0); ignored when ``group_all``.
        nsample: neighbours ``K`` per centre (kNN, the centre included); clipped to ``N`` when the
            input has fewer points. Ignored when ``group_all`` (``K = N``).
        in_channels: channels ``D`` of the previous level's features (0 for the first layer).
        out_channels: output channels ``C``.
        group_all: the global layer: one centre (centroid), all points as neighbours, its normal
            the global reference axis (default: ``False``).
        embed_channels: widths of the RISP embedding (default: ``(32, 64)``).
        knn_order, ring_shift, sa2d_norm_axis, lra_sign, global_center, fps_ties: quirk switches
            (module docstring; defaults are the fixed behaviour, ``ring_shift=1``).

    Shapes:
        - input: ``xyz (B, N, 3)``, ``normals (B, N, 3)``, ``feats (B, N, D)`` or ``None``
        - output: ``new_xyz (B, S, 3)``, ``new_normals (B, S, 3)``, ``new_feats (B, S, C)``
          (``S = 1`` for ``group_all``; ``new_xyz`` is then the centroid)
    """

    def __init__(
        self,
        npoint: int | None,
        nsample: int | None,
        in_channels: int,
        out_channels: int,
        *,
        group_all: bool = False,
        embed_channels: Sequence[int] = (32, 64),
        knn_order: KnnOrder = "sorted",
        ring_shift: int | None = 1,
        sa2d_norm_axis: NormAxis = "query",
        lra_sign: LraSign = "invariant",
        global_center: GlobalCenter = "centroid",
        fps_ties: str = "lowest",
    ) -> None:
        super().__init__(
            npoint, nsample, in_channels, group_all=group_all, knn_order=knn_order,
            lra_sign=lra_sign, global_center=global_center, fps_ties=fps_ties,
        )  # fmt: skip
        self.out_channels = out_channels
        self._build_core(in_channels, out_channels, embed_channels, ring_shift, sa2d_norm_axis)


class RISurConvFeaturePropagation(_RISurConvCore, RIFeaturePropagationBase):
    r"""RISurConv feature propagation for the segmentation decoder (spec §2.4).

    Every dense point (with its own normal) is a centre whose ``K`` nearest **sparse** points are
    its neighbours; the sparse features are propagated by RISP embedding + group attention +
    ``Linear + BN + ReLU`` + max + centre attention (no interpolation kernel), then concatenated
    with the dense level's skip features and passed through ``mlp``.

    Args:
        nsample: neighbours ``K`` in the sparse level (clipped to ``N2``).
        in_channels: sparse feature channels ``D2``.
        out_channels: channels ``C`` after the conv and pooling.
        skip_channels: dense skip channels ``D1`` (0 when there is none).
        mlp: widths of the ``Linear + BN + ReLU`` stack applied to ``[C, D1]``; empty returns the
            concatenation (default: ``()``).
        embed_channels, knn_order, ring_shift, sa2d_norm_axis: as for
            :class:`RISurConvSetAbstraction` (``ring_shift=None`` uses ``N1`` at call time).

    Shapes:
        - input: ``xyz1 (B, N1, 3)``, ``normals1 (B, N1, 3)`` (dense), ``xyz2 (B, N2, 3)``,
          ``normals2 (B, N2, 3)`` (sparse), ``feats1 (B, N1, D1)`` or ``None``,
          ``feats2 (B, N2, D2)``
        - output: ``(B, N1, mlp[-1])`` (``C + D1`` when ``mlp`` is empty)
    """

    def __init__(
        self,
        nsample: int,
        in_channels: int,
        out_channels: int,
        skip_channels: int = 0,
        mlp: Sequence[int] = (),
        *,
        embed_channels: Sequence[int] = (32, 64),
        knn_order: KnnOrder = "sorted",
        ring_shift: int | None = 1,
        sa2d_norm_axis: NormAxis = "query",
    ) -> None:
        super().__init__(nsample, in_channels, skip_channels, knn_order=knn_order)
        self._build_core(in_channels, out_channels, embed_channels, ring_shift, sa2d_norm_axis)
        self.mlp = SharedMLP(out_channels + skip_channels, mlp)
        self.out_channels = self.mlp.out_channels

    @property
    def skip_mlp(self) -> nn.Module:
        return self.mlp
