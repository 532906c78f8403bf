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

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pointlib.attention._index import _check_index, _check_qkv, _fold_bias, _gather
from pointlib.attention.channel import channel_attention
from pointlib.attention.linear import feature_map, linear_kv_first, linear_weights
from pointlib.attention.neighborhood import Neighborhood
from pointlib.attention.offset import offset_attention
from pointlib.attention.spec import AttentionSpec, ResolvedSpec

__all__ = ["AttentionSpec", "attention", "channel_attention", "feature_map"]

_GLOBAL = Neighborhood()
_Opts = ResolvedSpec  # the resolved per-call options the mode implementations read
_Result = Tensor | tuple[Tensor, Tensor]
#: elements of gathered K+V per SDPA call (16 MiB in float32: cache-friendly, bounded memory)
CHUNK_ELEMENTS = 1 << 22


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


# --------------------------------------------------------------------------------------------
# the public functional


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    nbr: Neighborhood | None = None,
    spec: AttentionSpec | None = None,
    *,
    bias: Tensor | None = None,
    extra_k: Tensor | None = None,
    extra_v: Tensor | None = None,
    pos_logits: Tensor | None = None,
    pos_gate: Tensor | None = None,
    return_attn: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, Tensor]:
    """Neighbourhood attention on head-split tensors (see the module docstring for shapes).

    Args:
        q: ``(B, H, Nq, D)`` queries.
        k: ``(B, H, Nk, D)`` keys.
        v: ``(B, H, Nk, Dv)`` values.
        nbr: the neighbourhood; ``None`` is global attention.
        spec: the kernel and implementation choices (:class:`AttentionSpec`; default: softmax,
            ``backend="auto"``).
        bias: additive logits, broadcastable to the mode's logit shape (last dim ``K`` or
            ``K + M``). Softmax and offset kernels only.
        extra_k, extra_v: ``(B, H, M, D)`` / ``(B, H, M, Dv)`` global tokens appended to every
            neighbourhood under the same softmax (TransNeXt pooled tokens, NATTEN
            ``additional_keys``). Softmax kernel only.
        pos_logits, pos_gate: ConViT gated positional softmax. ``pos_logits`` has the logit
            shape; ``pos_gate`` (``(H,)`` in ``[0, 1]``, e.g. ``sigmoid(lambda)``) mixes
            ``(1 - g) softmax(qk*s + bias) + g softmax(pos_logits)`` (two SDPA calls).
        return_attn: also return the weights, shaped like the logits (``K + M`` last).
        **options: fields of :class:`AttentionSpec` (``kernel=``, ``scale=``, ``feature_map=``,
            ``linear_norm=``, ``rope=``, ``l1_axis=``, ``dropout_p=``, ``backend=``,
            ``chunk=``), applied on top of ``spec``; ``attention(q, k, v, kernel="linear")``
            equals ``attention(q, k, v, spec=AttentionSpec(kernel="linear"))``.

    Returns:
        ``(B, H, Nq, Dv)`` (or ``(B, H, G, Kq, Dv)`` for group mode with ``reduce="none"``), and
        the weights when ``return_attn``. Padded (``valid=False``) slots get exactly zero weight;
        a query with no valid key and no extra token gets a zero output.
    """
    spec = _spec_of(spec, options)
    nbr = _GLOBAL if nbr is None else nbr
    _check_qkv(q, k, v)
    M = _check_extras(q, extra_k, extra_v, nbr, spec)
    if (pos_logits is None) != (pos_gate is None):
        raise ValueError("pos_logits and pos_gate must be given together")
    if pos_logits is not None and (spec.kernel != "softmax" or M):
        raise ValueError("the gated positional softmax needs kernel='softmax' and no extras")
    if spec.kernel == "linear" and bias is not None:
        raise ValueError("kernel='linear' takes no additive bias")
    opts = spec.resolve(q.shape[-1], return_attn)
    if pos_logits is None:
        return _run(q, k, v, nbr, bias, extra_k, extra_v, opts)
    return _gated(q, k, v, nbr, bias, (pos_logits, pos_gate), opts)


def _spec_of(spec: AttentionSpec | None, options: dict[str, Any]) -> AttentionSpec:
    """``spec`` (default :class:`AttentionSpec`) with the keyword ``options`` applied."""
    unknown = sorted(set(options) - set(AttentionSpec.fields()))
    if unknown:
        raise TypeError(
            f"attention() got unexpected keyword argument(s) {', '.join(unknown)}; options are "
            f"the AttentionSpec fields {', '.join(AttentionSpec.fields())}"
        )
    if spec is None:
        return AttentionSpec(**options)
    if not isinstance(spec, AttentionSpec):
        raise TypeError(f"spec must be an AttentionSpec, got {type(spec).__name__}")
    return spec.replace(**options) if options else spec


def _check_extras(
    q: Tensor, ek: Tensor | None, ev: Tensor | None, nbr: Neighborhood, spec: AttentionSpec
) -> int:
    """Validate the extra tokens against ``q``, the neighbourhood and the kernel; return M."""
    if (ek is None) != (ev is None):
        raise ValueError("extra_k and extra_v must be given together")
    M = 0
    if ek is not None:
        if spec.kernel != "softmax":
            raise ValueError("extra tokens are supported with kernel='softmax' only")
        if ek.dim() != 4 or ek.shape[:2] != q.shape[:2] or ev.shape[:3] != (*ek.shape[:3],):
            raise ValueError(
                f"extra_k/extra_v must be (B, H, M, D)/(B, H, M, Dv), got "
                f"{tuple(ek.shape)}, {tuple(ev.shape)}"
            )
        M = ek.shape[2]
    if nbr.num_extra and nbr.num_extra != M:
        raise ValueError(f"the neighbourhood expects {nbr.num_extra} extra tokens, got {M}")
    return M


def _gated(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    nbr: Neighborhood,
    bias: Tensor | None,
    positional: tuple[Tensor, Tensor],
    opts: _Opts,
) -> _Result:
    """ConViT's gated positional softmax: ``(1 - g) attn(q, k) + g softmax(pos_logits)``."""
    pos_logits, pos_gate = positional
    gate = pos_gate.to(q.dtype).reshape(-1)
    if gate.shape[0] not in (1, q.shape[1]):
        raise ValueError(f"pos_gate must have 1 or H={q.shape[1]} entries, got {gate.shape[0]}")
    r1 = _run(q, k, v, nbr, bias, None, None, opts)
    zq, zk = torch.zeros_like(q[..., :1]), torch.zeros_like(k[..., :1])
    r2 = _run(zq, zk, v, nbr, pos_logits, None, None, opts)

    def mix(a: Tensor, b: Tensor) -> Tensor:
        g = gate.view(1, -1, *([1] * (a.dim() - 2)))
        return (1 - g) * a + g * b

    if opts.return_attn:
        (o1, a1), (o2, a2) = r1, r2
        return mix(o1, o2), mix(a1, a2)
    return mix(r1, r2)


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
        return linear_kv_first(q, k, v, o.scale, o.fmap, o.norm, o.rope)
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
        return linear_weights(q, k, o.scale, mask, o.fmap, o.norm, o.rope)
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
