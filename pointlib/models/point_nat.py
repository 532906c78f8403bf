r"""Point neighbourhood-attention classifier on the shared attention core (``pointlib.attention``).

Point-Transformer-style: every stage builds one kNN :class:`~pointlib.attention.Neighborhood`
(query mode) over its points and reuses it in all its blocks; each block is pre-norm
``x + NA(LN(x), nbr)`` then ``x + MLP(LN(x))`` where ``NA`` is
:class:`~pointlib.attention.NeighborhoodAttention` with a :class:`~pointlib.attention.RelPosMLP`
bias on ``Δxyz``. Between stages, farthest point sampling keeps ``npoints[s]`` centres and a kNN
max-pool transition (``Linear([x_j, Δxyz_j]) -> LN -> GELU -> max_j``) widens the channels.
The head is ``[max ‖ mean]`` pooling and a :class:`~pointlib.nn.heads.ClassifierHead`.

This is the "NAT on points" counterpart of the 2D NAT backbone. It is **not** rotation invariant
(its inputs are raw coordinates); it is batch-independent and, given FPS from index 0, depends on
the point order only through the sampling.

Registered: ``point_nat_cls`` and ``point_nat_cls_tiny``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pointlib.attention import Neighborhood, NeighborhoodAttention, RelPosMLP, knn_neighborhood
from pointlib.models._registry import register_model
from pointlib.nn._inputs import prepare_cloud
from pointlib.nn.heads import ClassifierHead
from pointlib.ops import fps, gather, group, knn

__all__ = ["PointNATBlock", "PointNATCls", "PointNATTransition"]


class PointNATBlock(nn.Module):
    """Pre-norm kNN neighbourhood-attention block.

    Args:
        dim: channels ``C``; heads: attention heads; mlp_ratio: MLP hidden factor;
        pos_hidden: hidden width of the ``RelPosMLP`` bias on ``Δxyz``.

    Shapes:
        ``x (B, N, C)``, ``nbr`` (query mode with ``rel (B, N, K, 3)``) -> ``(B, N, C)``.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, pos_hidden: int = 32):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention(dim, heads, bias=RelPosMLP(3, heads, pos_hidden))
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, nbr: Neighborhood) -> Tensor:
        x = x + self.attn(self.norm1(x), nbr)
        return x + self.mlp(self.norm2(x))


class PointNATTransition(nn.Module):
    """FPS down-sampling with kNN max-pooling of ``[features, Δxyz]``.

    Shapes:
        ``xyz (B, N, 3)``, ``x (B, N, Cin)`` -> ``xyz (B, M, 3)``, ``x (B, M, Cout)``.
    """

    def __init__(self, in_dim: int, out_dim: int, npoint: int, k: int) -> None:
        super().__init__()
        self.npoint, self.k = npoint, k
        self.proj = nn.Linear(in_dim + 3, out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.act = nn.GELU()

    def forward(self, xyz: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            centres = fps(xyz.detach(), self.npoint)
        new_xyz = gather(xyz, centres)
        with torch.no_grad():
            idx, _ = knn(xyz.detach(), min(self.k, xyz.shape[1]), new_xyz.detach())
        rel = group(xyz, idx) - new_xyz[:, :, None]
        feats = torch.cat([group(x, idx), rel], -1)  # (B, M, K, Cin + 3)
        return new_xyz, self.act(self.norm(self.proj(feats))).amax(2)


class PointNATCls(nn.Module):
    r"""kNN neighbourhood-attention point classifier.

    Args:
        num_classes: classes (default: ``40``).
        use_normals: use normals as input features next to xyz (default: ``False``); when
            ``True`` and ``normals`` is ``None`` they are estimated.
        dims: channels per stage (default: ``(64, 128, 256, 512)``).
        depths: blocks per stage (default: ``(1, 1, 2, 1)``).
        heads: heads per stage (default: ``(4, 4, 8, 8)``).
        npoints: points kept by the transition into stages ``1..S-1`` (default:
            ``(512, 128, 32)``); stage 0 runs on all input points.
        k: neighbours of the attention and transition kNN (default: ``16``).
        mlp_ratio: block MLP expansion (default: ``2.0``).
        pos_hidden: ``RelPosMLP`` hidden width (default: ``32``).
        head_hidden, dropout: classifier head (default: ``(256, 128)``, ``0.4``).

    Shapes:
        - input: ``xyz (B, N, 3)`` with ``N >= max(k, npoints[0])``, ``normals (B, N, 3)`` or
          ``None``
        - output: logits ``(B, num_classes)``
    """

    def __init__(
        self,
        num_classes: int = 40,
        *,
        use_normals: bool = False,
        dims: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (1, 1, 2, 1),
        heads: Sequence[int] = (4, 4, 8, 8),
        npoints: Sequence[int] = (512, 128, 32),
        k: int = 16,
        mlp_ratio: float = 2.0,
        pos_hidden: int = 32,
        head_hidden: Sequence[int] = (256, 128),
        dropout: float = 0.4,
        normals_k: int = 32,
    ) -> None:
        super().__init__()
        if not (len(dims) == len(depths) == len(heads) == len(npoints) + 1):
            raise ValueError("dims, depths and heads need one entry per stage, npoints one less")
        if any(a < b for a, b in itertools.pairwise(npoints)):
            raise ValueError(f"npoints must be non-increasing, got {tuple(npoints)}")
        self.num_classes, self.use_normals, self.k = num_classes, use_normals, k
        self.normals_k = normals_k
        self.min_points = max([k, *npoints[:1]])
        self.stem = nn.Sequential(
            nn.Linear(6 if use_normals else 3, dims[0]), nn.LayerNorm(dims[0])
        )
        self.transitions = nn.ModuleList(
            PointNATTransition(dims[s], dims[s + 1], npoints[s], k) for s in range(len(npoints))
        )
        self.stages = nn.ModuleList(
            nn.ModuleList(
                PointNATBlock(dims[s], heads[s], mlp_ratio, pos_hidden) for _ in range(depths[s])
            )
            for s in range(len(dims))
        )
        self.norm = nn.LayerNorm(dims[-1])
        self.head = ClassifierHead(2 * dims[-1], num_classes, head_hidden, dropout)

    def forward(self, xyz: Tensor, normals: Tensor | None = None) -> Tensor:
        """Logits ``(B, num_classes)``."""
        xyz, normals = prepare_cloud(
            xyz, normals, name=type(self).__name__, min_points=self.min_points,
            estimate=self.use_normals, normals_k=self.normals_k,
        )  # fmt: skip
        feats = torch.cat([xyz, normals], -1) if self.use_normals else xyz
        x = self.stem(feats)
        for s, blocks in enumerate(self.stages):
            if s > 0:
                xyz, x = self.transitions[s - 1](xyz, x)
            nbr = knn_neighborhood(xyz.detach(), min(self.k, xyz.shape[1]))  # once per stage
            for blk in blocks:
                x = blk(x, nbr)
        x = self.norm(x)
        return self.head(torch.cat([x.amax(1), x.mean(1)], -1))


TINY: dict[str, Any] = dict(
    dims=(16, 32),
    depths=(1, 1),
    heads=(2, 2),
    npoints=(32,),
    k=8,
    mlp_ratio=2.0,
    pos_hidden=8,
    head_hidden=(32,),
)


@register_model
def point_nat_cls(**kwargs: Any) -> PointNATCls:
    """kNN neighbourhood-attention classifier (xyz input, 40 classes by default)."""
    return PointNATCls(**kwargs)


@register_model
def point_nat_cls_tiny(**kwargs: Any) -> PointNATCls:
    """A tiny ``point_nat_cls`` for tests and CPU demos (>= 32 points)."""
    return PointNATCls(**{**TINY, **kwargs})
