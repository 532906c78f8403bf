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
from typing import NamedTuple

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


class Gathered(NamedTuple):
    """The rows ``src[b, idx[b, ...]]`` of a ``(B, N, D)`` tensor, not built.

    An input part of :func:`linear_bn_act` (e.g. a previous level's features grouped by
    neighbour indices): the fused block multiplies ``src`` by its weight columns once, on the
    ``N`` source rows, and gathers the products, instead of multiplying the ``(B, M, K, D)``
    grouped tensor (``M K`` rows, usually many times ``N``). The backward pass sums the row
    gradients into the source rows (``index_add``) and multiplies there.
    """

    src: Tensor
    idx: Tensor

    @property
    def shape(self) -> torch.Size:
        """The shape of the gathered tensor, ``(*idx.shape, D)``."""
        return torch.Size((*self.idx.shape, self.src.shape[-1]))

    def materialize(self) -> Tensor:
        """The gathered tensor ``(*idx.shape, D)`` (gradients flow to ``src``)."""
        B, _, D = self.src.shape
        flat = self.idx.reshape(B, -1, 1).expand(-1, -1, D)
        return torch.gather(self.src, 1, flat).view(self.shape)

    def flat(self) -> tuple[Tensor, Tensor]:
        """``src`` as ``(B N, D)`` rows and the flat row index ``(R,)`` into them."""
        B, N, D = self.src.shape
        off = torch.arange(B, device=self.idx.device).mul_(N)
        idx = self.idx.reshape(B, -1) + off[:, None]
        return self.src.reshape(B * N, D), idx.reshape(-1)


Part = Tensor | Gathered


class _Rows:
    """Blocks of rows of ``cat(parts, -1) @ W^T + b`` without the concatenation.

    ``dense``: ``(x (R, c), w (C, c))`` pairs; ``gathered``: ``(P (N, C), idx (R,))`` pairs
    with the projected source rows ``P = src @ w^T`` (the first one with the bias added).
    :meth:`block` computes the same values with the same operations every time it is asked
    for the same range (bitwise).
    """

    def __init__(
        self,
        dense: Sequence[tuple[Tensor, Tensor]],
        gathered: Sequence[tuple[Tensor, Tensor]],
        bias: Tensor | None,
    ) -> None:
        self.dense, self.gathered = list(dense), list(gathered)
        self.bias = bias if not self.gathered else None  # else inside the first projection

    def block(self, a: int, b: int) -> Tensor:
        """Rows ``a:b`` as a fresh ``(b - a, C)`` tensor: a gather of the projected rows
        (then accumulating matrix products), or one linear map of the first dense part."""
        dense = self.dense
        if self.gathered:
            P, idx = self.gathered[0]
            y = P.index_select(0, idx[a:b])
            for P, idx in self.gathered[1:]:
                y.add_(P.index_select(0, idx[a:b]))
        else:
            x, w = dense[0]
            y = F.linear(x[a:b], w, self.bias)
            dense = dense[1:]
        for x, w in dense:  # (autocast: the first product may have a lower dtype)
            y.addmm_(x[a:b].to(y.dtype), w.t().to(y.dtype))
        return y


def _flatten_parts(parts: Sequence[Part]) -> tuple[list[str], list[Tensor]]:
    """Kinds (``"d"`` dense, ``"g"`` gathered) and the flat tensors: ``(R, c)`` per dense part,
    ``(N, c)`` source rows and ``(R,)`` indices per gathered part."""
    kinds: list[str] = []
    flat: list[Tensor] = []
    for p in parts:
        if isinstance(p, Gathered):
            kinds.append("g")
            flat.extend(p.flat())
        else:
            kinds.append("d")
            flat.append(p.reshape(-1, p.shape[-1]))
    return kinds, flat


def _split(kinds: Sequence[str], tensors: Sequence[Tensor]) -> list[tuple[Tensor, ...]]:
    """Group the flat tensors per part: ``(x,)`` dense, ``(src, idx)`` gathered."""
    out: list[tuple[Tensor, ...]] = []
    i = 0
    for k in kinds:
        n = 2 if k == "g" else 1
        out.append(tuple(tensors[i : i + n]))
        i += n
    return out


def _make_rows(
    kinds: Sequence[str], tensors: Sequence[Tensor], weight: Tensor, bias: Tensor | None
) -> tuple[_Rows, list[int], list[int]]:
    """The :class:`_Rows` of the parts (gathered parts projected once) and the column widths
    and offsets of the parts in ``weight``."""
    dense, gathered, widths = [], [], []
    off = 0
    offs = []
    for k, t in zip(kinds, _split(kinds, tensors)):
        c = t[0].shape[1]
        w = weight[:, off : off + c]
        if k == "g":
            gathered.append((F.linear(t[0], w, None if gathered else bias), t[1]))
        else:
            dense.append((t[0], w))
        widths.append(c)
        offs.append(off)
        off += c
    return _Rows(dense, gathered, bias), widths, offs


#: Blocking of the passes over ``(R, C)`` tensors: a block has about :data:`BLOCK_ELEMS` elements
#: (``BLOCK_ELEMS // C`` rows) and at least :data:`BLOCK_ROWS` rows. Temporaries of a few MiB
#: are reused by the allocator, while every fresh tensor above glibc's mmap threshold (32 MiB)
#: is page-faulted in again: on CPU that, not arithmetic, dominated the unfused blocks. Blocks
#: much smaller than this cost in another way: every operation on a block is one parallel
#: region, whose synchronisation stalls when the machine is oversubscribed.
BLOCK_ELEMS = 1 << 20
BLOCK_ROWS = 1024


def _blocks(rows: int, group: int = 1, width: int = 1) -> list[tuple[int, int]]:
    """Row ranges of about ``max(BLOCK_ROWS, BLOCK_ELEMS // width)`` rows, multiples of
    ``group``."""
    target = max(BLOCK_ROWS, BLOCK_ELEMS // max(1, width))
    step = max(1, target // group) * group
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
    R, C = y.shape
    mean, var = _merge_stats([_block_stats(y[a:b]) for a, b in _blocks(R, 1, C)])
    return mean.to(y.dtype), var.to(y.dtype)


def _autocast_cast(t: Tensor):
    """A cast to the autocast dtype of ``t``'s device when autocast is on there (identity
    otherwise): the custom functions then run forward *and* backward in that one dtype, as
    autocast's own matrix products do (their gradients are cast back by autograd)."""
    dev = t.device.type
    if not torch.is_autocast_enabled(dev):
        return lambda x: x
    dtype = torch.get_autocast_dtype(dev)
    return lambda x: x if x is None or x.dtype == dtype else x.to(dtype)


def _extrema(gamma: Tensor) -> tuple[str, ...]:
    """Which extrema over the neighbours the pooled block needs: the maximum where the BN scale
    ``gamma / sigma`` is ``>= 0`` (the sign of ``gamma``), the minimum where it is negative.
    Both when the signs are mixed, or under :func:`torch.compile` (no data-dependent branch)."""
    if torch.compiler.is_compiling():
        return ("max", "min")
    if bool((gamma >= 0).all()):
        return ("max",)
    if bool((gamma < 0).all()):
        return ("min",)
    return ("max", "min")


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
