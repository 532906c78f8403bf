"""Structure shared by the RISurConv and RIConv++ networks (private).

Both families build the same networks from their own layers
(:class:`~pointlib.nn.RISurConvSetAbstraction` or :class:`~pointlib.nn.RIConv2SetAbstraction`,
and the matching feature propagation):

- a classifier (:class:`RIClassifier`): kNN set-abstraction layers with ``npoints[i] * n``
  centres, a global layer, an MLP head (RISurConv adds a transformer on the global feature);
- a part segmenter (:class:`RIPartSegmenter`): the same encoder, a decoder ``fp_{L-1} .. fp_0``
  whose last layer takes the one-hot category as its skip feature, a per-point head.

The family modules keep their constructors (signatures, docstrings, layer arguments) and build
the stacks with :func:`encoder_stack` / :func:`decoder_stack` from layer factories; creation
order, and therefore seeded initialisation and state-dict keys, is that of the explicit loops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from pointlib.nn._inputs import one_hot_category, prepare_cloud
from pointlib.nn.blocks import LinearBNReLU
from pointlib.nn.quirks import Quirks

#: The quirk keywords every RI model constructor takes (the fields of :class:`Quirks`).
QUIRK_SWITCHES = tuple(f.name for f in dataclasses.fields(Quirks))

#: Tiny schedules shared by the ``*_tiny`` variants: 64/32/16/8 centres, 8 neighbours, narrow.
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

#: ``make(npoint, nsample, in_channels, out_channels)`` -> a set-abstraction layer.
SAFactory = Callable[[int, int, int, int], nn.Module]
#: ``make(level, nsample, in_channels, out_channels, skip_channels, mlp)`` -> a propagation layer.
FPFactory = Callable[[int, int, int, int, int, Sequence[int]], nn.Module]


def check_cls_config(
    npoints: Sequence[int], nsamples: Sequence[int], channels: Sequence[int]
) -> None:
    if len(npoints) != len(nsamples) or len(channels) != len(npoints) + 1:
        raise ValueError("need len(nsamples) == len(npoints), len(channels) == len(npoints)+1")


def check_seg_config(
    npoints: Sequence[int],
    nsamples: Sequence[int],
    channels: Sequence[int],
    fp_nsamples: Sequence[int],
    fp_channels: Sequence[int],
    fp_mlps: Sequence[Sequence[int]],
) -> None:
    L = len(npoints)
    if not (len(nsamples) == len(channels) == len(fp_nsamples) == len(fp_channels) == L):
        raise ValueError("npoints, nsamples, channels, fp_nsamples, fp_channels: same length")
    if len(fp_mlps) != L:
        raise ValueError("fp_mlps needs one entry per decoder layer")


def encoder_stack(
    make: SAFactory, centers: Sequence[int], nsamples: Sequence[int], channels: Sequence[int]
) -> nn.ModuleList:
    """``make(centers[i], nsamples[i], channels[i-1], channels[i])`` per kNN level (first input
    width 0); extra ``channels`` entries are ignored."""
    layers = nn.ModuleList()
    last = 0
    for s, k, c in zip(centers, nsamples, channels):
        layers.append(make(s, k, last, c))
        last = c
    return layers


def decoder_stack(
    make: FPFactory,
    channels: Sequence[int],
    num_categories: int,
    fp_nsamples: Sequence[int],
    fp_channels: Sequence[int],
    fp_mlps: Sequence[Sequence[int]],
) -> nn.ModuleList:
    """``fp_{L-1} .. fp_0`` for encoder widths ``channels``: ``fp_level`` propagates level
    ``level + 1`` onto level ``level`` (skip: the encoder width of ``level``, the one-hot category
    for level 0) and gets the ``j = L - 1 - level``-th decoder settings."""
    decoder = nn.ModuleList()
    L = len(channels)
    sparse = channels[-1]
    for j in range(L):
        level = L - 1 - j
        skip = channels[level - 1] if level > 0 else num_categories
        fp = make(level, fp_nsamples[j], sparse, fp_channels[j], skip, fp_mlps[j])
        decoder.append(fp)
        sparse = fp.out_channels
    return decoder


def part_head(in_channels: int, hidden: int, num_parts: int, dropout: float) -> nn.Sequential:
    """``Linear + BN + ReLU -> Dropout -> Linear`` per point: ``(B, N, C) -> (B, N, num_parts)``."""
    return nn.Sequential(
        LinearBNReLU(in_channels, hidden), nn.Dropout(dropout), nn.Linear(hidden, num_parts)
    )


class RIPointModel(nn.Module):
    """Quirk resolution and input preparation (PyG batches, validation, estimated normals)."""

    quirks: Quirks
    faithful: bool
    min_points: int
    normals_k: int

    def _init_inputs(
        self, faithful: bool, switches: Mapping[str, Any], min_points: int, normals_k: int
    ) -> Quirks:
        """Resolve the preset with the quirk keywords found in ``switches`` (the constructor's
        ``locals()``; a switch the constructor does not take keeps its preset); store
        ``quirks``, ``faithful``, ``min_points``, ``normals_k``."""
        self.quirks = Quirks.resolve(faithful, **{k: switches.get(k) for k in QUIRK_SWITCHES})
        self.faithful = faithful
        self.min_points, self.normals_k = min_points, normals_k
        return self.quirks

    def _prepare(self, xyz: Any, normals: Tensor | None) -> tuple[Tensor, Tensor]:
        xyz, normals = prepare_cloud(
            xyz, normals, name=type(self).__name__, min_points=self.min_points, estimate=True,
            normals_k=self.normals_k, faithful_normals=self.quirks.lra_sign == "raw",
        )  # fmt: skip
        assert normals is not None
        return xyz, normals


class RIClassifier(RIPointModel):
    """``layers`` (the last one global) -> global feature -> ``head``."""

    layers: nn.ModuleList
    head: nn.Module

    def forward_features(self, xyz: Tensor, normals: Tensor | None = None) -> Tensor:
        """The global feature ``(B, channels[-1])`` of the last layer."""
        xyz, normals = self._prepare(xyz, normals)
        feats = None
        for layer in self.layers:
            xyz, normals, feats = layer(xyz, normals, feats)
        assert feats is not None
        return feats[:, 0]

    def forward(self, xyz: Tensor, normals: Tensor | None = None) -> Tensor:
        """Logits ``(B, num_classes)`` (no ``log_softmax``)."""
        return self.head(self.forward_features(xyz, normals))


class RIPartSegmenter(RIPointModel):
    """``encoder`` levels ``1 .. L``, ``decoder`` back to level 0, per-point ``head``."""

    num_categories: int
    encoder: nn.ModuleList
    decoder: nn.ModuleList
    head: nn.Module

    def forward(self, xyz: Tensor, normals: Tensor | None, category: Tensor) -> Tensor:
        """Per-point logits ``(B, N, num_parts)`` (no ``log_softmax``)."""
        xyz, normals = self._prepare(xyz, normals)
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
