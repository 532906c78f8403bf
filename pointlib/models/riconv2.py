"""RIConv++ classification and part-segmentation networks (spec §7.2) and registered variants.

Registered: ``riconv2_cls`` (the RISurConv schedule and widths, FC head; 420,431 parameters with
15 classes, as logged by the reference), ``riconv2_partseg`` and their ``*_tiny`` variants.
Both return **logits** (the reference applies ``log_softmax``; same argmax).

Quirk switches: ``knn_order``, ``lra_sign``, ``global_center`` as in
:mod:`pointlib.nn.quirks`; the others (ring shift, attention, transformer) do not exist in
RIConv++ and are accepted and ignored so that the constructors of all models take the same
keywords.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pointlib.models._point_base import (
    TINY_CLS,
    TINY_SEG,
    RIClassifier,
    RIPartSegmenter,
    check_cls_config,
    check_seg_config,
    decoder_stack,
    encoder_stack,
    part_head,
)
from pointlib.models._registry import register_model
from pointlib.nn.heads import ClassifierHead
from pointlib.nn.riconv2 import RIConv2FeaturePropagation, RIConv2SetAbstraction

__all__ = ["RIConv2Cls", "RIConv2PartSeg"]


class RIConv2Cls(RIClassifier):
    r"""RIConv++ classifier: four kNN set-abstraction layers, a global layer, an MLP head.

    Args:
        num_classes: classes (default: ``40``).
        n: centre-count scale (2 for 1024-point ModelNet40, 1 for ScanObjectNN).
        faithful: reference quirks (unsorted kNN ordering, raw LRA sign, origin as the global
            layer's ``p``); default fixed and rotation invariant.
        knn_order, lra_sign, global_center, fps_ties: individual overrides (``None``: preset);
            ring_shift, sa2d_norm_axis, transformer_over_batch: accepted, unused.
        npoints, nsamples, channels, embed_channels, head_hidden, dropout, normals_k: as for
            :class:`pointlib.models.risurconv.RISurConvCls`.

    Shapes:
        - input: ``xyz (B, N, 3)``, ``normals (B, N, 3)`` or ``None``
        - output: logits ``(B, num_classes)``
    """

    def __init__(
        self,
        num_classes: int = 40,
        *,
        n: int = 2,
        faithful: bool = False,
        knn_order: str | None = None,
        ring_shift: str | None = None,
        sa2d_norm_axis: str | None = None,
        transformer_over_batch: bool | None = None,
        lra_sign: str | None = None,
        global_center: str | None = None,
        fps_ties: str | None = None,
        npoints: Sequence[int] = (512, 256, 128, 64),
        nsamples: Sequence[int] = (8, 16, 32, 64),
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        embed_channels: Sequence[int] = (32, 64),
        head_hidden: Sequence[int] = (256, 128),
        dropout: float = 0.4,
        normals_k: int = 32,
    ) -> None:
        super().__init__()
        check_cls_config(npoints, nsamples, channels)
        q = self._init_inputs(faithful, locals(), npoints[0] * n, normals_k)
        self.num_classes = num_classes
        layer: dict[str, Any] = dict(embed_channels=embed_channels, knn_order=q.knn_order)
        self.layers = encoder_stack(
            lambda s, k, d, c: RIConv2SetAbstraction(s, k, d, [c], fps_ties=q.fps_ties, **layer),
            [s * n for s in npoints], nsamples, channels,
        )  # fmt: skip
        self.layers.append(
            RIConv2SetAbstraction(
                None, None, channels[-2], [channels[-1]], group_all=True,
                lra_sign=q.lra_sign, global_center=q.global_center, **layer,
            )
        )  # fmt: skip
        self.head = ClassifierHead(channels[-1], num_classes, head_hidden, dropout)


class RIConv2PartSeg(RIPartSegmenter):
    r"""RIConv++ part segmentation: four SA layers, four RIConv++ FP layers, a per-point head.

    Args:
        num_parts, num_categories, n, faithful, quirk switches, npoints, nsamples, channels,
        embed_channels, head_hidden, dropout, normals_k: as for
        :class:`pointlib.models.risurconv.RISurConvPartSeg`.
        fp_nsamples: decoder neighbours for ``fp3 .. fp0`` (default ``(8, 16, 32, 32)``).
        fp_channels: decoder widths after the embedding concat (default
            ``(512, 512, 256, 128)``).
        fp_mlps: decoder skip MLPs (default ``((512,), (256,), (128,), ())``).

    Shapes:
        - input: ``xyz (B, N, 3)``, ``normals (B, N, 3)`` or ``None``, ``category (B,)`` int64
        - output: logits ``(B, N, num_parts)``
    """

    def __init__(
        self,
        num_parts: int = 50,
        num_categories: int = 16,
        *,
        n: int = 1,
        faithful: bool = False,
        knn_order: str | None = None,
        ring_shift: str | None = None,
        sa2d_norm_axis: str | None = None,
        transformer_over_batch: bool | None = None,
        lra_sign: str | None = None,
        global_center: str | None = None,
        fps_ties: str | None = None,
        npoints: Sequence[int] = (512, 256, 128, 64),
        nsamples: Sequence[int] = (8, 16, 32, 64),
        channels: Sequence[int] = (64, 128, 256, 512),
        fp_nsamples: Sequence[int] = (8, 16, 32, 32),
        fp_channels: Sequence[int] = (512, 512, 256, 128),
        fp_mlps: Sequence[Sequence[int]] = ((512,), (256,), (128,), ()),
        embed_channels: Sequence[int] = (32, 64),
        head_hidden: int = 128,
        dropout: float = 0.4,
        normals_k: int = 32,
    ) -> None:
        super().__init__()
        check_seg_config(npoints, nsamples, channels, fp_nsamples, fp_channels, fp_mlps)
        q = self._init_inputs(faithful, locals(), npoints[0] * n, normals_k)
        self.num_parts, self.num_categories = num_parts, num_categories
        layer: dict[str, Any] = dict(embed_channels=embed_channels, knn_order=q.knn_order)
        self.encoder = encoder_stack(
            lambda s, k, d, c: RIConv2SetAbstraction(s, k, d, [c], fps_ties=q.fps_ties, **layer),
            [s * n for s in npoints], nsamples, channels,
        )  # fmt: skip
        self.decoder = decoder_stack(
            lambda level, k, d, c, skip, mlp: RIConv2FeaturePropagation(
                k, d, [c], skip, mlp, **layer
            ),
            channels, num_categories, fp_nsamples, fp_channels, fp_mlps,
        )  # fmt: skip
        self.head = part_head(self.decoder[-1].out_channels, head_hidden, num_parts, dropout)


@register_model
def riconv2_cls(**kwargs: Any) -> RIConv2Cls:
    """RIConv++ classifier (``n=2``, 1024 points, 40 classes by default)."""
    return RIConv2Cls(**kwargs)


@register_model
def riconv2_cls_tiny(**kwargs: Any) -> RIConv2Cls:
    """A tiny RIConv++ classifier for tests and CPU demos (>= 64 points)."""
    return RIConv2Cls(**{**TINY_CLS, **kwargs})


@register_model
def riconv2_partseg(**kwargs: Any) -> RIConv2PartSeg:
    """RIConv++ part segmentation (2048 points, 50 parts, 16 categories by default)."""
    return RIConv2PartSeg(**kwargs)


@register_model
def riconv2_partseg_tiny(**kwargs: Any) -> RIConv2PartSeg:
    """A tiny RIConv++ part-segmentation model for tests and CPU demos (>= 64 points)."""
    return RIConv2PartSeg(**{**TINY_SEG, **kwargs})
