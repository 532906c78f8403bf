"""RISurConv classification and part-segmentation networks (spec §3) and registered variants.

Registered: ``risurconv_cls`` (ModelNet40 configuration, ``n=2``), ``risurconv_partseg``
(ShapeNetPart), and ``risurconv_cls_tiny`` / ``risurconv_partseg_tiny`` (few points and channels,
for tests and CPU demos on 128-512 point clouds).

Both models return **logits** (the reference applies ``log_softmax`` and trains with NLL; the
argmax is the same; train with :func:`torch.nn.functional.cross_entropy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from pointlib.models._point_base import TINY_CLS as RI_TINY_CLS
from pointlib.models._point_base import TINY_SEG as RI_TINY_SEG
from pointlib.models._point_base import (
    RIClassifier,
    RIPartSegmenter,
    check_cls_config,
    check_seg_config,
    decoder_stack,
    encoder_stack,
    part_head,
)
from pointlib.models._registry import register_model
from pointlib.nn.heads import ClassifierHead, GlobalTransformer
from pointlib.nn.risurconv import RISurConvFeaturePropagation, RISurConvSetAbstraction

__all__ = ["RISurConvCls", "RISurConvPartSeg"]


class RISurConvCls(RIClassifier):
    r"""RISurConv classifier (spec §3.1).

    Four kNN set-abstraction layers with ``npoints[i] * n`` centres and ``nsamples[i]``
    neighbours, a global layer (all points around the centroid), a ``TransformerEncoder`` on the
    global feature and an MLP head. With the defaults and ``num_classes=40`` the model has
    exactly 10,810,696 parameters in both modes.

    Args:
        num_classes: classes (default: ``40``).
        n: centre-count scale: 2 for ModelNet40/FG3D (1024 points), 1 for ScanObjectNN.
        faithful: reproduce the reference code's quirks (see :mod:`pointlib.nn.quirks`);
            ``False`` (default) fixes them and makes the model rotation invariant and
            batch-independent in ``eval()``.
        knn_order, ring_shift, sa2d_norm_axis, transformer_over_batch, lra_sign, global_center,
            fps_ties: individual quirk switches overriding the ``faithful`` preset (``None``:
            preset; :mod:`pointlib.nn.quirks`). ``fps_ties="pointops"`` samples the centres
            with the reference CUDA kernel's tie rule (:func:`pointlib.ops.fps_pointops`).
        npoints: base centre counts of the four local layers (default: ``(512, 256, 128, 64)``).
        nsamples: neighbours per layer (default: ``(8, 16, 32, 64)``).
        channels: output widths of the five layers (default: ``(32, 64, 128, 256, 512)``).
        embed_channels: RISP embedding widths (default: ``(32, 64)``).
        transformer_layers, transformer_heads, transformer_ffn, transformer_dropout: the global
            transformer (defaults: ``3``, ``8``, ``2048``, ``0.05``); ``transformer_layers=0``
            removes it.
        head_hidden: hidden widths of the head (default: ``(256, 128)``).
        dropout: head dropout (default: ``0.4``).
        normals_k: neighbours for normal estimation when ``normals`` is ``None`` (default: 32).

    Shapes:
        - input: ``xyz (B, N, 3)`` with ``N >= npoints[0] * n``, ``normals (B, N, 3)`` or ``None``
          (estimated with :func:`pointlib.features.estimate_normals`), or a torch_geometric
          ``Batch`` of equal-size clouds (``pos``, ``x`` = normals)
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
        transformer_layers: int = 3,
        transformer_heads: int = 8,
        transformer_ffn: int = 2048,
        transformer_dropout: float = 0.05,
        head_hidden: Sequence[int] = (256, 128),
        dropout: float = 0.4,
        normals_k: int = 32,
    ) -> None:
        super().__init__()
        check_cls_config(npoints, nsamples, channels)
        q = self._init_inputs(faithful, locals(), npoints[0] * n, normals_k)
        self.num_classes = num_classes
        layer: dict[str, Any] = dict(
            embed_channels=embed_channels, knn_order=q.knn_order, sa2d_norm_axis=q.sa2d_norm_axis
        )
        self.layers = encoder_stack(
            lambda s, k, d, c: RISurConvSetAbstraction(
                s, k, d, c, ring_shift=q.layer_shift(s), fps_ties=q.fps_ties, **layer
            ),
            [s * n for s in npoints], nsamples, channels,
        )  # fmt: skip
        self.layers.append(
            RISurConvSetAbstraction(
                None, None, channels[-2], channels[-1], group_all=True, ring_shift=1,
                lra_sign=q.lra_sign, global_center=q.global_center, **layer,
            )
        )  # fmt: skip
        d = channels[-1]
        self.transformer: nn.Module = nn.Identity()
        if transformer_layers > 0:
            self.transformer = GlobalTransformer(
                d, transformer_heads, transformer_layers, transformer_ffn, transformer_dropout,
                over_batch=q.transformer_over_batch,
            )  # fmt: skip
        self.head = ClassifierHead(d, num_classes, head_hidden, dropout)

    def forward_features(self, xyz: Tensor, normals: Tensor | None = None) -> Tensor:
        """The global feature ``(B, channels[-1])`` after the transformer."""
        return self.transformer(super().forward_features(xyz, normals))


class RISurConvPartSeg(RIPartSegmenter):
    r"""RISurConv part-segmentation network (spec §3.2).

    Encoder: four kNN set-abstraction layers (``npoints[i] * n`` centres, ``nsamples[i]``
    neighbours, widths ``channels``). Decoder: four RISurConv feature-propagation layers
    (``fp3 .. fp0``) ending at the input points, where the one-hot category is the skip feature.
    Head: ``Linear + BN + ReLU + Dropout + Linear`` per point. With the defaults, 50 parts and 16
    categories the model has exactly 4,063,730 parameters in both modes.

    Args:
        num_parts: part labels (default: ``50``).
        num_categories: object categories (default: ``16``).
        n: centre-count scale (default: ``1``).
        faithful, knn_order, ring_shift, sa2d_norm_axis, lra_sign, fps_ties: as for
            :class:`RISurConvCls`; ``lra_sign`` only affects estimated normals here.
        transformer_over_batch, global_center: accepted for a uniform constructor; no effect
            (the network has no transformer and no global layer).
        num_points: nominal input size, used by the static ring shift of the last decoder layer
            (2 when ``>= 1024``, as the reference at 2048 points) (default: ``2048``).
        npoints, nsamples, channels: encoder (defaults ``(512, 256, 128, 64)``,
            ``(8, 16, 32, 64)``, ``(64, 128, 256, 512)``).
        fp_nsamples: decoder neighbours for ``fp3, fp2, fp1, fp0`` (default ``(64, 32, 32, 32)``).
        fp_channels: decoder conv widths (default ``(512, 512, 256, 128)``).
        fp_mlps: decoder skip MLPs (default ``((512,), (256,), (128,), ())``).
        embed_channels: RISP embedding widths (default ``(32, 64)``).
        head_hidden: head width (default ``128``); dropout: head dropout (default ``0.4``).
        normals_k: neighbours for normal estimation (default 32).

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
        num_points: int = 2048,
        npoints: Sequence[int] = (512, 256, 128, 64),
        nsamples: Sequence[int] = (8, 16, 32, 64),
        channels: Sequence[int] = (64, 128, 256, 512),
        fp_nsamples: Sequence[int] = (64, 32, 32, 32),
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
        layer: dict[str, Any] = dict(
            embed_channels=embed_channels, knn_order=q.knn_order, sa2d_norm_axis=q.sa2d_norm_axis
        )
        centers = [num_points] + [s * n for s in npoints]  # nominal sizes of levels 0..L
        self.encoder = encoder_stack(
            lambda s, k, d, c: RISurConvSetAbstraction(
                s, k, d, c, ring_shift=q.layer_shift(s), fps_ties=q.fps_ties, **layer
            ),
            centers[1:], nsamples, channels,
        )  # fmt: skip
        # fp_level: dense level `level` (nominal centres[level]), sparse level + 1
        self.decoder = decoder_stack(
            lambda level, k, d, c, skip, mlp: RISurConvFeaturePropagation(
                k, d, c, skip, mlp, ring_shift=q.layer_shift(centers[level]), **layer
            ),
            channels, num_categories, fp_nsamples, fp_channels, fp_mlps,
        )  # fmt: skip
        self.head = part_head(self.decoder[-1].out_channels, head_hidden, num_parts, dropout)


def _cls(defaults: dict[str, Any], kwargs: dict[str, Any]) -> RISurConvCls:
    return RISurConvCls(**{**defaults, **kwargs})


def _seg(defaults: dict[str, Any], kwargs: dict[str, Any]) -> RISurConvPartSeg:
    return RISurConvPartSeg(**{**defaults, **kwargs})


#: Tiny classifier: 64/32/16/8 centres (n=1), narrow layers, one small transformer layer.
TINY_CLS: dict[str, Any] = dict(
    RI_TINY_CLS, transformer_layers=1, transformer_heads=2, transformer_ffn=32
)

#: Tiny part segmentation: 64/32/16/8 centres, narrow layers, nominal 128 points.
TINY_SEG: dict[str, Any] = dict(RI_TINY_SEG, num_points=128)


@register_model
def risurconv_cls(**kwargs: Any) -> RISurConvCls:
    """RISurConv classifier, ModelNet40 configuration (``n=2``, 1024 points, 40 classes)."""
    return _cls({}, kwargs)


@register_model
def risurconv_cls_tiny(**kwargs: Any) -> RISurConvCls:
    """A tiny RISurConv classifier for tests and CPU demos (>= 64 points per cloud)."""
    return _cls(TINY_CLS, kwargs)


@register_model
def risurconv_partseg(**kwargs: Any) -> RISurConvPartSeg:
    """RISurConv part segmentation, ShapeNetPart configuration (2048 points, 50 parts)."""
    return _seg({}, kwargs)


@register_model
def risurconv_partseg_tiny(**kwargs: Any) -> RISurConvPartSeg:
    """A tiny RISurConv part-segmentation model for tests and CPU demos (>= 64 points)."""
    return _seg(TINY_SEG, kwargs)
