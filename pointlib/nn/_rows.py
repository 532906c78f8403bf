"""Row helpers of the fused blocks (:mod:`pointlib.nn.fused`): gathered inputs, blocking,
batch statistics and running-statistic updates, autocast dtype handling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
