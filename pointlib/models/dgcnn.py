"""DGCNN classifier (Wang et al. 2019): a third, **non-rotation-invariant** baseline.

Registered: ``dgcnn_cls`` (the paper's ModelNet40 network: ``k = 20``, EdgeConv widths
``64, 64, 128, 256``, a shared ``512 -> 1024`` layer, max + mean pooling, head
``2048 -> 512 -> 256 -> classes`` with dropout 0.5, LeakyReLU 0.2) and ``dgcnn_cls_tiny`` (CPU
tests and demos). The first graph is built on the coordinates, the later ones in feature space
(``pointlib.ops.knn`` with ``D = 64, 64, 128``), recomputed every forward pass.

Published: 92.9 % overall / 90.2 % mean-class accuracy on ModelNet40 (1024 points, no normals,
aligned shapes; Wang et al., TOG 2019, Table 2). Inputs are raw coordinates, so a rotation changes
the output: under z/SO(3) test rotations it behaves like PointNet++ (see docs/models.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pointlib.models._registry import register_model
from pointlib.nn._inputs import prepare_cloud
from pointlib.nn.blocks import BatchNormLast
from pointlib.nn.edgeconv import EdgeConv, knn_graph_features

__all__ = ["DGCNNCls"]


class DGCNNCls(nn.Module):
    r"""DGCNN classifier.

    Args:
        num_classes: classes (default ``40``).
        k: neighbours of every EdgeConv graph (default ``20``).
        channels: EdgeConv output widths (default ``(64, 64, 128, 256)``).
        emb_dims: width of the shared layer before pooling (default ``1024``).
        head_hidden: head widths (default ``(512, 256)``); dropout: head dropout (``0.5``).
        use_normals: append normals to the input features (the graph of the first layer is
            still built on the coordinates); the paper uses coordinates only (default ``False``).
        faithful: accepted for a uniform constructor; unused.

    Shapes:
        - input: ``xyz (B, N, 3)`` with ``N >= k``, ``normals (B, N, 3)`` or ``None``
        - output: logits ``(B, num_classes)``
    """

    def __init__(
        self,
        num_classes: int = 40,
        *,
        k: int = 20,
        channels: Sequence[int] = (64, 64, 128, 256),
        emb_dims: int = 1024,
        head_hidden: Sequence[int] = (512, 256),
        dropout: float = 0.5,
        use_normals: bool = False,
        faithful: bool = False,
        normals_k: int = 32,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels needs at least one EdgeConv width")
        self.num_classes, self.k, self.use_normals = num_classes, k, use_normals
        self.normals_k = normals_k
        last = 6 if use_normals else 3
        self.convs = nn.ModuleList()
        for c in channels:
            self.convs.append(EdgeConv(last, c, k))
            last = c
        self.embed = nn.Sequential(
            nn.Linear(sum(channels), emb_dims, bias=False),
            BatchNormLast(emb_dims),
            nn.LeakyReLU(0.2),
        )
        layers: list[nn.Module] = []
        last = 2 * emb_dims
        for i, h in enumerate(head_hidden):
            layers += [nn.Linear(last, h, bias=i > 0), BatchNormLast(h), nn.LeakyReLU(0.2)]
            layers.append(nn.Dropout(dropout))
            last = h
        layers.append(nn.Linear(last, num_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, xyz: Tensor, normals: Tensor | None = None) -> Tensor:
        """Logits ``(B, num_classes)``."""
        xyz, normals = prepare_cloud(
            xyz, normals, name=type(self).__name__, min_points=self.k,
            estimate=self.use_normals, normals_k=self.normals_k,
        )  # fmt: skip
        x = torch.cat([xyz, normals], dim=-1) if self.use_normals else xyz
        feats = []
        idx = knn_graph_features(xyz, self.k)  # first graph: coordinates
        for i, conv in enumerate(self.convs):
            x = conv(x, idx if i == 0 else None)
            feats.append(x)
        x = self.embed(torch.cat(feats, dim=-1))
        return self.head(torch.cat([x.amax(dim=1), x.mean(dim=1)], dim=-1))


TINY: dict[str, Any] = dict(k=8, channels=(16, 16, 32), emb_dims=64, head_hidden=(32,))


@register_model
def dgcnn_cls(**kwargs: Any) -> DGCNNCls:
    """DGCNN classifier (Wang et al. 2019; xyz input, 40 classes by default)."""
    return DGCNNCls(**kwargs)


@register_model
def dgcnn_cls_tiny(**kwargs: Any) -> DGCNNCls:
    """A tiny DGCNN classifier for tests and CPU demos (``k = 8``, ``>= 8`` points)."""
    return DGCNNCls(**{**TINY, **kwargs})
