"""Fused ``Linear -> BatchNorm -> ReLU`` (+ max over the neighbour axis) autograd functions.

See :mod:`pointlib.nn.blocks` for what is kept for backward and how evaluation folds BatchNorm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.nn._rows import (
    Gathered,
    Part,
    _autocast_cast,
    _block_stats,
    _blocks,
    _col_stats,
    _extrema,
    _flatten_parts,
    _fusable,
    _make_rows,
    _masked_grad,
    _merge_stats,
    _split,
    update_running_stats,
)
from pointlib.nn.norm import BatchNormLast


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
        for a, b in _blocks(x.shape[0], 1, weight.shape[0]):
            gb = (out[a:b] > 0).to(g.dtype).mul_(g[a:b])
            dw.addmm_(gb.t(), x[a:b])
            db += gb.sum(0)
            if dx is not None:
                torch.mm(gb, weight, out=dx[a:b])
        return dx, dw, db


class _LinearBNActFn(torch.autograd.Function):
    """Training-mode ``[max_K] act(BN(cat(parts) W^T + b))``; see :func:`linear_bn_act`.

    ``kinds`` says how the flat ``tensors`` make up the parts (``"d"``: one ``(R, c)`` tensor;
    ``"g"``: ``(N, c)`` source rows and their ``(R,)`` row index). Saved for backward: those
    tensors, the weight, per-channel statistics and (pooling) the selected pre-activation
    values and their indices, ``(M, C)``. The linear output is recomputed in backward; with
    pooling it is only ever built in blocks of rows.
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
        kinds: tuple[str, ...],
        *tensors: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        R = tensors[0].shape[0] if kinds[0] == "d" else tensors[1].shape[0]
        C = weight.shape[0]
        rows, _, _ = _make_rows(kinds, tensors, weight, bias)
        if pool_k:
            M = R // pool_k
            ext = _extrema(gamma)
            stats = []
            found: dict[str, tuple[Tensor, Tensor]] = {}
            for a, b in _blocks(R, pool_k, C):
                yb = rows.block(a, b)
                if a == 0:  # in the blocks' dtype (autocast may change it)
                    for e in ext:
                        found[e] = (yb.new_empty(M, C), yb.new_empty(M, C, dtype=torch.long))
                y3 = yb.view(-1, pool_k, C)
                ma, mb = a // pool_k, b // pool_k
                for e, (v, i) in found.items():
                    (torch.max if e == "max" else torch.min)(y3, 1, out=(v[ma:mb], i[ma:mb]))
                stats.append(_block_stats(yb))
            mean64, var64 = _merge_stats(stats)
            mean, var = mean64.to(yb.dtype), var64.to(yb.dtype)
        else:
            y = rows.block(0, R)  # (R, C), becomes the output in place
            mean, var = _col_stats(y)
        del rows
        invstd = torch.rsqrt(var + eps)
        scale = gamma * invstd
        shift = beta - mean * scale
        if pool_k:
            if len(found) == 2:  # per channel: max where scale >= 0, else min
                pos = scale >= 0
                (vmax, imax), (vmin, imin) = found["max"], found["min"]
                sel = torch.where(pos, vmax, vmin)  # (M, C) pre-activation of the pooled entry
                isel = torch.where(pos, imax, imin)
                del vmax, vmin, imax, imin
            else:
                sel, isel = found.popitem()[1]
            del found
            out = torch.addcmul(shift, sel, scale)
            if relu:
                out = out.relu_()
            ctx.save_for_backward(weight, bias, mean, invstd, scale, shift, sel, isel, *tensors)
        else:
            out = torch.addcmul(shift, y, scale, out=y)  # in place: y is not kept
            if relu:
                out = out.relu_()
            ctx.save_for_backward(weight, bias, mean, invstd, scale, shift, *tensors)
        ctx.relu, ctx.pool_k, ctx.has_bias, ctx.kinds = relu, pool_k, bias is not None, kinds
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, g: Tensor, _gm: Tensor, _gv: Tensor):  # type: ignore[override]
        saved = ctx.saved_tensors
        weight, bias, mean, invstd, scale, shift = saved[:6]
        pool_k, kinds = ctx.pool_k, ctx.kinds
        tensors = saved[8:] if pool_k else saved[6:]
        rows, widths, offs = _make_rows(kinds, tensors, weight, bias)
        parts = _split(kinds, tensors)
        R = rows.dense[0][0].shape[0] if rows.dense else rows.gathered[0][1].shape[0]
        C = weight.shape[0]
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
            for a, b in _blocks(R, 1, C):
                yb = rows.block(a, b)
                gb = _masked_grad(g[a:b], yb, shift, scale, ctx.relu)
                sum_gz += gb.sum(0)
                sum_gzxc += yb.sub_(mean).mul_(gb).sum(0)
        dgamma = sum_gzxc * invstd
        # dL/dy = scale * (gz - mean(gz) - xhat * mean(gz * xhat)) = c1 y + c0 + scale gz
        c1 = scale * invstd * dgamma / -R
        c0 = scale * sum_gz / -R - c1 * mean
        first = 8  # index of the first flat tensor among forward's inputs
        grads: list[Tensor | None] = []
        dws: list[Tensor] = []
        sums: list[Tensor | None] = []  # gathered parts: row gradients summed per source row
        j = first
        for kind, t in zip(kinds, parts):
            want = ctx.needs_input_grad[j]
            if kind == "d":
                grads.append(t[0].new_empty(t[0].shape) if want else None)
                sums.append(None)
            else:
                grads.extend([None, None])  # filled below (source), index: no gradient
                sums.append(weight.new_zeros(t[0].shape[0], C))
            dws.append(weight.new_zeros(C, t[0].shape[1]))
            j += len(t)
        dbias = weight.new_zeros(C) if ctx.has_bias and ctx.needs_input_grad[1] else None
        for a, b in _blocks(R, pool_k or 1, C):
            dyb = rows.block(a, b)  # recomputed block
            if pool_k:
                dyb = torch.addcmul(c0, dyb, c1, out=dyb)
                ma, mb = a // pool_k, b // pool_k
                dyb.view(-1, pool_k, C).scatter_add_(
                    1, isel[ma:mb].unsqueeze(1), gs[ma:mb].unsqueeze(1)
                )
            else:
                gb = _masked_grad(g[a:b], dyb, shift, scale, ctx.relu)
                dyb = torch.addcmul(c0, dyb, c1, out=dyb).addcmul_(gb, scale)
            gi = 0
            for i, (kind, t) in enumerate(zip(kinds, parts)):
                if kind == "d":
                    dx = grads[gi]
                    if dx is not None:
                        w = weight[:, offs[i] : offs[i] + widths[i]]
                        torch.mm(dyb, w, out=dx[a:b])
                    dws[i].addmm_(dyb.t(), t[0][a:b])
                    gi += 1
                else:
                    acc = sums[i]
                    assert acc is not None
                    acc.index_add_(0, t[1][a:b], dyb)
                    gi += 2
            if dbias is not None:
                dbias += dyb.sum(0)
        gi = 0
        j = first
        for i, (kind, t) in enumerate(zip(kinds, parts)):
            if kind == "g":
                acc = sums[i]
                assert acc is not None
                dws[i].addmm_(acc.t(), t[0])
                if ctx.needs_input_grad[j]:
                    grads[gi] = acc @ weight[:, offs[i] : offs[i] + widths[i]]
            gi += len(t)
            j += len(t)
        dweight = dws[0] if len(dws) == 1 else torch.cat(dws, 1)
        return dweight, dbias, dgamma, sum_gz, None, None, None, None, *grads


def _leading_shape(p: Part) -> torch.Size:
    return p.shape[:-1]


def linear_bn_act(
    xs: Part | Sequence[Part],
    linear: nn.Linear,
    bn: nn.BatchNorm1d,
    *,
    relu: bool = True,
    pool_k: int | None = None,
    residual: Tensor | None = None,
) -> Tensor:
    r"""Fused ``[max over K] ReLU(BN(Linear(cat(xs, -1))))`` on channels-last input.

    Args:
        xs: one part ``(*, C_in)`` or several ``(*, C_i)`` with equal leading shapes, read as
            their concatenation along the channels (never built). A part is a tensor or a
            :class:`Gathered` (rows of a ``(B, N, C_i)`` tensor selected by a ``(B, *)`` index,
            not built either: its weight columns are applied to the ``N`` source rows). With
            ``pool_k`` the leading shape must be ``(B, M, K)``.
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
    parts: list[Part] = [xs] if isinstance(xs, (Tensor, Gathered)) else list(xs)
    lead = _leading_shape(parts[0])
    for p in parts[1:]:
        if _leading_shape(p) != lead:
            shapes = [tuple(t.shape) for t in parts]
            raise ValueError(f"inputs have different leading shapes: {shapes}")
    if pool_k is not None and (len(lead) < 1 or lead[-1] != pool_k):
        shape = tuple(parts[0].shape)
        raise ValueError(f"pool_k={pool_k} must be the size of axis -2 of {shape}")
    c_in = sum(p.shape[-1] for p in parts)
    if c_in != linear.in_features:
        raise ValueError(f"expected {linear.in_features} input channels, got {c_in}")
    R = lead.numel()
    out_lead = lead[:-1] if pool_k else lead
    if not _fusable(bn) or R == 0:
        dense = [p.materialize() if isinstance(p, Gathered) else p for p in parts]
        h = torch.cat(dense, -1) if len(dense) > 1 else dense[0]
        y = F.linear(h, linear.weight, linear.bias)
        y = bn(y) if isinstance(bn, BatchNormLast) else bn(y.reshape(-1, y.shape[-1])).view(y.shape)
        if relu:
            y = torch.relu(y)
        y = y.amax(dim=-2) if pool_k else y
        return y if residual is None else y + residual
    kinds, flat = _flatten_parts(parts)
    if bn.training:
        cast = _autocast_cast(flat[0])  # under autocast: the whole block in its dtype
        out, mean, var = _LinearBNActFn.apply(
            cast(linear.weight), cast(linear.bias), cast(bn.weight), cast(bn.bias), bn.eps, relu,
            pool_k or 0, tuple(kinds), *(t if t.dtype == torch.long else cast(t) for t in flat),
        )  # fmt: skip
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
    rows, _, _ = _make_rows(kinds, flat, w, b)
    if pool_k:  # blocked: the (R, C_out) map is never built
        pooled = [
            rows.block(a, e).view(-1, pool_k, w.shape[0]).amax(1)
            for a, e in _blocks(R, pool_k, w.shape[0])
        ]
        y = pooled[0] if len(pooled) == 1 else torch.cat(pooled)
    else:
        y = rows.block(0, R)
    inplace = not (torch.is_grad_enabled() and y.requires_grad)
    if relu:
        y = y.relu_() if inplace else torch.relu(y)
    y = y.view(*out_lead, y.shape[-1])
    if residual is not None:
        y = y.add_(residual) if inplace else y + residual
    return y
