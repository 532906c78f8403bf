"""Neighbourhoods: which key/value tokens each query (or group of queries) attends to.

A :class:`Neighborhood` is a dense, fixed-``K`` index plus optional geometry. Builders in this
module are pure torch and cheap to cache (images: once per resolution; points: once per stage).

Index conventions (``Bi`` is ``1`` for a batch-shared index or ``B``):

==========  =================================  ===========================================
mode        ``index``                          meaning
==========  =================================  ===========================================
global      ``None``                           every query sees every key/value token
query       ``(Bi, Nq, K)`` into kv tokens     query ``i`` sees keys ``index[b, i, :]``
group       ``(Bi, G, Kkv)`` into kv tokens    the ``Kq`` queries ``q_index[b, g]`` (default:
                                               the same tokens) attend over ``index[b, g]``
==========  =================================  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from pointlib.ops import ball_query as _ball_query
from pointlib.ops import knn as _knn

Mode = Literal["global", "query", "group"]

__all__ = [
    "Neighborhood",
    "ball_neighborhood",
    "grid",
    "knn_neighborhood",
    "route",
    "windows",
]


@dataclass(frozen=True, eq=False)
class Neighborhood:
    """Which tokens each query attends to, plus geometry for positional terms.

    Attributes:
        mode: ``"global"`` (no index), ``"query"`` (one index row per query token) or
            ``"group"`` (full attention inside each group of tokens).
        index: int64 kv-token ids. Query mode ``(Bi, Nq, K)``; group mode ``(Bi, G, Kkv)``.
            ``Bi`` is 1 (shared across the batch) or ``B``.
        q_index: group mode only: ``(Bi, G, Kq)`` query-token ids of each group. ``None`` means
            the queries of group ``g`` are the tokens ``index[:, g]`` (Swin/DaViT windows);
            HaloNet blocks and BiFormer routing use a different set.
        valid: bool, same shape as ``index``; ``False`` marks a padded slot that must get exactly
            zero attention weight (image borders of halo windows, ragged groups).
        rel: float geometry per (query, key) pair for positional terms. Query mode
            ``(Bi, Nq, K, P)``; group mode ``(Bi, G, Kq, Kkv, P)``; global mode ``(Bi, Nq, Nk, P)``.
            Grid builders give ``(dy, dx)`` = key - query in pixels; ``knn_neighborhood`` gives
            ``xyz_key - xyz_query``.
        slot: int64 discrete offset id per (query, key) pair for table biases, shaped like
            ``rel`` without ``P``.
        num_extra: number of global extra tokens every query also sees (TransNeXt pooled tokens,
            NATTEN ``additional_keys``); when non-zero, :func:`~pointlib.attention.attention`
            checks that ``extra_k`` has this many tokens.
        num_slots: the number of distinct ``slot`` values (table size), when ``slot`` is set.
        reduce: group mode only: ``"mean"`` scatters group outputs back to query tokens
            (averaging tokens that occur in several groups; tokens in no group get zeros);
            ``"none"`` returns the per-group outputs ``(B, H, G, Kq, Dv)``.
    """

    mode: Mode = "global"
    index: Tensor | None = None
    q_index: Tensor | None = None
    valid: Tensor | None = None
    rel: Tensor | None = None
    slot: Tensor | None = None
    num_extra: int = 0
    num_slots: int | None = None
    reduce: Literal["mean", "none"] = "mean"

    def __post_init__(self) -> None:
        if self.mode not in ("global", "query", "group"):
            raise ValueError(f"mode must be 'global', 'query' or 'group', got {self.mode!r}")
        if self.mode == "global":
            if self.index is not None or self.q_index is not None or self.valid is not None:
                raise ValueError("a global Neighborhood takes no index, q_index or valid")
            return
        if self.index is None:
            raise ValueError(f"a {self.mode} Neighborhood needs an index")
        if not isinstance(self.index, Tensor) or self.index.dim() != 3:
            shape = tuple(self.index.shape) if isinstance(self.index, Tensor) else self.index
            raise ValueError(f"index must be a (B, Nq|G, K) tensor, got {shape}")
        if self.index.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"index must be int64 (or int32), got {self.index.dtype}")
        if self.mode == "query" and self.q_index is not None:
            raise ValueError("q_index is only meaningful in group mode")
        if self.q_index is not None:
            qi = self.q_index
            if qi.dim() != 3 or qi.shape[1] != self.index.shape[1]:
                raise ValueError(
                    f"q_index must be (B, G, Kq) with G={self.index.shape[1]}, "
                    f"got {tuple(qi.shape)}"
                )
        if self.valid is not None:
            if self.valid.dtype != torch.bool:
                raise TypeError(f"valid must be a bool tensor, got {self.valid.dtype}")
            if self.valid.shape[1:] != self.index.shape[1:]:
                raise ValueError(
                    f"valid {tuple(self.valid.shape)} must match index {tuple(self.index.shape)}"
                )
        if self.reduce not in ("mean", "none"):
            raise ValueError(f"reduce must be 'mean' or 'none', got {self.reduce!r}")

    @property
    def k(self) -> int | None:
        """Keys per query (query mode) or per group (group mode); ``None`` in global mode."""
        return None if self.index is None else int(self.index.shape[-1])

    def to_edge_index(self, batch_size: int, num_kv: int, num_q: int | None = None) -> Tensor:
        """PyG-style ``edge_index (2, E)``: row 0 = key/value token, row 1 = query token.

        Tokens of sample ``b`` are numbered ``b * num_kv + j`` (keys) and ``b * num_q + i``
        (queries, ``num_q`` defaults to ``num_kv``), as in a PyG ``Batch``. Invalid slots are
        dropped. Query mode gives one edge per (query, slot); group mode one per (query of the
        group, key of the group). Global mode is not supported (it would be dense).
        """
        if self.mode == "global" or self.index is None:
            raise ValueError("to_edge_index() needs a query- or group-mode Neighborhood")
        nq = num_kv if num_q is None else num_q
        B = batch_size
        idx = self.index.expand(B, -1, -1)
        valid = None if self.valid is None else self.valid.expand(B, -1, -1)
        boff = torch.arange(B, device=idx.device)[:, None, None]
        if self.mode == "query":
            src = idx + boff * num_kv
            dst = torch.arange(idx.shape[1], device=idx.device)[None, :, None] + boff * nq
            dst = dst.expand_as(src)
            keep = valid
        else:
            qi = (self.q_index if self.q_index is not None else self.index).expand(B, -1, -1)
            src = (idx + boff * num_kv)[:, :, None, :].expand(-1, -1, qi.shape[-1], -1)
            dst = (qi + boff * nq)[:, :, :, None].expand_as(src)
            keep = None if valid is None else valid[:, :, None, :].expand_as(src)
        if keep is not None:
            src, dst = src[keep], dst[keep]
        return torch.stack([src.reshape(-1), dst.reshape(-1)])

    def to(self, device: torch.device | str) -> Neighborhood:
        """A copy with every tensor moved to ``device``."""
        moved = {
            f: (getattr(self, f).to(device) if isinstance(getattr(self, f), Tensor) else None)
            for f in ("index", "q_index", "valid", "rel", "slot")
        }
        return replace(self, **moved)


# --------------------------------------------------------------------------------------------
# points


def knn_neighborhood(
    pos: Tensor, k: int, query_pos: Tensor | None = None, *, backend: str = "auto"
) -> Neighborhood:
    """Query-mode neighbourhood of the ``k`` nearest points (self included when queries = points).

    Args:
        pos: ``(B, N, 3)`` key/value point coordinates.
        k: neighbours per query, ``1 <= k <= N`` (a clear ``ValueError`` otherwise).
        query_pos: ``(B, M, 3)`` query coordinates; ``None`` uses ``pos`` (``M = N``).
        backend: kNN backend, see :func:`pointlib.ops.knn`.

    Returns:
        ``Neighborhood(mode="query", index (B, M, k), rel (B, M, k, 3))`` with
        ``rel = pos[index] - query_pos`` (ascending distance order, ties to the lower index).
    """
    if not isinstance(pos, Tensor) or pos.dim() != 3:
        raise ValueError(f"pos must have shape (B, N, 3), got {getattr(pos, 'shape', pos)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= pos.shape[1]:
        raise ValueError(f"k must be an int in [1, N={pos.shape[1]}], got {k!r}")
    idx, _ = _knn(pos, k, query_pos, backend=backend)
    q = pos if query_pos is None else query_pos
    B, M, _ = idx.shape
    nb = torch.gather(pos, 1, idx.reshape(B, M * k, 1).expand(-1, -1, 3)).view(B, M, k, 3)
    return Neighborhood(mode="query", index=idx, rel=nb - q[:, :, None, :])


def ball_neighborhood(
    pos: Tensor,
    radius: float,
    k: int,
    query_pos: Tensor | None = None,
    *,
    backend: str = "auto",
) -> Neighborhood:
    """Query-mode neighbourhood of up to ``k`` points within ``radius`` (ball query).

    Uses :func:`pointlib.ops.ball_query` (first ``k`` members by index, strict ``dist2 < r2``).
    Its padding (repeats of the first member) and the nearest-point fill of empty balls are marked
    ``valid=False``, so they get exactly zero attention weight; ``k`` may exceed ``N``.

    Returns:
        ``Neighborhood(mode="query", index (B, M, k), valid (B, M, k), rel (B, M, k, 3))``.
    """
    if not isinstance(pos, Tensor) or pos.dim() != 3:
        raise ValueError(f"pos must have shape (B, N, 3), got {getattr(pos, 'shape', pos)}")
    idx = _ball_query(pos, radius, k, query_pos, backend=backend)
    q = pos if query_pos is None else query_pos
    B, M, _ = idx.shape
    nb = torch.gather(pos, 1, idx.reshape(B, M * k, 1).expand(-1, -1, 3)).view(B, M, k, 3)
    rel = nb - q[:, :, None, :]
    repeat = torch.zeros_like(idx, dtype=torch.bool)
    repeat[..., 1:] = idx[..., 1:] == idx[..., :1]
    r2 = torch.tensor(float(radius) ** 2, dtype=pos.dtype)
    inside = (rel * rel).sum(-1) < r2
    return Neighborhood(mode="query", index=idx, valid=~repeat & inside, rel=rel)


# --------------------------------------------------------------------------------------------
# 2D grids (tokens are pixels flattened row-major: token = y * w + x)


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or any(isinstance(a, bool) or not isinstance(a, int) for a in t):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t[0], t[1]


def _natten_axis(n: int, kernel: int, dilation: int) -> Tensor:
    """``(n, kernel)`` neighbour positions along one axis with NATTEN border rules.

    Positions split into ``dilation`` interleaved sub-sequences (``i % dilation``); inside its
    sub-sequence of length ``L``, position ``i`` takes ``kernel`` consecutive members starting at
    ``clamp(i // dilation - kernel // 2, 0, L - kernel)``: the window shifts inward at borders,
    so every query has exactly ``kernel`` keys.
    """
    i = torch.arange(n)
    g = i % dilation
    length = (n - g + dilation - 1) // dilation
    start = torch.minimum((i // dilation - kernel // 2).clamp(min=0), length - kernel)
    return g[:, None] + dilation * (start[:, None] + torch.arange(kernel))


def grid(
    h: int,
    w: int,
    kernel: int | tuple[int, int],
    dilation: int | tuple[int, int] = 1,
    *,
    device: torch.device | str | None = None,
) -> Neighborhood:
    """NAT/NATTEN neighbourhood on an ``h x w`` grid (query mode, batch-shared index).

    Each pixel attends to a ``kernel x kernel`` window of pixels with step ``dilation``. At borders
    the window is shifted inward (not truncated), so every pixel has exactly ``kernel**2`` keys.
    Requires odd ``kernel`` and ``kernel * dilation <= size`` per axis (NATTEN's constraint).

    Returns:
        ``Neighborhood(mode="query")`` with ``index (1, h*w, kh*kw)`` (row-major window slots),
        ``rel (1, h*w, kh*kw, 2)`` = ``(dy, dx)`` key - query in pixels (float32),
        ``slot (1, h*w, kh*kw)`` = ``(dy/dil_y + kh-1) * (2kw-1) + (dx/dil_x + kw-1)`` (the NAT
        relative-position-bias entry) and ``num_slots = (2kh-1)(2kw-1)``.
    """
    kh, kw = _pair(kernel, "kernel")
    dh, dw = _pair(dilation, "dilation")
    for k, d, n, ax in ((kh, dh, h, "height"), (kw, dw, w, "width")):
        if k < 1 or k % 2 == 0:
            raise ValueError(f"kernel must be odd and >= 1, got {k} ({ax})")
        if d < 1:
            raise ValueError(f"dilation must be >= 1, got {d} ({ax})")
        if k * d > n:
            raise ValueError(
                f"kernel * dilation = {k}*{d} is larger than the {ax} {n}; "
                "the window would hold more keys than there are tokens"
            )
    ys, xs = _natten_axis(h, kh, dh), _natten_axis(w, kw, dw)  # (h, kh), (w, kw)
    ky = ys[:, None, :, None].expand(h, w, kh, kw)
    kx = xs[None, :, None, :].expand(h, w, kh, kw)
    qy = torch.arange(h)[:, None, None, None]
    qx = torch.arange(w)[None, :, None, None]
    index = (ky * w + kx).reshape(1, h * w, kh * kw)
    dy, dx = (ky - qy).reshape(1, h * w, kh * kw), (kx - qx).reshape(1, h * w, kh * kw)
    slot = (dy // dh + kh - 1) * (2 * kw - 1) + (dx // dw + kw - 1)
    rel = torch.stack([dy, dx], -1).float()
    nbr = Neighborhood(
        mode="query", index=index, rel=rel, slot=slot, num_slots=(2 * kh - 1) * (2 * kw - 1)
    )
    return nbr.to(device) if device is not None else nbr


def windows(
    h: int,
    w: int,
    size: int | tuple[int, int],
    halo: int = 0,
    *,
    border: Literal["mask", "zero"] = "mask",
    device: torch.device | str | None = None,
) -> Neighborhood:
    """Non-overlapping windows (Swin/DaViT) or haloed blocks (HaloNet) on an ``h x w`` grid.

    Windows are ordered row-major over the grid of windows; slots row-major inside a window.
    ``h`` and ``w`` must be divisible by the window size (``ValueError`` otherwise).

    Args:
        h, w: grid size; tokens are pixels flattened row-major (``y * w + x``).
        size: window (query block) size, int or ``(sh, sw)``.
        halo: ``0`` gives plain windows (``q_index=None``). ``halo > 0`` gives HaloNet blocks: the
            queries of group ``g`` are its ``sh*sw`` block, the keys the ``(sh+2halo)(sw+2halo)``
            block grown by ``halo`` pixels on every side.
        border: how halo slots outside the image are handled. ``"mask"``: index 0 with
            ``valid=False`` (exactly zero weight). ``"zero"``: index ``h*w``, i.e. one past the
            last token, with ``valid=None``; the caller appends one all-zero key/value token, which
            reproduces zero-padding of the projected key/value map (timm's HaloNet).

    Returns:
        ``Neighborhood(mode="group")`` with ``index (1, G, Kkv)``, ``q_index`` (``(1, G, Kq)`` or
        ``None``), ``valid`` (halo + mask only), ``rel (1, G, Kq, Kkv, 2)`` = ``(dy, dx)``
        key - query, and ``slot`` = ``(dy + Ry) * (2Rx + 1) + (dx + Rx)`` with ``R = size - 1 +
        halo`` per axis (``num_slots = (2Ry+1)(2Rx+1)``).
    """
    sh, sw = _pair(size, "size")
    if sh < 1 or sw < 1:
        raise ValueError(f"window size must be >= 1, got {(sh, sw)}")
    if h % sh or w % sw:
        raise ValueError(
            f"grid {h}x{w} is not divisible by the window size {sh}x{sw}; pad the input first"
        )
    if isinstance(halo, bool) or not isinstance(halo, int) or halo < 0:
        raise ValueError(f"halo must be an int >= 0, got {halo!r}")
    if border not in ("mask", "zero"):
        raise ValueError(f"border must be 'mask' or 'zero', got {border!r}")
    gy, gx = h // sh, w // sw
    # query block coordinates (G, Kq)
    by = torch.arange(gy)[:, None, None, None] * sh + torch.arange(sh)[None, None, :, None]
    bx = torch.arange(gx)[None, :, None, None] * sw + torch.arange(sw)[None, None, None, :]
    by, bx = by.expand(gy, gx, sh, sw), bx.expand(gy, gx, sh, sw)
    qy, qx = by.reshape(gy * gx, sh * sw), bx.reshape(gy * gx, sh * sw)
    # key block coordinates (G, Kkv)
    ky_ = torch.arange(gy)[:, None, None, None] * sh - halo + torch.arange(sh + 2 * halo)[:, None]
    kx_ = torch.arange(gx)[None, :, None, None] * sw - halo + torch.arange(sw + 2 * halo)
    ky_ = ky_.expand(gy, gx, sh + 2 * halo, sw + 2 * halo)
    kx_ = kx_.expand(gy, gx, sh + 2 * halo, sw + 2 * halo)
    G = gy * gx
    ky, kx = ky_.reshape(G, -1), kx_.reshape(G, -1)
    inside = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
    index = ky.clamp(0, h - 1) * w + kx.clamp(0, w - 1)
    valid = None
    if halo > 0:
        if border == "mask":
            index = torch.where(inside, index, torch.zeros_like(index))
            valid = inside[None]
        else:
            index = torch.where(inside, index, torch.full_like(index, h * w))
    dy = ky[:, None, :] - qy[:, :, None]
    dx = kx[:, None, :] - qx[:, :, None]
    ry, rx = sh - 1 + halo, sw - 1 + halo
    slot = (dy + ry) * (2 * rx + 1) + (dx + rx)
    nbr = Neighborhood(
        mode="group",
        index=index[None],
        q_index=(qy * w + qx)[None] if halo > 0 else None,
        valid=valid,
        rel=torch.stack([dy, dx], -1).float()[None],
        slot=slot[None],
        num_slots=(2 * ry + 1) * (2 * rx + 1),
    )
    return nbr.to(device) if device is not None else nbr


# --------------------------------------------------------------------------------------------
# content routing (BiFormer)


def route(
    q: Tensor, k: Tensor, regions: Neighborhood, topk: int, *, scale: float | None = None
) -> Neighborhood:
    """BiFormer bi-level routing: each region attends to the tokens of its ``topk`` regions.

    Region descriptors are the means of ``q`` and ``k`` over each region's tokens; region ``g``
    routes to the ``topk`` regions ``r`` with the largest ``mean_q[g] . mean_k[r] * scale``
    (descending, so the order matches ``torch.topk``). The index is built from content at run
    time and carries no gradient (as in BiFormer).

    Args:
        q, k: ``(B, N, C)`` token queries/keys (before the head split, as BiFormer routes with
            all channels).
        regions: a group-mode partition, e.g. ``windows(h, w, s)``: ``index (Bi, G, R)``, every
            region with the same number ``R`` of tokens, no ``valid`` padding.
        topk: routed regions per region, ``1 <= topk <= G``.
        scale: logit scale (does not change the ranking); default ``C ** -0.5``.

    Returns:
        ``Neighborhood(mode="group")`` with ``q_index (B, G, R)`` (each region's own tokens) and
        ``index (B, G, topk * R)`` (the routed regions' tokens, region by region).
    """
    if regions.mode != "group" or regions.index is None:
        raise ValueError("route() needs a group-mode regions Neighborhood, e.g. windows(h, w, s)")
    if regions.valid is not None or regions.q_index is not None:
        raise ValueError("route() regions must be a plain partition (no valid, no q_index)")
    if q.dim() != 3 or k.shape != q.shape:
        raise ValueError(f"q and k must both be (B, N, C), got {tuple(q.shape)}, {tuple(k.shape)}")
    B, N, C = q.shape
    reg = regions.index.to(q.device).expand(B, -1, -1)
    G, R = reg.shape[1:]
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= G:
        raise ValueError(f"topk must be an int in [1, G={G}], got {topk!r}")
    if int(reg.max()) >= N or int(reg.min()) < 0:
        raise IndexError(f"regions.index is out of range for {N} tokens")
    with torch.no_grad():
        flat = reg.reshape(B, G * R, 1).expand(-1, -1, C)
        qr = torch.gather(q, 1, flat).view(B, G, R, C).mean(2)
        kr = torch.gather(k, 1, flat).view(B, G, R, C).mean(2)
        s = C**-0.5 if scale is None else scale
        logits = qr @ kr.transpose(1, 2) * s  # (B, G, G)
        r_idx = logits.topk(topk, dim=-1).indices  # (B, G, topk)
        index = torch.gather(reg, 1, r_idx.reshape(B, G * topk, 1).expand(-1, -1, R))
    return Neighborhood(mode="group", index=index.reshape(B, G, topk * R), q_index=reg)
