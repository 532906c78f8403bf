"""The attention core: one formula, three index modes, a few kernels.

``out_i = sum_{j in N(i)} w_ij v_j`` with ``w_ij = softmax_j(q_i . k_j * scale + bias(i, j))`` for
``kernel="softmax"``, where ``N(i)`` comes from a :class:`~pointlib.attention.Neighborhood`
(global, per-query index, or groups). Tensors are head-split and SDPA-shaped:

* ``q (B, H, Nq, D)``, ``k (B, H, Nk, D)``, ``v (B, H, Nk, Dv)``; output ``(B, H, Nq, Dv)``
  (group mode with ``reduce="none"``: ``(B, H, G, Kq, Dv)``).
* ``bias`` (additive logits) broadcastable to the *logit shape* of the mode: global
  ``(B, H, Nq, Nk)``, query ``(B, H, Nq, K)``, group ``(B, H, G, Kq, Kkv)``. With ``M`` extra
  tokens the last dim may be ``K + M`` (bias on extras too) or ``K`` (extras get bias 0).

Two paths compute the same thing: ``"sdpa"`` gathers K/V, folds queries (query mode) or groups
(group mode) into the batch and calls :func:`torch.nn.functional.scaled_dot_product_attention`
in chunks; ``"explicit"`` materialises the weights (needed for ``return_attn``, the offset and
linear kernels, and used as the test oracle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pointlib.attention.neighborhood import Neighborhood
from pointlib.attention.offset import offset_attention

Kernel = Literal["softmax", "linear", "offset"]
BackendName = Literal["auto", "sdpa", "explicit"]

__all__ = ["attention", "channel_attention", "feature_map"]

_GLOBAL = Neighborhood()
_Result = Tensor | tuple[Tensor, Tensor]
#: elements of gathered K+V per SDPA call (16 MiB in float32: cache-friendly, bounded memory)
CHUNK_ELEMENTS = 1 << 22


def feature_map(x: Tensor, name: str) -> Tensor:
    """Positive feature maps of linear attention: ``"elu1"`` (ELU+1), ``"relu"``, ``"identity"``."""
    if name == "elu1":
        return F.elu(x) + 1.0
    if name == "relu":
        return F.relu(x)
    if name == "identity":
        return x
    raise ValueError(f"feature_map must be 'elu1', 'relu' or 'identity', got {name!r}")


# --------------------------------------------------------------------------------------------
# validation and gathering


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 4:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a head-split (B, H, N, D) tensor, got {shape}")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}; "
            "need q (B,H,Nq,D), k (B,H,Nk,D), v (B,H,Nk,Dv)"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k head widths differ: {q.shape[-1]} vs {k.shape[-1]}")


def _check_index(idx: Tensor, name: str, B: int, n: int, rows: int | None) -> Tensor:
    if idx.dim() != 3 or idx.shape[0] not in (1, B):
        raise ValueError(f"{name} must have shape (1 or B={B}, rows, K), got {tuple(idx.shape)}")
    if rows is not None and idx.shape[1] != rows:
        raise ValueError(f"{name} has {idx.shape[1]} rows, expected {rows} (one per query)")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(
            f"{name} is out of range: values in [{int(idx.min())}, {int(idx.max())}] "
            f"but there are {n} tokens"
        )
    return idx.long()


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """``x (B, H, N, D)``, ``idx (Bi, R, K)`` -> ``(B, R, H, K, D)`` (autograd through index)."""
    B, H, N, D = x.shape
    _Bi, R, K = idx.shape
    flat = x.transpose(1, 2).reshape(B * N, H * D)
    gidx = idx + (torch.arange(B, device=idx.device) * N).view(B, 1, 1)  # broadcasts Bi == 1
    out = flat.index_select(0, gidx.reshape(-1)).view(B, R, K, H, D)
    return out.transpose(2, 3)


def _fold_bias(bias: Tensor | None, shape: tuple[int, ...], K: int, M: int) -> Tensor | None:
    """Broadcast ``bias`` to ``shape[:-1] + (K + M,)`` (zeros on extras when it covers K only)."""
    if bias is None:
        return None
    last = bias.shape[-1]
    try:
        if last == K + M:
            return bias.expand(*shape[:-1], K + M)
        if M and last == K:
            b = bias.expand(*shape[:-1], K)
            return torch.cat([b, b.new_zeros(*shape[:-1], M)], -1)
        if last == 1:
            return bias.expand(*shape[:-1], K + M)
    except RuntimeError as e:
        raise ValueError(f"bias {tuple(bias.shape)} does not broadcast to {shape}") from e
    raise ValueError(f"bias last dim {last} must be K={K} or K+M={K + M} (logits {shape})")


# --------------------------------------------------------------------------------------------
# dense kernels on folded tensors: q (Bf, H, Lq, D), k (Bf, H, Lk, D), mask (Bf, 1, 1|Lq, Lk)


def _softmax_weights(
    q: Tensor, k: Tensor, scale: float, bias: Tensor | None, mask: Tensor | None
) -> Tensor:
    logits = (q @ k.transpose(-1, -2)) * scale
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    w = logits.softmax(-1)
    if mask is not None:  # rows without any valid key: zero weights instead of NaN
        w = w.masked_fill(~mask, 0.0)
    return w


def _linear_weights(
    q: Tensor,
    k: Tensor,
    scale: float | None,
    mask: Tensor | None,
    fmap: str,
    norm: str,
    rope: Callable[[Tensor], Tensor] | None,
) -> Tensor:
    """Explicit (qk-first) linear-attention weights ``(Bf, H, Lq, Lk)``; the oracle for
    :func:`_linear_kv_first`."""
    fq, fk = feature_map(q, fmap), feature_map(k, fmap)
    m = None if mask is None else mask.to(fq.dtype)
    n = fk.new_full((), fk.shape[-2]) if m is None else m.sum(-1, keepdim=True).clamp(min=1)
    if norm == "rala":
        fk = _rala_reweight(fq, fk, scale, m)
    sim = fq @ fk.transpose(-1, -2)
    if m is not None:
        sim = sim * m
    if norm in ("positive", "rala"):
        den = sim.sum(-1, keepdim=True)
        if rope is not None:
            sim = rope(fq) @ rope(fk).transpose(-1, -2)
            if m is not None:
                sim = sim * m
        return sim / den.clamp_min(1e-6)
    # injective (InLine): rows sum to 1, entries may be negative
    s = 1.0 / n if scale is None else scale
    cen = sim - sim.sum(-1, keepdim=True) / n
    w = cen * s + 1.0 / n
    return w if m is None else w * m


def _rala_reweight(fq: Tensor, fk: Tensor, scale: float | None, m: Tensor | None) -> Tensor:
    """RALA key reweighting ``alpha_j = n * softmax_j(mean_i phi(q_i) . phi(k_j) * scale)``."""
    s = fq.shape[-1] ** -0.5 if scale is None else scale
    qm = fq.mean(-2, keepdim=True)  # (Bf, H, 1, D)
    logit = (qm @ fk.transpose(-1, -2)) * s  # (Bf, H, 1, Lk)
    if m is not None:
        mk = m.amax(-2, keepdim=True) > 0  # key valid for any query
        logit = logit.masked_fill(~mk, float("-inf"))
        n = mk.sum(-1, keepdim=True).to(fq.dtype)
    else:
        n = fk.new_full((), fk.shape[-2])
    alpha = logit.softmax(-1) * n
    return fk * alpha.transpose(-1, -2)


def _linear_kv_first(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: float | None,
    fmap: str,
    norm: str,
    rope: Callable[[Tensor], Tensor] | None,
) -> Tensor:
    """Global linear attention in O(N D^2): ``phi(q) (phi(k)^T v)`` (no mask)."""
    fq, fk = feature_map(q, fmap), feature_map(k, fmap)
    n = fk.shape[-2]
    if norm == "rala":
        fk = _rala_reweight(fq, fk, scale, None)
    ksum = fk.sum(-2, keepdim=True)  # (Bf, H, 1, D)
    if norm in ("positive", "rala"):
        den = (fq * ksum).sum(-1, keepdim=True)
        nq, nk = (rope(fq), rope(fk)) if rope is not None else (fq, fk)
        kv = nk.transpose(-1, -2) @ v  # (Bf, H, D, Dv)
        return (nq @ kv) / den.clamp_min(1e-6)
    s = 1.0 / n if scale is None else scale
    kv = fk.transpose(-1, -2) @ v
    vsum = v.sum(-2, keepdim=True)
    centred = fq @ kv - (fq * ksum).sum(-1, keepdim=True) * vsum / n
    return centred * s + vsum / n


# --------------------------------------------------------------------------------------------
# the public functional


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    nbr: Neighborhood | None = None,
    *,
    bias: Tensor | None = None,
    scale: float | None = None,
    kernel: Kernel = "softmax",
    extra_k: Tensor | None = None,
    extra_v: Tensor | None = None,
    pos_logits: Tensor | None = None,
    pos_gate: Tensor | None = None,
    feature_map: str = "elu1",
    linear_norm: Literal["positive", "injective", "rala"] = "positive",
    rope: Callable[[Tensor], Tensor] | None = None,
    l1_axis: Literal["query", "group"] = "query",
    dropout_p: float = 0.0,
    backend: BackendName = "auto",
    chunk: int | None = None,
    return_attn: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Neighbourhood attention on head-split tensors (see the module docstring for shapes).

    Args:
        q: ``(B, H, Nq, D)`` queries.
        k: ``(B, H, Nk, D)`` keys.
        v: ``(B, H, Nk, Dv)`` values.
        nbr: the neighbourhood; ``None`` is global attention.
        bias: additive logits, broadcastable to the mode's logit shape (last dim ``K`` or
            ``K + M``). Softmax and offset kernels only.
        scale: logit scale. Default ``D ** -0.5`` (softmax), ``1.0`` (offset, as PCT); for
            ``linear_norm="injective"`` the default ``1/N`` matches InLine; for ``"rala"`` it is the
            routing temperature ``D ** -0.5``; unused by ``"positive"``.
        kernel: ``"softmax"``; ``"linear"`` (``phi(q)^T sum_j phi(k_j) v_j^T`` normalised per
            ``linear_norm``); ``"offset"`` (PCT/RISurConv double normalisation, explicit path:
            ``A = softmax_j(q_i.k_j*scale + bias)``, ``A~ = A / (1e-9 + sum over l1_axis)``,
            ``out_j = sum_i A~_ij v_i``; self-attention only, ``Nq == Nk`` / ``q_index=None``).
        extra_k, extra_v: ``(B, H, M, D)`` / ``(B, H, M, Dv)`` global tokens appended to every
            neighbourhood under the same softmax (TransNeXt pooled tokens, NATTEN
            ``additional_keys``). Softmax kernel only.
        pos_logits, pos_gate: ConViT gated positional softmax. ``pos_logits`` has the logit
            shape; ``pos_gate`` (``(H,)`` in ``[0, 1]``, e.g. ``sigmoid(lambda)``) mixes
            ``(1 - g) softmax(qk*s + bias) + g softmax(pos_logits)`` (two SDPA calls).
        feature_map: ``"elu1"``, ``"relu"`` or ``"identity"`` (linear kernel).
        linear_norm: ``"positive"`` (divide by ``phi(q_i).sum_j phi(k_j)``), ``"injective"``
            (InLine: ``w_ij = s (phi_i.phi_j - mean_l phi_i.phi_l) + 1/N``, rows sum to 1), or
            ``"rala"`` (RALA key reweighting ``alpha_j = N softmax_j(mean_i phi(q_i).phi(k_j) s)``,
            then positive normalisation).
        rope: optional function applied to ``phi(q)``/``phi(k)`` in the numerator only (RALA).
        l1_axis: offset kernel: ``"query"`` normalises each key column over the queries of its own
            group (PCT; groups independent); ``"group"`` over the groups of the batch element at
            the same (query slot, key slot), as RISurConv's ``SA_Layer_2d`` (couples groups).
        dropout_p: attention dropout (on the weights; per branch with ``pos_gate``).
        backend: ``"auto"`` (SDPA for softmax without ``return_attn``, else explicit), ``"sdpa"``
            (error if the request needs the explicit path) or ``"explicit"``.
        chunk: queries (query mode) or groups (group mode) per SDPA call; default keeps the
            gathered K/V under :data:`CHUNK_ELEMENTS` elements.
        return_attn: also return the weights, shaped like the logits (``K + M`` last).

    Returns:
        ``(B, H, Nq, Dv)`` (or ``(B, H, G, Kq, Dv)`` for group mode with ``reduce="none"``), and
        the weights when ``return_attn``. Padded (``valid=False``) slots get exactly zero weight;
        a query with no valid key and no extra token gets a zero output.
    """
    nbr = _GLOBAL if nbr is None else nbr
    _check_qkv(q, k, v)
    if kernel not in ("softmax", "linear", "offset"):
        raise ValueError(f"kernel must be 'softmax', 'linear' or 'offset', got {kernel!r}")
    if backend not in ("auto", "sdpa", "explicit"):
        raise ValueError(f"backend must be 'auto', 'sdpa' or 'explicit', got {backend!r}")
    if linear_norm not in ("positive", "injective", "rala"):
        raise ValueError(f"linear_norm must be 'positive', 'injective' or 'rala': {linear_norm!r}")
    if l1_axis not in ("query", "group"):
        raise ValueError(f"l1_axis must be 'query' or 'group', got {l1_axis!r}")
    if (extra_k is None) != (extra_v is None):
        raise ValueError("extra_k and extra_v must be given together")
    M = 0
    if extra_k is not None:
        if kernel != "softmax":
            raise ValueError("extra tokens are supported with kernel='softmax' only")
        if (
            extra_k.dim() != 4
            or extra_k.shape[:2] != q.shape[:2]
            or extra_v.shape[:3] != (*extra_k.shape[:3],)
        ):
            raise ValueError(
                f"extra_k/extra_v must be (B, H, M, D)/(B, H, M, Dv), got "
                f"{tuple(extra_k.shape)}, {tuple(extra_v.shape)}"
            )
        M = extra_k.shape[2]
    if nbr.num_extra and nbr.num_extra != M:
        raise ValueError(f"the neighbourhood expects {nbr.num_extra} extra tokens, got {M}")
    if (pos_logits is None) != (pos_gate is None):
        raise ValueError("pos_logits and pos_gate must be given together")
    if pos_logits is not None and (kernel != "softmax" or M):
        raise ValueError("the gated positional softmax needs kernel='softmax' and no extras")
    if kernel == "linear" and bias is not None:
        raise ValueError("kernel='linear' takes no additive bias")
    explicit_needed = return_attn or kernel != "softmax"
    if backend == "sdpa" and explicit_needed:
        raise ValueError(
            "backend='sdpa' cannot serve this call (return_attn or a non-softmax kernel); "
            "use backend='auto' or 'explicit'"
        )
    use_sdpa = not explicit_needed and backend != "explicit"
    D = q.shape[-1]
    if scale is None:
        if kernel == "softmax":
            scale = D**-0.5
        elif kernel == "offset":
            scale = 1.0
    opts = _Opts(
        scale=scale,
        kernel=kernel,
        fmap=feature_map,
        norm=linear_norm,
        rope=rope,
        l1_axis=l1_axis,
        dropout_p=dropout_p,
        use_sdpa=use_sdpa,
        chunk=chunk,
        return_attn=return_attn,
    )
    if pos_logits is None:
        return _run(q, k, v, nbr, bias, extra_k, extra_v, opts)
    gate = pos_gate.to(q.dtype).reshape(-1)
    if gate.shape[0] not in (1, q.shape[1]):
        raise ValueError(f"pos_gate must have 1 or H={q.shape[1]} entries, got {gate.shape[0]}")
    r1 = _run(q, k, v, nbr, bias, None, None, opts)
    zq, zk = torch.zeros_like(q[..., :1]), torch.zeros_like(k[..., :1])
    r2 = _run(zq, zk, v, nbr, pos_logits, None, None, opts)

    def mix(a: Tensor, b: Tensor) -> Tensor:
        g = gate.view(1, -1, *([1] * (a.dim() - 2)))
        return (1 - g) * a + g * b

    if return_attn:
        (o1, a1), (o2, a2) = r1, r2
        return mix(o1, o2), mix(a1, a2)
    return mix(r1, r2)


@dataclass(slots=True)
class _Opts:
    """Resolved per-call options shared by the mode implementations."""

    scale: float | None
    kernel: str
    fmap: str
    norm: str
    rope: Callable[[Tensor], Tensor] | None
    l1_axis: str
    dropout_p: float
    use_sdpa: bool
    chunk: int | None
    return_attn: bool


def _run(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    nbr: Neighborhood,
    bias: Tensor | None,
    ek: Tensor | None,
    ev: Tensor | None,
    o: _Opts,
) -> _Result:
    B, H, Nq, _D = q.shape
    Nk, Dv = k.shape[2], v.shape[-1]
    if nbr.mode == "global":
        return _global(q, k, v, bias, ek, ev, o)
    if nbr.mode == "query":
        if o.kernel == "offset":
            raise ValueError("kernel='offset' needs global or group mode (self-attention)")
        idx = _check_index(nbr.index.to(q.device), "index", B, Nk, Nq)
        valid = None if nbr.valid is None else nbr.valid.to(q.device)
        return _query(q, k, v, idx, valid, bias, ek, ev, o)
    idx = _check_index(nbr.index.to(q.device), "index", B, Nk, None)
    if nbr.q_index is not None:
        if o.kernel == "offset":
            raise ValueError("kernel='offset' is self-attention: q_index must be None")
        qidx = _check_index(nbr.q_index.to(q.device), "q_index", B, Nq, idx.shape[1])
    else:
        if Nq != Nk:
            raise ValueError(
                f"group mode without q_index needs Nq == Nk (got {Nq} vs {Nk}); pass q_index"
            )
        qidx = idx
    valid = None if nbr.valid is None else nbr.valid.to(q.device)
    out = _group(q, k, v, idx, qidx, valid, bias, ek, ev, o)
    if nbr.reduce == "none":
        return out
    res, attn = out if o.return_attn else (out, None)
    G, Kq = qidx.shape[1:]
    # scatter group outputs (B, H, G, Kq, Dv) back to tokens, averaging repeats
    src = res.permute(0, 2, 3, 1, 4).reshape(B, G * Kq, H * Dv)
    qi = qidx.expand(B, -1, -1).reshape(B, G * Kq)
    acc = torch.zeros(B, Nq, H * Dv, dtype=src.dtype, device=src.device).scatter_add(
        1, qi[..., None].expand(-1, -1, H * Dv), src
    )
    cnt = torch.zeros(B, Nq, 1, dtype=src.dtype, device=src.device).scatter_add(
        1, qi[..., None], torch.ones_like(src[..., :1])
    )
    tok = (acc / cnt.clamp(min=1)).view(B, Nq, H, Dv).transpose(1, 2)
    return (tok, attn) if o.return_attn else tok


def _global(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor | None,
    ek: Tensor | None,
    ev: Tensor | None,
    o: _Opts,
) -> _Result:
    B, H, Nq, _D = q.shape
    Nk = k.shape[2]
    M = 0 if ek is None else ek.shape[2]
    if ek is not None:
        k, v = torch.cat([k, ek], 2), torch.cat([v, ev], 2)
    b = _fold_bias(bias, (B, H, Nq, Nk), Nk, M)
    if o.kernel == "offset" and Nq != Nk:
        raise ValueError(f"kernel='offset' is self-attention: needs Nq == Nk, got {Nq}, {Nk}")
    if o.use_sdpa:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=b, dropout_p=o.dropout_p, scale=o.scale
        )
    if o.kernel == "linear" and not o.return_attn:
        return _linear_kv_first(q, k, v, o.scale, o.fmap, o.norm, o.rope)
    if o.kernel == "offset" and b is None and not o.return_attn:  # fast kernel, one group
        scale = 1.0 if o.scale is None else o.scale
        out = offset_attention(q[:, :, None], k[:, :, None], v[:, :, None], l1_axis=o.l1_axis,
                               scale=scale)  # fmt: skip
        return out[:, :, 0]
    w = _weights(q, k, b, None, o)
    if o.kernel == "offset":  # global = one group: "group" normalises over that single group
        w = w / (1e-9 + (w.sum(-2, keepdim=True) if o.l1_axis == "query" else w))
        out = w.transpose(-1, -2) @ v
    else:
        out = _drop(w, o) @ v
    return (out, w) if o.return_attn else out


def _weights(q: Tensor, k: Tensor, bias: Tensor | None, mask: Tensor | None, o: _Opts) -> Tensor:
    if o.kernel == "linear":
        return _linear_weights(q, k, o.scale, mask, o.fmap, o.norm, o.rope)
    return _softmax_weights(q, k, o.scale, bias, mask)


def _drop(w: Tensor, o: _Opts) -> Tensor:
    return F.dropout(w, o.dropout_p) if o.dropout_p > 0 else w


def _chunk_size(rows: int, per_row: int, o: _Opts) -> int:
    if o.chunk is not None:
        if o.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {o.chunk}")
        return o.chunk
    return max(1, min(rows, CHUNK_ELEMENTS // max(per_row, 1)))


def _with_extra(kg: Tensor, ek: Tensor | None, R: int) -> Tensor:
    """Append extras ``(B, H, M, D)`` to gathered ``(B, R, H, K, D)``."""
    if ek is None:
        return kg
    B, H, M, D = ek.shape
    return torch.cat([kg, ek[:, None].expand(B, R, H, M, D)], 3)


def _mask(
    valid: Tensor | None, B: int, R: int, K: int, M: int, device: torch.device
) -> Tensor | None:
    """``(B, R, 1, 1, K + M)`` bool mask or ``None``."""
    if valid is None:
        return None
    m = valid.expand(B, R, K)
    if M:
        m = torch.cat([m, torch.ones(B, R, M, dtype=torch.bool, device=device)], -1)
    return m[:, :, None, None, :]


def _query(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    idx: Tensor,
    valid: Tensor | None,
    bias: Tensor | None,
    ek: Tensor | None,
    ev: Tensor | None,
    o: _Opts,
) -> _Result:
    B, H, Nq, D = q.shape
    Dv, K = v.shape[-1], idx.shape[-1]
    M = 0 if ek is None else ek.shape[2]
    b = _fold_bias(bias, (B, H, Nq, K), K, M)
    step = _chunk_size(Nq, B * H * (K + M) * (D + Dv), o)
    outs, attns = [], []
    for s in range(0, Nq, step):
        e = min(Nq, s + step)
        R = e - s
        ii = idx[:, s:e]
        kg = _with_extra(_gather(k, ii), ek, R)  # (B, R, H, K+M, D)
        vg = _with_extra(_gather(v, ii), ev, R)
        qf = q[:, :, s:e].transpose(1, 2).reshape(B * R, H, 1, D)
        kf, vf = kg.reshape(B * R, H, K + M, D), vg.reshape(B * R, H, K + M, Dv)
        bf = None if b is None else b[:, :, s:e].transpose(1, 2).reshape(B * R, H, 1, K + M)
        mk = _mask(None if valid is None else valid[:, s:e], B, R, K, M, q.device)
        mf = None if mk is None else mk.reshape(B * R, 1, 1, K + M)
        if o.use_sdpa:
            out = _sdpa_masked(qf, kf, vf, bf, mf, o)
        else:
            w = _weights(qf, kf, bf, mf, o)
            out = _drop(w, o) @ vf
            if o.return_attn:
                attns.append(w.view(B, R, H, K + M).transpose(1, 2))
        outs.append(out.view(B, R, H, Dv).transpose(1, 2))
    out = torch.cat(outs, 2)
    return (out, torch.cat(attns, 2)) if o.return_attn else out


def _sdpa_masked(
    qf: Tensor, kf: Tensor, vf: Tensor, bf: Tensor | None, mf: Tensor | None, o: _Opts
) -> Tensor:
    """SDPA with an additive bias and a bool validity mask; all-masked rows give zeros."""
    if mf is None:
        return F.scaled_dot_product_attention(
            qf, kf, vf, attn_mask=bf, dropout_p=o.dropout_p, scale=o.scale
        )
    dead = ~mf.any(-1, keepdim=True)  # (Bf, 1, 1, 1)
    keep = mf | dead
    neg = torch.zeros(keep.shape, dtype=qf.dtype, device=qf.device).masked_fill(
        ~keep, float("-inf")
    )
    am = neg if bf is None else bf + neg
    out = F.scaled_dot_product_attention(
        qf, kf, vf, attn_mask=am, dropout_p=o.dropout_p, scale=o.scale
    )
    return out.masked_fill(dead, 0.0)


def _group(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    idx: Tensor,
    qidx: Tensor,
    valid: Tensor | None,
    bias: Tensor | None,
    ek: Tensor | None,
    ev: Tensor | None,
    o: _Opts,
) -> _Result:
    B, H, _Nq, D = q.shape
    Dv = v.shape[-1]
    G, Kk = idx.shape[1:]
    Kq = qidx.shape[-1]
    M = 0 if ek is None else ek.shape[2]
    b = _fold_bias(bias, (B, H, G, Kq, Kk), Kk, M)
    if o.kernel == "offset" and o.l1_axis == "group":
        step = G  # the group-axis normalisation couples all groups
    else:
        step = _chunk_size(G, B * H * (Kk + M + Kq) * (D + Dv), o)
    outs, attns = [], []
    for s in range(0, G, step):
        e = min(G, s + step)
        R = e - s
        kg = _with_extra(_gather(k, idx[:, s:e]), ek, R)  # (B, R, H, Kk+M, D)
        vg = _with_extra(_gather(v, idx[:, s:e]), ev, R)
        qg = _gather(q, qidx[:, s:e])  # (B, R, H, Kq, D)
        qf, kf = qg.reshape(B * R, H, Kq, D), kg.reshape(B * R, H, Kk + M, D)
        vf = vg.reshape(B * R, H, Kk + M, Dv)
        bf = None
        if b is not None:
            bf = b[:, :, s:e].transpose(1, 2).reshape(B * R, H, Kq, Kk + M)
        mk = _mask(None if valid is None else valid[:, s:e], B, R, Kk, M, q.device)
        mf = None if mk is None else mk.reshape(B * R, 1, 1, Kk + M)
        if o.use_sdpa:
            out = _sdpa_masked(qf, kf, vf, bf, mf, o)
        elif o.kernel == "offset" and bf is None and mf is None and not o.return_attn:
            # fast kernel (pointlib.attention.offset): groups on axis -3 of (B, H, R, K, D)
            og = offset_attention(
                qg.transpose(1, 2), kg.transpose(1, 2), vg.transpose(1, 2),
                l1_axis=o.l1_axis, scale=1.0 if o.scale is None else o.scale,
            )  # fmt: skip
            out = og.transpose(1, 2).reshape(B * R, H, Kq, Dv)
        else:
            w = _weights(qf, kf, bf, mf, o)
            if o.kernel == "offset":
                w5 = w.view(B, R, H, Kq, Kk)
                if o.l1_axis == "group":
                    w5 = w5 / (1e-9 + w5.sum(1, keepdim=True))
                else:
                    w5 = w5 / (1e-9 + w5.sum(-2, keepdim=True))
                w = w5.reshape(B * R, H, Kq, Kk)
                out = w.transpose(-1, -2) @ vf
            else:
                out = _drop(w, o) @ vf
            if o.return_attn:
                attns.append(w.view(B, R, H, Kq, Kk + M).transpose(1, 2))
        outs.append(out.view(B, R, H, Kq, Dv).transpose(1, 2))
    out = torch.cat(outs, 2)  # (B, H, G, Kq, Dv)
    return (out, torch.cat(attns, 2)) if o.return_attn else out


# --------------------------------------------------------------------------------------------
# channel tokens (DaViT)


def channel_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None) -> Tensor:
    """DaViT channel-group attention: channels are the tokens, positions the features.

    ``A = softmax_c'(sum_n k[n, c] v[n, c'] * scale)`` (``(B, H, D, D)`` per head/group), and
    ``out[n, c] = sum_c' A[c, c'] q[n, c']``; computed as one SDPA call on the transposed
    tensors. Index-free and permutation-equivariant over positions.

    Args:
        q, k, v: ``(B, H, N, D)`` head-split (``H`` = channel groups).
        scale: default ``D ** -0.5`` (DaViT).

    Returns:
        ``(B, H, N, D)``.
    """
    _check_qkv(q, k, v)
    if v.shape[-1] != q.shape[-1]:
        raise ValueError("channel attention needs equal q/k/v head widths")
    s = q.shape[-1] ** -0.5 if scale is None else scale
    out = F.scaled_dot_product_attention(
        k.transpose(-1, -2), v.transpose(-1, -2), q.transpose(-1, -2), scale=s
    )
    return out.transpose(-1, -2)
