"""Channels-last building blocks shared by the point layers.

A ``Conv1d``/``Conv2d`` with a 1x1 kernel on ``(B, C, ...)`` is a :class:`torch.nn.Linear` on
channels-last ``(..., C)``, and ``BatchNorm1d``/``BatchNorm2d`` over ``(B, C, ...)`` normalises each
channel over every other axis. These blocks keep the public layout channels-last and therefore
need no permutes; the parameter shapes (and counts) differ from the convolutions only by the
trailing ``1`` (``1x1``) kernel dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class BatchNormLast(nn.BatchNorm1d):
    """Batch normalisation over the last (channel) axis of a tensor of any rank >= 2.

    Statistics are taken over every leading axis, which is what ``BatchNorm1d`` on ``(B, C, N)``
    and ``BatchNorm2d`` on ``(B, C, K, S)`` do. Parameters and buffers are those of
    :class:`torch.nn.BatchNorm1d`.

    Shapes:
        - input: ``(*, C)``
        - output: ``(*, C)``
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.num_features:
            raise ValueError(f"expected {self.num_features} channels last, got {tuple(x.shape)}")
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).view(shape)


class LinearBNReLU(nn.Sequential):
    """``Linear -> BatchNorm -> ReLU`` on channels-last input (a 1x1 conv block).

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        bias: whether the linear map has a bias (default: ``True``).
        act: whether to apply the ReLU (default: ``True``).

    Shapes:
        - input: ``(*, C_in)``
        - output: ``(*, C_out)``
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, bias: bool = True, act: bool = True
    ) -> None:
        layers: list[nn.Module] = [
            nn.Linear(in_channels, out_channels, bias=bias),
            BatchNormLast(out_channels),
        ]
        if act:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class SharedMLP(nn.Sequential):
    """A stack of :class:`LinearBNReLU` blocks (``Conv + BN + ReLU`` per entry of ``channels``).

    An empty ``channels`` gives the identity.

    Shapes:
        - input: ``(*, C_in)``
        - output: ``(*, channels[-1])`` (``C_in`` when ``channels`` is empty)
    """

    def __init__(self, in_channels: int, channels: Sequence[int], *, bias: bool = True) -> None:
        layers = []
        last = in_channels
        for c in channels:
            layers.append(LinearBNReLU(last, c, bias=bias))
            last = c
        super().__init__(*layers)
        self.out_channels = last


class RISPEmbedding(nn.Module):
    r"""RISurConv's embedding of the 14 RISP features (spec §2.1 step 4).

    ``Linear(14 -> 32, no bias) -> BN -> Linear(32 -> 64, no bias) -> BN -> ReLU``: there is **no
    nonlinearity between the two linear maps** (the reference code's layout, kept exactly).

    Args:
        in_channels: feature channels (default: ``14``).
        channels: the two widths (default: ``(32, 64)``).

    Shapes:
        - input: ``(B, M, K, in_channels)``
        - output: ``(B, M, K, channels[1])``
    """

    def __init__(self, in_channels: int = 14, channels: Sequence[int] = (32, 64)) -> None:
        super().__init__()
        c1, c2 = channels
        self.lin1 = nn.Linear(in_channels, c1, bias=False)
        self.bn1 = BatchNormLast(c1)
        self.lin2 = nn.Linear(c1, c2, bias=False)
        self.bn2 = BatchNormLast(c2)
        self.out_channels = c2

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn2(self.lin2(self.bn1(self.lin1(x)))))


def max_over_neighbours(x: Tensor) -> Tensor:
    """Max pooling over the neighbour axis: ``(B, M, K, C) -> (B, M, C)``."""
    return x.amax(dim=2)
