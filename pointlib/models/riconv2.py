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

from torch import Tensor, nn

from pointlib.models._registry import register_model
from pointlib.nn._inputs import one_hot_category, prepare_cloud
from pointlib.nn.blocks import LinearBNReLU
from pointlib.nn.heads import ClassifierHead
from pointlib.nn.quirks import Quirks
from pointlib.nn.riconv2 import RIConv2FeaturePropagation, RIConv2SetAbstraction

__all__ = ["RIConv2Cls", "RIConv2PartSeg"]


def _quirks(faithful: bool, kw: dict[str, Any]) -> Quirks:
    return Quirks.resolve(faithful, **kw)


class RIConv2Cls(nn.Module):
    r"""RIConv++ classifier: four kNN set-abstraction layers, a global layer, an MLP head.

    Args:
        num_classes: classes (default: ``40``).
        n: centre-count scale (2 for 1024-point ModelNet40, 1 for ScanObjectNN).
        faithful: reference quirks (unsorted kNN ordering, raw LRA sign, origin as the global
            layer's ``p``); default fixed and rotation invariant.
        knn_order, lra_sign, global_center: individual overrides (``None``: preset);
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
        npoints: Sequence[int] = (512, 256, 128, 64),
        nsamples: Sequence[int] = (8, 16, 32, 64),
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        embed_channels: Sequence[int] = (32, 64),
        head_hidden: Sequence[int] = (256, 128),
        dropout: float = 0.4,
        normals_k: int = 32,
    ) -> None:
        super().__init__()
        if len(npoints) != len(nsamples) or len(channels) != len(npoints) + 1:
            raise ValueError("need len(nsamples) == len(npoints), len(channels) == len(npoints)+1")
        self.quirks = q = _quirks(
            faithful,
            dict(
                knn_order=knn_order, ring_shift=ring_shift, sa2d_norm_axis=sa2d_norm_axis,
                transformer_over_batch=transformer_over_batch, lra_sign=lra_sign,
                global_center=global_center,
            ),
        )  # fmt: skip
        self.faithful, self.num_classes = faithful, num_classes
        self.min_points, self.normals_k = npoints[0] * n, normals_k
        layers = []
        last = 0
        for s, k, c in zip(npoints, nsamples, channels):
            layers.append(
                RIConv2SetAbstraction(
                    s * n, k, last, [c], embed_channels=embed_channels, knn_order=q.knn_order
                )
            )
            last = c
        layers.append(
            RIConv2SetAbstraction(
                None, None, last, [channels[-1]], group_all=True, embed_channels=embed_channels,
                knn_order=q.knn_order, lra_sign=q.lra_sign, global_center=q.global_center,
            )
        )  # fmt: skip
        self.layers = nn.ModuleList(layers)
        self.head = ClassifierHead(channels[-1], num_classes, head_hidden, dropout)

    def forward(self, xyz: Tensor, normals: Tensor | None = None) -> Tensor:
        """Logits ``(B, num_classes)``."""
        xyz, normals = prepare_cloud(
            xyz, normals, name=type(self).__name__, min_points=self.min_points, estimate=True,
            normals_k=self.normals_k, faithful_normals=self.quirks.lra_sign == "raw",
        )  # fmt: skip
        assert normals is not None
        feats = None
        for layer in self.layers:
            xyz, normals, feats = layer(xyz, normals, feats)
        assert feats is not None
        return self.head(feats[:, 0])


class RIConv2PartSeg(nn.Module):
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
        L = len(npoints)
        if not (len(nsamples) == len(channels) == len(fp_nsamples) == len(fp_channels) == L):
            raise ValueError("npoints, nsamples, channels, fp_nsamples, fp_channels: same length")
        if len(fp_mlps) != L:
            raise ValueError("fp_mlps needs one entry per decoder layer")
        self.quirks = q = _quirks(
            faithful,
            dict(
                knn_order=knn_order, ring_shift=ring_shift, sa2d_norm_axis=sa2d_norm_axis,
                transformer_over_batch=transformer_over_batch, lra_sign=lra_sign,
                global_center=global_center,
            ),
        )  # fmt: skip
        self.faithful = faithful
        self.num_parts, self.num_categories = num_parts, num_categories
        self.min_points, self.normals_k = npoints[0] * n, normals_k
        self.encoder = nn.ModuleList()
        last = 0
        for s, k, c in zip(npoints, nsamples, channels):
            self.encoder.append(
                RIConv2SetAbstraction(
                    s * n, k, last, [c], embed_channels=embed_channels, knn_order=q.knn_order
                )
            )
            last = c
        self.decoder = nn.ModuleList()
        sparse = channels[-1]
        for j in range(L):
            level = L - 1 - j
            skip = channels[level - 1] if level > 0 else num_categories
            fp = RIConv2FeaturePropagation(
                fp_nsamples[j], sparse, [fp_channels[j]], skip, fp_mlps[j],
                embed_channels=embed_channels, knn_order=q.knn_order,
            )  # fmt: skip
            self.decoder.append(fp)
            sparse = fp.out_channels
        self.head = nn.Sequential(
            LinearBNReLU(sparse, head_hidden),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, num_parts),
        )

    def forward(self, xyz: Tensor, normals: Tensor | None, category: Tensor) -> Tensor:
        """Per-point logits ``(B, N, num_parts)``."""
        xyz, normals = prepare_cloud(
            xyz, normals, name=type(self).__name__, min_points=self.min_points, estimate=True,
            normals_k=self.normals_k, faithful_normals=self.quirks.lra_sign == "raw",
        )  # fmt: skip
        assert normals is not None
        B, N, _ = xyz.shape
        levels: list[tuple[Tensor, Tensor, Tensor | None]] = [(xyz, normals, None)]
        for layer in self.encoder:
            levels.append(layer(*levels[-1]))
        feats = levels[-1][2]
        assert feats is not None
        for j, fp in enumerate(self.decoder):
            level = len(self.decoder) - 1 - j
            dense_xyz, dense_n, skip = levels[level]
            sparse_xyz, sparse_n, _ = levels[level + 1]
            if level == 0:
                skip = one_hot_category(category, self.num_categories, B, N, xyz)
            feats = fp(dense_xyz, dense_n, sparse_xyz, sparse_n, skip, feats)
        return self.head(feats)


TINY_CLS: dict[str, Any] = dict(
    n=1,
    npoints=(64, 32, 16, 8),
    nsamples=(8, 8, 8, 8),
    channels=(16, 16, 32, 32, 32),
    embed_channels=(8, 16),
    head_hidden=(16,),
)
TINY_SEG: dict[str, Any] = dict(
    npoints=(64, 32, 16, 8),
    nsamples=(8, 8, 8, 8),
    channels=(16, 16, 32, 32),
    fp_nsamples=(8, 8, 8, 8),
    fp_channels=(32, 32, 16, 16),
    fp_mlps=((32,), (16,), (16,), ()),
    embed_channels=(8, 16),
    head_hidden=16,
)


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
