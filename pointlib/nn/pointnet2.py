r"""PointNet++ single-scale-grouping set abstraction (Qi et al. 2017), channels-last.

A **non-invariant** baseline: it consumes raw coordinates (relative to each centre) and, where
given, raw normals, so its outputs change under rotation. Sampling and grouping use
:func:`pointlib.ops.fps` (start index 0) and :func:`pointlib.ops.ball_query`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pointlib import ops
from pointlib.nn.blocks import SharedMLP, max_over_neighbours


class PointNetSetAbstraction(nn.Module):
    r"""PointNet++ SSG set abstraction: FPS, ball query, shared MLP on ``[x_j - p, f_j]``, max.

    Args:
        npoint: centres ``S``; ignored when ``group_all``.
        radius: ball radius; ignored when ``group_all``.
        nsample: points per ball ``K`` (short balls are padded with their first member).
        in_channels: feature channels ``D`` (0 when only coordinates are used).
        mlp: widths of the shared ``Linear + BN + ReLU`` stack.
        group_all: one group with every point (absolute coordinates, as in PointNet++).

    Shapes:
        - input: ``xyz (B, N, 3)``, ``feats (B, N, D)`` or ``None``
        - output: ``new_xyz (B, S, 3)`` (``S = 1``, zeros, for ``group_all``),
          ``new_feats (B, S, mlp[-1])``
    """

    def __init__(
        self,
        npoint: int | None,
        radius: float | None,
        nsample: int | None,
        in_channels: int,
        mlp: Sequence[int],
        *,
        group_all: bool = False,
    ) -> None:
        super().__init__()
        if not group_all and (npoint is None or radius is None or nsample is None):
            raise ValueError("npoint, radius and nsample are required unless group_all=True")
        self.npoint, self.radius, self.nsample, self.group_all = npoint, radius, nsample, group_all
        self.in_channels = in_channels
        self.mlp = SharedMLP(3 + in_channels, mlp)
        self.out_channels = self.mlp.out_channels

    def forward(self, xyz: Tensor, feats: Tensor | None = None) -> tuple[Tensor, Tensor]:
        got = 0 if feats is None else feats.shape[-1]
        if got != self.in_channels:
            raise ValueError(f"expected {self.in_channels} feature channels, got {got}")
        if self.group_all:
            new_xyz = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped = xyz[:, None]
            if feats is not None:
                grouped = torch.cat([grouped, feats[:, None]], dim=-1)
        else:
            assert self.npoint is not None and self.radius is not None and self.nsample is not None
            if self.npoint > xyz.shape[1]:
                raise ValueError(
                    f"PointNetSetAbstraction samples npoint={self.npoint} centres but the input "
                    f"has only N={xyz.shape[1]} points"
                )
            new_xyz = ops.gather(xyz, ops.fps(xyz.detach(), self.npoint))
            idx = ops.ball_query(xyz.detach(), self.radius, self.nsample, new_xyz.detach())
            grouped = ops.group(xyz, idx) - new_xyz[:, :, None]
            if feats is not None:
                grouped = torch.cat([grouped, ops.group(feats, idx)], dim=-1)
        return new_xyz, max_over_neighbours(self.mlp(grouped))

    def extra_repr(self) -> str:
        return (
            f"npoint={self.npoint}, radius={self.radius}, nsample={self.nsample}, "
            f"group_all={self.group_all}"
        )
