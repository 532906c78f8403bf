"""PointNet++ SSG classifier: the standard, **non-rotation-invariant** baseline.

Registered: ``pointnet2_cls_ssg`` (Qi et al. 2017: 512/128 centres, radii 0.2/0.4, 32/64
neighbours, MLPs ``[64, 64, 128]``, ``[128, 128, 256]``, ``[256, 512, 1024]``, head
``1024 -> 512 -> 256 -> classes`` with dropout 0.4) and ``pointnet2_cls_ssg_tiny``. Returns logits.

Its inputs are raw coordinates (relative to each centre) and, with ``use_normals=True``, raw
normals, so a rotation of the input changes its output: it is the negative control of the
rotation-invariance tests and the reference row of the robustness tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from pointlib.models._registry import register_model
from pointlib.nn._inputs import prepare_cloud
from pointlib.nn.heads import ClassifierHead
from pointlib.nn.pointnet2 import PointNetSetAbstraction

__all__ = ["PointNet2ClsSSG"]


class PointNet2ClsSSG(nn.Module):
    r"""PointNet++ single-scale-grouping classifier.

    Args:
        num_classes: classes (default: ``40``).
        use_normals: feed normals as point features (default: ``True``); when ``normals`` is
            ``None`` at call time they are estimated (:func:`pointlib.features.estimate_normals`).
        npoints: centres of the two local layers (default: ``(512, 128)``).
        radii: ball radii (default: ``(0.2, 0.4)``).
        nsamples: points per ball (default: ``(32, 64)``).
        mlps: MLP widths of the three layers (the last is the global layer).
        head_hidden: head widths (default: ``(512, 256)``); dropout: head dropout (0.4).
        faithful: accepted for a uniform constructor; unused.

    Shapes:
        - input: ``xyz (B, N, 3)`` with ``N >= npoints[0]``, ``normals (B, N, 3)`` or ``None``
        - output: logits ``(B, num_classes)``
    """

    def __init__(
        self,
        num_classes: int = 40,
        *,
        use_normals: bool = True,
        npoints: Sequence[int] = (512, 128),
        radii: Sequence[float] = (0.2, 0.4),
        nsamples: Sequence[int] = (32, 64),
        mlps: Sequence[Sequence[int]] = ((64, 64, 128), (128, 128, 256), (256, 512, 1024)),
        head_hidden: Sequence[int] = (512, 256),
        dropout: float = 0.4,
        faithful: bool = False,
        normals_k: int = 32,
    ) -> None:
        super().__init__()
        if not (len(npoints) == len(radii) == len(nsamples) == len(mlps) - 1):
            raise ValueError("npoints, radii, nsamples need one entry per local layer")
        self.num_classes, self.use_normals, self.normals_k = num_classes, use_normals, normals_k
        self.min_points = npoints[0]
        layers = []
        last = 3 if use_normals else 0
        for s, r, k, mlp in zip(npoints, radii, nsamples, mlps):
            layers.append(PointNetSetAbstraction(s, r, k, last, mlp))
            last = layers[-1].out_channels
        layers.append(PointNetSetAbstraction(None, None, None, last, mlps[-1], group_all=True))
        self.layers = nn.ModuleList(layers)
        self.head = ClassifierHead(layers[-1].out_channels, num_classes, head_hidden, dropout)

    def forward(self, xyz: Tensor, normals: Tensor | None = None) -> Tensor:
        """Logits ``(B, num_classes)``."""
        xyz, normals = prepare_cloud(
            xyz, normals, name=type(self).__name__, min_points=self.min_points,
            estimate=self.use_normals, normals_k=self.normals_k,
        )  # fmt: skip
        feats = normals if self.use_normals else None
        for layer in self.layers:
            xyz, feats = layer(xyz, feats)
        assert feats is not None
        return self.head(feats[:, 0])


TINY: dict[str, Any] = dict(
    npoints=(64, 16),
    radii=(0.4, 0.8),
    nsamples=(16, 16),
    mlps=((16, 16, 32), (32, 32, 64), (64, 64)),
    head_hidden=(32,),
)


@register_model
def pointnet2_cls_ssg(**kwargs: Any) -> PointNet2ClsSSG:
    """PointNet++ SSG classifier (xyz + normals, 40 classes by default)."""
    return PointNet2ClsSSG(**kwargs)


@register_model
def pointnet2_cls_ssg_tiny(**kwargs: Any) -> PointNet2ClsSSG:
    """A tiny PointNet++ SSG classifier for tests and CPU demos (>= 64 points)."""
    return PointNet2ClsSSG(**{**TINY, **kwargs})
