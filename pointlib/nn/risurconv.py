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
from typing import Literal

import torch
from torch import Tensor, nn

from pointlib import features as ri_features
from pointlib import ops
from pointlib.nn._grouping import (
    KnnOrder,
    check_features_dim,
    check_inputs,
    knn_indices,
    ring_shift_for,
    sample_centers,
)
from pointlib.nn.blocks import LinearBNReLU, RISPEmbedding, SharedMLP, max_over_neighbours
from pointlib.nn.offset_attention import GroupOffsetAttention, NormAxis, OffsetAttention

LraSign = Literal["invariant", "raw"]
GlobalCenter = Literal["centroid", "origin"]


def global_group(
    xyz: Tensor,
    normals: Tensor,
    *,
    kind: Literal["risp", "riconv2"],
    knn_order: KnnOrder,
    lra_sign: LraSign,
    global_center: GlobalCenter,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``group_all`` grouping: one centre (the centroid) with all ``N`` points.

    The ordering axis is the global LRA (:func:`pointlib.features.global_reference_axis`, raw or
    invariant sign per ``lra_sign``), the neighbour list ``arange(N)``, the ordering centred at
    the centroid, and the feature origin ``p`` the centroid (``global_center="centroid"``) or the
    world origin (``"origin"``, the reference).

    Returns:
        ``(center (B, 1, 3), axis (B, 1, 3), feats (B, 1, N, F), idx_ordered (B, 1, N))`` with
        ``F = 14`` (``kind="risp"``) or ``8`` (``kind="riconv2"``).
    """
    if lra_sign not in ("invariant", "raw"):
        raise ValueError(f"lra_sign must be 'invariant' or 'raw', got {lra_sign!r}")
    if global_center not in ("centroid", "origin"):
        raise ValueError(f"global_center must be 'centroid' or 'origin', got {global_center!r}")
    B, N, _ = xyz.shape
    center = xyz.mean(dim=1, keepdim=True)
    axis = ri_features.global_reference_axis(xyz, faithful=lra_sign == "raw").reshape(B, 1, 3)
    idx = torch.arange(N, device=xyz.device).expand(B, 1, N)
    origin = torch.zeros_like(center) if global_center == "origin" else None
    fn = ri_features.risp_features if kind == "risp" else ri_features.riconv2_features
    feats, idx_ordered = fn(
        xyz, normals, center, axis, idx, faithful=knn_order == "unsorted", origin=origin
    )
    return center, axis, feats, idx_ordered


class RISurConvSetAbstraction(nn.Module):
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
        knn_order, ring_shift, sa2d_norm_axis, lra_sign, global_center: quirk switches (module
            docstring; defaults are the fixed behaviour, ``ring_shift=1``).

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
    ) -> None:
        super().__init__()
        if not group_all and (npoint is None or npoint < 1 or nsample is None or nsample < 1):
            raise ValueError("npoint and nsample must be >= 1 unless group_all=True")
        self.npoint, self.nsample, self.group_all = npoint, nsample, group_all
        self.in_channels, self.out_channels = in_channels, out_channels
        self.knn_order, self.ring_shift = knn_order, ring_shift
        self.lra_sign, self.global_center = lra_sign, global_center
        self.embed = RISPEmbedding(14, embed_channels)
        e = self.embed.out_channels
        self.attn_group = GroupOffsetAttention(e, norm_axis=sa2d_norm_axis)
        self.conv = LinearBNReLU(e + in_channels, out_channels, bias=True)
        self.attn_centers = OffsetAttention(out_channels)

    def group(self, xyz: Tensor, normals: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Centres, their normals, RISP features ``(B, S, K, 14)`` and ordered ``idx (B, S, K)``."""
        if self.group_all:
            return global_group(
                xyz, normals, kind="risp", knn_order=self.knn_order,
                lra_sign=self.lra_sign, global_center=self.global_center,
            )  # fmt: skip
        assert self.npoint is not None and self.nsample is not None
        centers, center_normals = sample_centers(xyz, normals, self.npoint, type(self).__name__)
        idx = knn_indices(xyz, self.nsample, centers, self.knn_order)
        shift = ring_shift_for(self.ring_shift, centers.shape[1])
        feats, idx_ordered = ri_features.risp_features(
            xyz, normals, centers, center_normals, idx,
            shift=shift, faithful=self.knn_order == "unsorted",
        )  # fmt: skip
        return centers, center_normals, feats, idx_ordered

    def forward(
        self, xyz: Tensor, normals: Tensor, feats: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        check_inputs(xyz, normals, feats, type(self).__name__)
        check_features_dim(feats, self.in_channels, type(self).__name__)
        centers, center_normals, ri, idx_ordered = self.group(xyz, normals)
        h = self.attn_group(self.embed(ri.to(xyz.dtype)))
        if feats is not None:
            h = torch.cat([h, ops.group(feats, idx_ordered)], dim=-1)
        h = max_over_neighbours(self.conv(h))
        return centers, center_normals, self.attn_centers(h)

    def extra_repr(self) -> str:
        return (
            f"npoint={self.npoint}, nsample={self.nsample}, group_all={self.group_all}, "
            f"knn_order={self.knn_order!r}, ring_shift={self.ring_shift}"
        )


class RISurConvFeaturePropagation(nn.Module):
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
        super().__init__()
        self.nsample, self.in_channels, self.skip_channels = nsample, in_channels, skip_channels
        self.knn_order, self.ring_shift = knn_order, ring_shift
        self.embed = RISPEmbedding(14, embed_channels)
        e = self.embed.out_channels
        self.attn_group = GroupOffsetAttention(e, norm_axis=sa2d_norm_axis)
        self.conv = LinearBNReLU(e + in_channels, out_channels, bias=True)
        self.attn_centers = OffsetAttention(out_channels)
        self.mlp = SharedMLP(out_channels + skip_channels, mlp)
        self.out_channels = self.mlp.out_channels

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
        shift = ring_shift_for(self.ring_shift, xyz1.shape[1])
        ri, idx_ordered = ri_features.risp_features(
            xyz2, normals2, xyz1, normals1, idx, shift=shift, faithful=self.knn_order == "unsorted"
        )
        h = self.attn_group(self.embed(ri.to(xyz1.dtype)))
        h = torch.cat([h, ops.group(feats2, idx_ordered)], dim=-1)
        h = self.attn_centers(max_over_neighbours(self.conv(h)))
        if feats1 is not None:
            h = torch.cat([h, feats1], dim=-1)
        return self.mlp(h)

    def extra_repr(self) -> str:
        return f"nsample={self.nsample}, knn_order={self.knn_order!r}, ring_shift={self.ring_shift}"
