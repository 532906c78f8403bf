"""Positional terms for the attention core.

Every module returns logits in the *bias layout* of :func:`pointlib.attention.attention`: the
neighbourhood's ``slot``/``rel`` leading dims with a head axis inserted at dim 1, i.e.
``(Bi, H, Nq, K)`` (query mode), ``(Bi, H, G, Kq, Kkv)`` (group mode), ``(Bi, H, Nq, Nk)``
(global mode with ``rel``). :class:`GatedPositional` produces ``pos_logits`` and ``pos_gate``
instead of a bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from pointlib.attention.neighborhood import Neighborhood

__all__ = ["ContentRelPos", "GatedPositional", "RelPosMLP", "RelPosTable"]


def _heads_to_dim1(x: Tensor) -> Tensor:
    """``(Bi, *rest, H)`` -> ``(Bi, H, *rest)``."""
    return x.movedim(-1, 1)


def _rel_of(src: Tensor | Neighborhood) -> Tensor:
    rel = src.rel if isinstance(src, Neighborhood) else src
    if rel is None:
        raise ValueError("this positional term needs Neighborhood.rel (relative geometry)")
    return rel


class RelPosTable(nn.Module):
    r"""Learned relative-position bias table ``B[h, slot(i, j)]`` (NAT, Swin, HAT, TransNeXt).

    Args:
        num_slots: table size, e.g. ``Neighborhood.num_slots`` of :func:`grid` /
            :func:`windows` (``(2k-1)^2``).
        heads: number of heads ``H``.
        init_std: std of the truncated-normal init (default: ``0.02``).

    Shapes:
        input: ``Neighborhood`` with ``slot (Bi, *S)`` or the ``slot`` tensor itself.
        output: ``(Bi, H, *S)``.
    """

    def __init__(self, num_slots: int, heads: int, *, init_std: float = 0.02) -> None:
        super().__init__()
        self.num_slots, self.heads = int(num_slots), int(heads)
        self.table = nn.Parameter(torch.zeros(self.heads, self.num_slots))
        nn.init.trunc_normal_(self.table, std=init_std, a=-2 * init_std, b=2 * init_std)

    def forward(self, nbr: Neighborhood | Tensor) -> Tensor:
        slot = nbr.slot if isinstance(nbr, Neighborhood) else nbr
        if slot is None:
            raise ValueError("RelPosTable needs Neighborhood.slot")
        slot = slot.to(self.table.device)
        if slot.numel() and (int(slot.min()) < 0 or int(slot.max()) >= self.num_slots):
            raise IndexError(
                f"slot ids in [{int(slot.min())}, {int(slot.max())}] exceed the table "
                f"size {self.num_slots}"
            )
        return _heads_to_dim1(self.table.t()[slot])

    def extra_repr(self) -> str:
        return f"num_slots={self.num_slots}, heads={self.heads}"


class RelPosMLP(nn.Module):
    r"""Continuous relative-position bias ``f(rel_ij)`` per head (Swin-v2 CPB, TransNeXt pool
    bias, Relation-DETR, BVR, Point-Transformer-style ``MLP(Δxyz)``).

    ``f = Linear(hidden, H) . act . Linear(P', hidden)`` applied to an encoding of ``rel``:
    ``"raw"`` (``rel`` itself), ``"log"`` (``sign(r) * log2(1 + |r|)``, Swin-v2/TransNeXt log-spaced
    coordinates) or ``"sincos"`` (``[sin(r w_f), cos(r w_f)]`` with ``num_freqs`` geometric
    frequencies).

    Args:
        in_dim: ``P``, the last dim of ``rel``.
        heads: ``H``.
        hidden: hidden width (default: ``64``).
        encode: ``"raw"``, ``"log"`` or ``"sincos"`` (default: ``"raw"``).
        num_freqs: frequencies for ``"sincos"`` (default: ``8``).
        act: activation class (default: ``nn.ReLU``).

    Shapes:
        input: ``rel (Bi, *S, P)`` or a ``Neighborhood`` carrying it.
        output: ``(Bi, H, *S)``.
    """

    def __init__(
        self,
        in_dim: int,
        heads: int,
        hidden: int = 64,
        *,
        encode: Literal["raw", "log", "sincos"] = "raw",
        num_freqs: int = 8,
        act: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if encode not in ("raw", "log", "sincos"):
            raise ValueError(f"encode must be 'raw', 'log' or 'sincos', got {encode!r}")
        self.in_dim, self.heads, self.encode = int(in_dim), int(heads), encode
        enc_dim = in_dim * 2 * num_freqs if encode == "sincos" else in_dim
        if encode == "sincos":
            freqs = torch.exp(torch.linspace(0.0, math.log(100.0), num_freqs))
            self.register_buffer("freqs", freqs, persistent=False)
        else:
            self.freqs = None
        self.mlp = nn.Sequential(nn.Linear(enc_dim, hidden), act(), nn.Linear(hidden, heads))

    def forward(self, rel: Tensor | Neighborhood) -> Tensor:
        r = _rel_of(rel)
        if r.shape[-1] != self.in_dim:
            raise ValueError(f"rel last dim {r.shape[-1]} != in_dim {self.in_dim}")
        r = r.to(self.mlp[0].weight.dtype)
        if self.encode == "log":
            r = torch.sign(r) * torch.log2(1.0 + r.abs())
        elif self.encode == "sincos":
            a = r[..., None] * self.freqs.to(r.dtype)
            r = torch.cat([a.sin(), a.cos()], -1).flatten(-2)
        return _heads_to_dim1(self.mlp(r))

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, heads={self.heads}, encode={self.encode!r}"


class ContentRelPos(nn.Module):
    r"""Content-relative positional logits ``q_i . R(rel_ij)`` (HaloNet, SASA, PTv1-like).

    Two forms of ``R``:

    * ``tables=(L_1, ..., L_P)``: factorised per axis like HaloNet,
      ``q_i . R(rel_ij) = sum_a q_i . T_a[rel_ij[a] + (L_a - 1) // 2]``, where ``rel`` holds integer
      offsets (``windows()`` gives ``(dy, dx)``), so ``L_a = 2 * (size + halo) - 1`` covers a
      haloed block.
    * ``in_dim=P``: ``R = Linear(P, head_dim)`` on continuous ``rel`` (points).

    The logits are computed from the ``q`` you pass (already scaled, if your model scales ``q``
    before the positional term as timm's HaloNet does).

    Args:
        head_dim: ``D``.
        tables: per-axis table lengths, or ``None``.
        in_dim: ``P`` for the linear form, or ``None``.

    Shapes:
        ``forward(q, nbr)``: ``q (B, H, Nq, D)`` -> query mode ``(B, H, Nq, K)``; group mode
        ``(B, H, G, Kq, Kkv)`` (queries gathered with ``q_index``, or ``index`` if ``None``).
    """

    needs_query = True

    def __init__(
        self,
        head_dim: int,
        *,
        tables: Sequence[int] | None = None,
        in_dim: int | None = None,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        if (tables is None) == (in_dim is None):
            raise ValueError("give exactly one of tables=(L_1, ...) or in_dim=P")
        self.head_dim = int(head_dim)
        std = head_dim**-0.5 if init_std is None else init_std
        if tables is not None:
            self.tables = nn.ParameterList(
                [nn.Parameter(torch.randn(int(n), head_dim) * std) for n in tables]
            )
            self.proj = None
        else:
            self.tables = None
            self.proj = nn.Linear(int(in_dim), head_dim, bias=False)

    def forward(self, q: Tensor, nbr: Neighborhood) -> Tensor:
        rel = _rel_of(nbr)
        B, H, _Nq, D = q.shape
        if nbr.mode == "group":
            qi = nbr.q_index if nbr.q_index is not None else nbr.index
            _Bi, G, Kq = qi.shape
            qi = qi.to(q.device).expand(B, G, Kq).reshape(B, 1, G * Kq, 1)
            qq = torch.gather(q, 2, qi.expand(B, H, G * Kq, D)).view(B, H, G, Kq, D)
        else:  # query / global: rel rows are the queries themselves
            qq = q
        r = rel.to(q.device)  # (Bi, *S, P); S = (Nq, K) or (G, Kq, Kkv) or (Nq, Nk)
        if self.tables is not None:
            if r.shape[-1] != len(self.tables):
                raise ValueError(f"rel has {r.shape[-1]} axes, tables {len(self.tables)}")
            out = 0
            for a, t in enumerate(self.tables):
                off = r[..., a].round().long() + (t.shape[0] - 1) // 2
                if int(off.min()) < 0 or int(off.max()) >= t.shape[0]:
                    raise IndexError(f"relative offsets on axis {a} exceed table length {len(t)}")
                # logits of every query against every table row, then pick: (B, H, *Sq, L)
                lg = qq @ t.t()
                out = out + _pick(lg, off)
            return out
        emb = self.proj(r.to(q.dtype))  # (Bi, *Sq, K, D)
        return (emb[:, None] @ qq[..., None]).squeeze(-1)  # (B, H, *Sq, K)


def _pick(lg: Tensor, off: Tensor) -> Tensor:
    """``lg (B, H, *Sq, L)``, ``off (Bi, *Sq, K)`` -> ``(B, H, *Sq, K)`` = ``lg[..., off]``."""
    B, H = lg.shape[:2]
    off = off[:, None].expand(B, H, *off.shape[1:])
    return torch.gather(lg, -1, off)


class GatedPositional(nn.Module):
    r"""ConViT gated positional self-attention terms.

    ``pos_logits = Linear(P, H)(rel)`` per pair and ``pos_gate = sigmoid(lambda_h)``; pass both to
    :func:`~pointlib.attention.attention` (``pos_logits=..., pos_gate=...``) to get
    ``(1 - g) softmax(q.k s) + g softmax(pos_logits)``. ConViT uses ``rel = (dx, dy, dx^2+dy^2)``;
    for points ``(Δxyz, |Δ|^2)``, or ``|Δ|^2`` alone for rotation invariance.

    Args:
        in_dim: ``P``.
        heads: ``H``.
        gate_init: initial ``lambda_h`` (ConViT: ``1.0``).

    Shapes:
        ``forward(nbr_or_rel)`` -> ``(pos_logits (Bi, H, *S), pos_gate (H,))``.
    """

    def __init__(self, in_dim: int, heads: int, *, gate_init: float = 1.0) -> None:
        super().__init__()
        self.in_dim, self.heads = int(in_dim), int(heads)
        self.pos_proj = nn.Linear(in_dim, heads)
        self.gating_param = nn.Parameter(torch.full((heads,), float(gate_init)))

    @torch.no_grad()
    def local_init_(self, offsets: Tensor, locality_strength: float = 1.0) -> None:
        """ConViT locality init for ``rel = (Δ_1..Δ_{P-1}, |Δ|^2)``: head h peaks at offsets[h].

        Sets ``w_h = α (2 offsets[h], -1)`` and zero bias so that
        ``pos_logit = -α |Δ - offsets[h]|^2 + const``.
        """
        if offsets.shape != (self.heads, self.in_dim - 1):
            raise ValueError(f"offsets must be (H, P-1) = ({self.heads}, {self.in_dim - 1})")
        w = torch.cat([2 * offsets, -torch.ones(self.heads, 1)], 1) * locality_strength
        self.pos_proj.weight.copy_(w.to(self.pos_proj.weight))
        self.pos_proj.bias.zero_()

    def forward(self, rel: Tensor | Neighborhood) -> tuple[Tensor, Tensor]:
        r = _rel_of(rel).to(self.pos_proj.weight.dtype)
        return _heads_to_dim1(self.pos_proj(r)), torch.sigmoid(self.gating_param)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, heads={self.heads}"
