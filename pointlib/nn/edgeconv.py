"""EdgeConv (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", TOG 2019).

Channels-last: features ``(B, N, C)``. Each layer builds the ``k``-nearest-neighbour graph in its
input space (``pointlib.ops.knn``, any dimension, so the graph is *dynamic*: recomputed from the
features of every layer), forms the edge features ``[x_j - x_i, x_i]`` and applies a shared
``Linear -> BatchNorm -> LeakyReLU(0.2)`` followed by a max over the ``k`` neighbours.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pointlib.nn.blocks import BatchNormLast
from pointlib.ops import group, knn

__all__ = ["EdgeConv", "knn_graph_features"]


def knn_graph_features(x: Tensor, k: int, *, backend: str = "auto") -> Tensor:
    """Neighbour indices ``(B, N, k)`` of every point in feature space ``x (B, N, C)``.

    The graph carries no gradient (indices only). Each point is its own first neighbour (distance
    0), as in the reference DGCNN. float16/bfloat16 features (autocast) are ranked in float32.
    """
    return knn(x.detach(), k, backend=backend)[0]


class EdgeConv(nn.Module):
    """One EdgeConv layer: ``max_j h([x_j - x_i, x_i])`` over the ``k`` nearest ``j`` of ``i``.

    Args:
        in_channels: input width ``C``.
        out_channels: output width.
        k: neighbours per point (``<= N`` at call time).
        negative_slope: LeakyReLU slope (default ``0.2``).

    Shapes:
        - input: ``x (B, N, C)``; optional ``idx (B, N, k)`` (default: the kNN graph of ``x``)
        - output: ``(B, N, out_channels)``
    """

    def __init__(
        self, in_channels: int, out_channels: int, k: int = 20, negative_slope: float = 0.2
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k={k} must be >= 1")
        self.k = k
        self.mlp = nn.Sequential(
            nn.Linear(2 * in_channels, out_channels, bias=False),
            BatchNormLast(out_channels),
            nn.LeakyReLU(negative_slope),
        )

    def forward(self, x: Tensor, idx: Tensor | None = None) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"x must have shape (B, N, C), got {tuple(x.shape)}")
        if idx is None:
            if x.shape[1] < self.k:
                raise ValueError(f"EdgeConv needs N >= k={self.k} points, got N={x.shape[1]}")
            idx = knn_graph_features(x, self.k)
        nb = group(x, idx)  # (B, N, k, C)
        centre = x[:, :, None, :].expand_as(nb)
        edge = torch.cat([nb - centre, centre], dim=-1)
        return self.mlp(edge).amax(dim=2)
