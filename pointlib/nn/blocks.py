"""Channels-last building blocks shared by the point layers.

A ``Conv1d``/``Conv2d`` with a 1x1 kernel on ``(B, C, ...)`` is a :class:`torch.nn.Linear` on
channels-last ``(..., C)``, and ``BatchNorm1d``/``BatchNorm2d`` over ``(B, C, ...)`` normalises each
channel over every other axis. These blocks keep the public layout channels-last and therefore
need no permutes; the parameter shapes (and counts) differ from the convolutions only by the
trailing ``1`` (``1x1``) kernel dimensions.

Fused execution (issue 11). The modules keep the ``Linear`` / ``BatchNormLast`` / ``ReLU``
children (state dicts and parameter counts unchanged) but run them through
:func:`linear_bn_act`:

- training: one custom autograd function computes ``Linear -> BatchNorm (batch statistics) ->
  ReLU`` and optionally the max over the neighbour axis, and keeps only its *inputs* (plus
  per-channel statistics and, when pooling, the argmax indices) for the backward pass, which
  recomputes the linear map instead of storing the pre-activation, the normalised tensor and
  the ReLU output. Pooling is done on the pre-normalisation values (BatchNorm + ReLU is monotone
  per channel, increasing when ``gamma / sigma >= 0``, so the maximum of the activation is the
  activation of the maximum or, for a negative scale, of the minimum), so neither the
  normalised nor the activated ``(B, M, K, C)`` tensor is built.
- evaluation: BatchNorm's running statistics are folded into the linear map (one matrix product
  and an in-place ReLU).

Same precision as the unfused modules (statistics in the input dtype, float64 where noted).
Running statistics and ``num_batches_tracked`` are updated exactly as by
:class:`torch.nn.BatchNorm1d`. Modules whose BatchNorm is configured differently
(``affine=False``, ``track_running_stats=False``) fall back to the unfused path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.nn._rows import (
    BLOCK_ELEMS,
    BLOCK_ROWS,
    Gathered,
    Part,
    _autocast_cast,
    _fusable,
    update_running_stats,
)
from pointlib.nn.fused import _AffineReLUFn, linear_bn_act
from pointlib.nn.norm import BatchNormLast

__all__ = [
    "BLOCK_ELEMS",
    "BLOCK_ROWS",
    "BatchNormLast",
    "Gathered",
    "LinearBNReLU",
    "RISPEmbedding",
    "SharedMLP",
    "linear_bn_act",
    "max_over_neighbours",
]


class LinearBNReLU(nn.Sequential):
    """``Linear -> BatchNorm -> ReLU`` on channels-last input (a 1x1 conv block).

    Runs fused (:func:`linear_bn_act`); the children ``0`` (Linear), ``1`` (BatchNormLast) and
    ``2`` (ReLU, when ``act``) hold the parameters.

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
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.fused(x)

    def fused(self, xs: Part | Sequence[Part], pool_k: int | None = None) -> Tensor:
        """The block on ``cat(xs, -1)`` (not built), optionally max-pooled over axis ``-2``
        (``pool_k`` = its size): ``(B, M, K, C_in)`` pieces -> ``(B, M, C_out)``."""
        return linear_bn_act(xs, self[0], self[1], relu=self.act, pool_k=pool_k)


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

    def fused(self, xs: Part | Sequence[Part], pool_k: int | None = None) -> Tensor:
        """The stack on ``cat(xs, -1)`` (not built), the last block optionally max-pooled over
        axis ``-2`` (see :meth:`LinearBNReLU.fused`). Needs at least one block."""
        if not len(self):
            raise ValueError("an empty SharedMLP has no block to fuse")
        blocks = list(self)
        h: Part | Sequence[Part] = xs
        for blk in blocks[:-1]:
            h = blk.fused(h)
        return blocks[-1].fused(h, pool_k)


class RISPEmbedding(nn.Module):
    r"""RISurConv's embedding of the 14 RISP features (spec §2.1 step 4).

    ``Linear(14 -> 32, no bias) -> BN -> Linear(32 -> 64, no bias) -> BN -> ReLU``: there is **no
    nonlinearity between the two linear maps** (the reference code's layout, kept exactly).

    Because the two maps and the two normalisations are affine per channel, the block is
    computed as **one** ``14 -> 64`` map: in training mode the batch statistics of both
    normalisations follow exactly from the mean and the ``14 x 14`` covariance of the input
    (computed in float64), ``BN_2(W_2 BN_1(W_1 x)) = s_2 (A (x - \bar x)) + \beta_2`` with
    ``A = W_2 diag(s_1) W_1``, ``s_1 = \gamma_1 / \sqrt{\operatorname{diag}(W_1 \Sigma W_1^T) +
    \epsilon}`` and ``s_2 = \gamma_2 / \sqrt{\operatorname{diag}(A \Sigma A^T) + \epsilon}``; in
    evaluation mode the running statistics fold into the map. Both running statistics are
    updated as by the two BatchNorm modules. ``bn1.bias`` cancels (the second normalisation
    removes any per-channel constant), so its gradient is exactly zero.

    Args:
        in_channels: feature channels (default: ``14``).
        channels: the two widths (default: ``(32, 64)``).

    Shapes:
        - input: ``(B, M, K, in_channels)`` (any leading shape)
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

    def _unfused(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn2(self.lin2(self.bn1(self.lin1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        if not (_fusable(self.bn1) and _fusable(self.bn2)) or x.numel() == 0:
            return self._unfused(x)
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        w1, w2 = self.lin1.weight, self.lin2.weight
        b1, b2 = self.bn1, self.bn2
        if not b1.training:
            assert b1.running_mean is not None and b1.running_var is not None
            assert b2.running_mean is not None and b2.running_var is not None
            s1 = b1.weight * torch.rsqrt(b1.running_var + b1.eps)
            t1 = b1.bias - b1.running_mean * s1
            s2 = b2.weight * torch.rsqrt(b2.running_var + b2.eps)
            w = (w2 * s1) @ w1 * s2[:, None]
            b = (w2 @ t1 - b2.running_mean) * s2 + b2.bias
            y = F.linear(flat, w, b)
            y = y.relu_() if not y.requires_grad else torch.relu(y)
            return y.view(*lead, y.shape[-1])
        R = flat.shape[0]
        xd = flat.double()  # statistics in float64 (differentiable if the input needs grad)
        xbar = xd.mean(0)
        xc = xd - xbar
        cov = (xc.t() @ xc) / R  # (F, F)
        w1d, w2d = w1.double(), w2.double()
        var1 = ((w1d @ cov) * w1d).sum(1)
        s1 = b1.weight.double() * torch.rsqrt(var1 + b1.eps)
        a = (w2d * s1) @ w1d  # (C2, F)
        var2 = ((a @ cov) * a).sum(1)
        s2 = b2.weight.double() * torch.rsqrt(var2 + b2.eps)
        w = (a * s2[:, None]).to(flat.dtype)
        xc32 = flat - xbar.to(flat.dtype)
        cast = _autocast_cast(xc32)
        y = _AffineReLUFn.apply(cast(xc32), cast(w), cast(b2.bias))
        with torch.no_grad():
            update_running_stats(b1, xbar @ w1d.t(), var1, R)
            update_running_stats(b2, w2d @ b1.bias.double(), var2, R)
        return y.view(*lead, y.shape[-1])


def max_over_neighbours(x: Tensor) -> Tensor:
    """Max pooling over the neighbour axis: ``(B, M, K, C) -> (B, M, C)``.

    ``max(dim).values``: its backward scatters the gradient to one maximal entry per output (the
    first), about 2.5x cheaper than ``amax``'s (which splits it among ties).
    """
    return x.max(dim=2).values
