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


# --------------------------------------------------------------------------------------------
# fused Linear + BatchNorm (+ ReLU) (+ max over the neighbour axis)


def _fusable(bn: nn.BatchNorm1d) -> bool:
    return bool(bn.affine and bn.track_running_stats and bn.running_mean is not None)


def _momentum(bn: nn.BatchNorm1d) -> float:
    """The exponential-average factor of :class:`torch.nn.BatchNorm1d` (after incrementing
    ``num_batches_tracked``)."""
    if bn.momentum is not None:
        return float(bn.momentum)
    assert bn.num_batches_tracked is not None
    return 1.0 / float(bn.num_batches_tracked)


@torch.no_grad()
def update_running_stats(bn: nn.BatchNorm1d, mean: Tensor, var: Tensor, count: int) -> None:
    """Update ``bn``'s running statistics with a batch's ``mean``/biased ``var`` (``(C,)``) over
    ``count`` rows, as :class:`torch.nn.BatchNorm1d` does in training mode."""
    assert bn.running_mean is not None and bn.running_var is not None
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    m = _momentum(bn)
    unbiased = var * (count / max(count - 1, 1))
    bn.running_mean.mul_(1 - m).add_(mean.to(bn.running_mean.dtype), alpha=m)
    bn.running_var.mul_(1 - m).add_(unbiased.to(bn.running_var.dtype), alpha=m)


def _linear_parts(xs: Sequence[Tensor], weight: Tensor, bias: Tensor | None) -> Tensor:
    """``cat(xs, -1) @ weight.T + bias`` without building the concatenation; ``xs`` are 2D."""
    if len(xs) == 1:
        return F.linear(xs[0], weight, bias)
    c0 = xs[0].shape[1]
    y = F.linear(xs[0], weight[:, :c0], bias)
    off = c0
    for x in xs[1:]:
        c = x.shape[1]
        y.addmm_(x, weight[:, off : off + c].t())
        off += c
    return y


#: rows per block of the blocked passes over ``(R, C)`` tensors. Temporaries of a few MiB are
#: reused by the allocator, while every fresh tensor above glibc's mmap threshold (32 MiB) is
#: page-faulted in again: on CPU that, not arithmetic, dominated the unfused blocks.
BLOCK_ROWS = 4096


def _blocks(rows: int, group: int = 1) -> list[tuple[int, int]]:
    """Row ranges of about :data:`BLOCK_ROWS` rows, multiples of ``group``."""
    step = max(1, BLOCK_ROWS // group) * group
    return [(r, min(rows, r + step)) for r in range(0, rows, step)]


def _merge_stats(stats: list[tuple[int, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Mean and biased variance from per-block ``(count, mean, var)`` (Chan et al.'s pairwise
    combination, in float64)."""
    n = torch.tensor([c for c, _, _ in stats], dtype=torch.float64, device=stats[0][1].device)
    means = torch.stack([m.double() for _, m, _ in stats])
    vars_ = torch.stack([v.double() for _, _, v in stats])
    total = n.sum()
    mean = (n[:, None] * means).sum(0) / total
    m2 = (n[:, None] * (vars_ + (means - mean).square())).sum(0)
    return mean, m2 / total


def _block_stats(y: Tensor) -> tuple[int, Tensor, Tensor]:
    """``(rows, mean, biased var)`` of the columns of a 2D block (two-pass, accumulated in
    double by the native batch-norm kernel)."""
    _, mean, rstd = torch.ops.aten._native_batch_norm_legit(y, None, None, True, 0.0, 0.0)
    return y.shape[0], mean, torch.reciprocal(rstd.double().square())


def _col_stats(y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column mean and biased variance of ``y (R, C)`` in ``y``'s dtype."""
    mean, var = _merge_stats([_block_stats(y[a:b]) for a, b in _blocks(y.shape[0])])
    return mean.to(y.dtype), var.to(y.dtype)


def _masked_grad(g: Tensor, y: Tensor, shift: Tensor, scale: Tensor, relu: bool) -> Tensor:
    """The gradient at the BN output: ``g`` where ``y * scale + shift > 0`` (ReLU), else 0."""
    if not relu:
        return g
    z = torch.addcmul(shift, y, scale)  # as in forward
    return z.gt_(0).mul_(g)


class _AffineReLUFn(torch.autograd.Function):
    """``relu(x W^T + b)`` whose backward builds the parameter gradients block by block from
    the kept output (the ReLU mask) without an ``(R, C)`` gradient temporary."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        out = torch.addmm(bias, x, weight.t()).relu_()
        ctx.save_for_backward(x, weight, out)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, weight, out = ctx.saved_tensors
        dx = x.new_empty(x.shape) if ctx.needs_input_grad[0] else None
        dw = torch.zeros_like(weight)
        db = weight.new_zeros(weight.shape[0])
        for a, b in _blocks(x.shape[0]):
            gb = (out[a:b] > 0).to(g.dtype).mul_(g[a:b])
            dw.addmm_(gb.t(), x[a:b])
            db += gb.sum(0)
            if dx is not None:
                torch.mm(gb, weight, out=dx[a:b])
        return dx, dw, db


class _LinearBNActFn(torch.autograd.Function):
    """Training-mode ``[max_K] act(BN(cat(xs) W^T + b))``; see :func:`linear_bn_act`.

    Saved for backward: the inputs ``xs``, the weight, per-channel statistics and (pooling) the
    selected pre-activation values and their indices, ``(M, C)``. The linear output is
    recomputed in backward; with pooling it is only ever built in blocks of rows.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        weight: Tensor,
        bias: Tensor | None,
        gamma: Tensor,
        beta: Tensor,
        eps: float,
        relu: bool,
        pool_k: int,
        *xs: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        R = xs[0].shape[0]
        C = weight.shape[0]
        if pool_k:
            M = R // pool_k
            vmax = xs[0].new_empty(M, C)
            vmin = xs[0].new_empty(M, C)
            imax = torch.empty(M, C, dtype=torch.long, device=vmax.device)
            imin = torch.empty(M, C, dtype=torch.long, device=vmax.device)
            stats = []
            for a, b in _blocks(R, pool_k):
                yb = _linear_parts([x[a:b] for x in xs], weight, bias)
                y3 = yb.view(-1, pool_k, C)
                ma, mb = a // pool_k, b // pool_k
                torch.max(y3, 1, out=(vmax[ma:mb], imax[ma:mb]))
                torch.min(y3, 1, out=(vmin[ma:mb], imin[ma:mb]))
                stats.append(_block_stats(yb))
            mean64, var64 = _merge_stats(stats)
            mean, var = mean64.to(vmax.dtype), var64.to(vmax.dtype)
        else:
            y = _linear_parts(xs, weight, bias)  # (R, C), becomes the output in place
            mean, var = _col_stats(y)
        invstd = torch.rsqrt(var + eps)
        scale = gamma * invstd
        shift = beta - mean * scale
        if pool_k:
            pos = scale >= 0
            sel = torch.where(pos, vmax, vmin)  # (M, C) pre-activation of the pooled entry
            isel = torch.where(pos, imax, imin)
            del vmax, vmin, imax, imin
            out = torch.addcmul(shift, sel, scale)
            if relu:
                out = out.relu_()
            ctx.save_for_backward(weight, bias, mean, invstd, scale, shift, sel, isel, *xs)
        else:
            out = torch.addcmul(shift, y, scale, out=y)  # in place: y is not kept
            if relu:
                out = out.relu_()
            ctx.save_for_backward(weight, bias, mean, invstd, scale, shift, *xs)
        ctx.relu, ctx.pool_k, ctx.has_bias = relu, pool_k, bias is not None
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, g: Tensor, _gm: Tensor, _gv: Tensor):  # type: ignore[override]
        saved = ctx.saved_tensors
        weight, bias, mean, invstd, scale, shift = saved[:6]
        pool_k = ctx.pool_k
        xs = saved[8:] if pool_k else saved[6:]
        R, C = xs[0].shape[0], weight.shape[0]
        g = g.contiguous()
        if pool_k:
            sel, isel = saved[6:8]
            gz = g * (torch.addcmul(shift, sel, scale) > 0) if ctx.relu else g
            sum_gz = gz.sum(0)
            sum_gzxc = (gz * (sel - mean)).sum(0)
            gs = gz * scale
        else:
            # two blocked passes, the linear map recomputed per block (bitwise as in forward):
            # sums first, then dy; no (R, C) temporary is ever allocated
            sum_gz = torch.zeros_like(scale)
            sum_gzxc = torch.zeros_like(scale)
            for a, b in _blocks(R):
                yb = _linear_parts([x[a:b] for x in xs], weight, bias)
                gb = _masked_grad(g[a:b], yb, shift, scale, ctx.relu)
                sum_gz += gb.sum(0)
                sum_gzxc += yb.sub_(mean).mul_(gb).sum(0)
        dgamma = sum_gzxc * invstd
        # dL/dy = scale * (gz - mean(gz) - xhat * mean(gz * xhat)) = c1 y + c0 + scale gz
        c1 = scale * invstd * dgamma / -R
        c0 = scale * sum_gz / -R - c1 * mean
        want = [ctx.needs_input_grad[7 + i] for i in range(len(xs))]
        dxs: list[Tensor | None] = [x.new_empty(x.shape) if w else None for x, w in zip(xs, want)]
        widths = [x.shape[1] for x in xs]
        offs = [sum(widths[:i]) for i in range(len(xs))]
        dws = [weight.new_zeros(C, c) for c in widths]
        dbias = weight.new_zeros(C) if ctx.has_bias and ctx.needs_input_grad[1] else None
        for a, b in _blocks(R, pool_k or 1):
            dyb = _linear_parts([x[a:b] for x in xs], weight, bias)  # recomputed block
            if pool_k:
                dyb = torch.addcmul(c0, dyb, c1, out=dyb)
                ma, mb = a // pool_k, b // pool_k
                dyb.view(-1, pool_k, C).scatter_add_(
                    1, isel[ma:mb].unsqueeze(1), gs[ma:mb].unsqueeze(1)
                )
            else:
                gb = _masked_grad(g[a:b], dyb, shift, scale, ctx.relu)
                dyb = torch.addcmul(c0, dyb, c1, out=dyb).addcmul_(gb, scale)
            for i, x in enumerate(xs):
                dx = dxs[i]
                if dx is not None:
                    torch.mm(dyb, weight[:, offs[i] : offs[i] + widths[i]], out=dx[a:b])
                dws[i].addmm_(dyb.t(), x[a:b])
            if dbias is not None:
                dbias += dyb.sum(0)
        dweight = dws[0] if len(dws) == 1 else torch.cat(dws, 1)
        return dweight, dbias, dgamma, sum_gz, None, None, None, *dxs


def linear_bn_act(
    xs: Tensor | Sequence[Tensor],
    linear: nn.Linear,
    bn: nn.BatchNorm1d,
    *,
    relu: bool = True,
    pool_k: int | None = None,
    residual: Tensor | None = None,
) -> Tensor:
    r"""Fused ``[max over K] ReLU(BN(Linear(cat(xs, -1))))`` on channels-last input.

    Args:
        xs: one tensor ``(*, C_in)`` or several ``(*, C_i)`` with equal leading shapes, read as
            their concatenation along the channels (never built). With ``pool_k`` the leading
            shape must be ``(B, M, K)``.
        linear: the linear map ``C_in -> C_out`` (``C_in = sum C_i``).
        bn: the batch normalisation over ``C_out`` (batch statistics in training mode, running
            statistics in evaluation mode, as :class:`torch.nn.BatchNorm1d`).
        relu: apply the ReLU (default ``True``).
        pool_k: if given, the size ``K`` of axis ``-2`` to max-pool over (must equal
            ``xs[0].shape[-2]``).
        residual: optional tensor of the output's shape added to the result (in place where
            autograd allows it).

    Returns:
        ``(*, C_out)``, or ``(B, M, C_out)`` with ``pool_k``. Equal to the unfused modules (up to
        rounding); gradients flow to every input, the linear and the BN affine parameters. In
        training mode the running statistics are updated once.
    """
    parts = [xs] if isinstance(xs, Tensor) else list(xs)
    lead = parts[0].shape[:-1]
    for p in parts[1:]:
        if p.shape[:-1] != lead:
            shapes = [tuple(t.shape) for t in parts]
            raise ValueError(f"inputs have different leading shapes: {shapes}")
    if pool_k is not None and (len(lead) < 1 or lead[-1] != pool_k):
        shape = tuple(parts[0].shape)
        raise ValueError(f"pool_k={pool_k} must be the size of axis -2 of {shape}")
    c_in = sum(p.shape[-1] for p in parts)
    if c_in != linear.in_features:
        raise ValueError(f"expected {linear.in_features} input channels, got {c_in}")
    flat = [p.reshape(-1, p.shape[-1]) for p in parts]
    R = flat[0].shape[0]
    out_lead = lead[:-1] if pool_k else lead
    if not _fusable(bn) or R == 0:
        h = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
        y = F.linear(h, linear.weight, linear.bias)
        y = bn(y) if isinstance(bn, BatchNormLast) else bn(y.reshape(-1, y.shape[-1])).view(y.shape)
        if relu:
            y = torch.relu(y)
        y = y.amax(dim=-2) if pool_k else y
        return y if residual is None else y + residual
    if bn.training:
        out, mean, var = _LinearBNActFn.apply(
            linear.weight, linear.bias, bn.weight, bn.bias, bn.eps, relu, pool_k or 0, *flat
        )
        update_running_stats(bn, mean, var, R)
        out = out.view(*out_lead, out.shape[-1])
        return out if residual is None else out.add_(residual)  # out is not saved: in place
    # evaluation: fold the running statistics into the linear map
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    w = linear.weight * scale[:, None]
    b = bn.bias - bn.running_mean * scale
    if linear.bias is not None:
        b = b + linear.bias * scale
    if pool_k:  # blocked: the (R, C_out) map is never built
        pooled = [
            _linear_parts([x[a:e] for x in flat], w, b).view(-1, pool_k, w.shape[0]).amax(1)
            for a, e in _blocks(R, pool_k)
        ]
        y = pooled[0] if len(pooled) == 1 else torch.cat(pooled)
    else:
        y = _linear_parts(flat, w, b)
    inplace = not (torch.is_grad_enabled() and y.requires_grad)
    if relu:
        y = y.relu_() if inplace else torch.relu(y)
    y = y.view(*out_lead, y.shape[-1])
    if residual is not None:
        y = y.add_(residual) if inplace else y + residual
    return y


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

    def fused(self, xs: Tensor | Sequence[Tensor], pool_k: int | None = None) -> Tensor:
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

    def fused(self, xs: Tensor | Sequence[Tensor], pool_k: int | None = None) -> Tensor:
        """The stack on ``cat(xs, -1)`` (not built), the last block optionally max-pooled over
        axis ``-2`` (see :meth:`LinearBNReLU.fused`). Needs at least one block."""
        if not len(self):
            raise ValueError("an empty SharedMLP has no block to fuse")
        blocks = list(self)
        h: Tensor | Sequence[Tensor] = xs
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
        y = _AffineReLUFn.apply(xc32, w, b2.bias)
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
