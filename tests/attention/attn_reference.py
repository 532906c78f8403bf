"""Naive per-query loop references for the attention core (float64, differentiable, slow)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pointlib.attention import Neighborhood


def _softmax_row(logits: list[Tensor]) -> list[Tensor]:
    t = torch.stack(logits)
    return list(t.softmax(0))


def _key_lists(nbr: Neighborhood | None, b: int, Nq: int, Nk: int):
    """Per query i: list of (kv token j, slot position p, valid)."""
    if nbr is None or nbr.mode == "global":
        return {i: [(j, j, True) for j in range(Nk)] for i in range(Nq)}
    ib = min(b, nbr.index.shape[0] - 1)
    out = {}
    for i in range(Nq):
        row = []
        for p in range(nbr.index.shape[-1]):
            ok = True if nbr.valid is None else bool(nbr.valid[ib, i, p])
            row.append((int(nbr.index[ib, i, p]), p, ok))
        out[i] = row
    return out


def ref_softmax(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    nbr: Neighborhood | None = None,
    *,
    bias: Tensor | None = None,
    scale: float | None = None,
    extra_k: Tensor | None = None,
    extra_v: Tensor | None = None,
) -> Tensor:
    """Global or query mode, one query at a time. ``bias`` is given at the full logit shape
    ``(B, H, Nq, K[+M])`` (already broadcast)."""
    B, H, Nq, D = q.shape
    Nk = k.shape[2]
    M = 0 if extra_k is None else extra_k.shape[2]
    s = D**-0.5 if scale is None else scale
    out = torch.zeros(B, H, Nq, v.shape[-1], dtype=q.dtype)
    rows = []
    for b in range(B):
        keys = _key_lists(nbr, b, Nq, Nk)
        for h in range(H):
            for i in range(Nq):
                logits, vals = [], []
                K = len(keys[i])
                for j, p, ok in keys[i]:
                    if not ok:
                        continue
                    lg = q[b, h, i] @ k[b, h, j] * s
                    if bias is not None:
                        lg = lg + bias[b, h, i, p]
                    logits.append(lg)
                    vals.append(v[b, h, j])
                for m in range(M):
                    lg = q[b, h, i] @ extra_k[b, h, m] * s
                    if bias is not None and bias.shape[-1] == K + M:
                        lg = lg + bias[b, h, i, K + m]
                    logits.append(lg)
                    vals.append(extra_v[b, h, m])
                if not logits:
                    rows.append(((b, h, i), torch.zeros_like(v[0, 0, 0])))
                    continue
                w = _softmax_row(logits)
                rows.append(((b, h, i), sum(wi * vi for wi, vi in zip(w, vals))))
    return torch.stack([r for _, r in rows]).view(B, H, Nq, -1) + out


def ref_group(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    nbr: Neighborhood,
    *,
    bias: Tensor | None = None,
    scale: float | None = None,
    extra_k: Tensor | None = None,
    extra_v: Tensor | None = None,
) -> Tensor:
    """Group mode: full attention inside each group, outputs averaged per query token.
    ``bias`` at ``(B, H, G, Kq, Kkv[+M])``."""
    B, H, Nq, D = q.shape
    s = D**-0.5 if scale is None else scale
    M = 0 if extra_k is None else extra_k.shape[2]
    qidx = nbr.q_index if nbr.q_index is not None else nbr.index
    G, Kk = nbr.index.shape[1:]
    Kq = qidx.shape[-1]
    acc = [[[[] for _ in range(Nq)] for _ in range(H)] for _ in range(B)]
    for b in range(B):
        ib = min(b, nbr.index.shape[0] - 1)
        for h in range(H):
            for g in range(G):
                for a in range(Kq):
                    i = int(qidx[ib, g, a])
                    logits, vals = [], []
                    for p in range(Kk):
                        if nbr.valid is not None and not bool(nbr.valid[ib, g, p]):
                            continue
                        j = int(nbr.index[ib, g, p])
                        lg = q[b, h, i] @ k[b, h, j] * s
                        if bias is not None:
                            lg = lg + bias[b, h, g, a, p]
                        logits.append(lg)
                        vals.append(v[b, h, j])
                    for m in range(M):
                        lg = q[b, h, i] @ extra_k[b, h, m] * s
                        if bias is not None and bias.shape[-1] == Kk + M:
                            lg = lg + bias[b, h, g, a, Kk + m]
                        logits.append(lg)
                        vals.append(extra_v[b, h, m])
                    w = _softmax_row(logits)
                    acc[b][h][i].append(sum(wi * vi for wi, vi in zip(w, vals)))
    Dv = v.shape[-1]
    zero = torch.zeros(Dv, dtype=q.dtype)
    flat = [
        (sum(acc[b][h][i]) / len(acc[b][h][i])) if acc[b][h][i] else zero
        for b in range(B)
        for h in range(H)
        for i in range(Nq)
    ]
    return torch.stack(flat).view(B, H, Nq, Dv)


def ref_offset(
    q: Tensor, k: Tensor, v: Tensor, groups: list[list[int]], l1_axis: str, scale: float = 1.0
) -> Tensor:
    """PCT offset attention over equal-size token groups of one batch: ``groups[g]`` lists the
    token ids of group g. ``A = softmax_j(q_i.k_j)``; normalise over queries i (``"query"``) or
    over groups g (``"group"``); ``out_j = sum_i A~_ij v_i``."""
    B, H, N, _ = q.shape
    out = torch.zeros(B, H, N, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            A = []
            for toks in groups:
                Ag = torch.stack(
                    [
                        torch.stack([q[b, h, i] @ k[b, h, j] * scale for j in toks]).softmax(0)
                        for i in toks
                    ]
                )
                A.append(Ag)
            A = torch.stack(A)  # (G, K, K)
            if l1_axis == "query":
                A = A / (1e-9 + A.sum(1, keepdim=True))
            else:
                A = A / (1e-9 + A.sum(0, keepdim=True))
            rows = {}
            for g, toks in enumerate(groups):
                for jj, j in enumerate(toks):
                    rows[j] = sum(A[g, ii, jj] * v[b, h, i] for ii, i in enumerate(toks))
            out[b, h] = torch.stack([rows[j] for j in range(N)])
    return out


def ref_linear(q: Tensor, k: Tensor, v: Tensor, norm: str, fmap=F.elu) -> Tensor:
    """Global linear attention, one query at a time (feature map ELU+1)."""
    B, H, N, D = q.shape
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    out = []
    for b in range(B):
        for h in range(H):
            if norm == "rala":
                qm = fq[b, h].mean(0)
                alpha = torch.stack([qm @ fk[b, h, j] * D**-0.5 for j in range(N)]).softmax(0) * N
                kk = fk[b, h] * alpha[:, None]
            else:
                kk = fk[b, h]
            for i in range(N):
                sims = torch.stack([fq[b, h, i] @ kk[j] for j in range(N)])
                if norm in ("positive", "rala"):
                    w = sims / sims.sum()
                else:  # injective, InLine scale 1/N
                    w = (sims - sims.mean()) / N + 1.0 / N
                out.append((w[:, None] * v[b, h]).sum(0))
    return torch.stack(out).view(B, H, N, -1)


def natten_window_start(index: int, length: int, kernel: int, dilation: int) -> int:
    """NATTEN's (pre-0.20, documented) window start rule along one axis, written as a loop."""
    ns = kernel // 2
    if dilation <= 1:
        return max(index - ns, 0) + (index + ns >= length) * (length - index - ns - 1)
    ni = index - ns * dilation
    if ni < 0:
        return index % dilation
    if index + ns * dilation >= length:
        imodd = index % dilation
        a = (length // dilation) * dilation
        rem = length - a
        if imodd < rem:
            return length - rem + imodd - 2 * ns * dilation
        return a + imodd - kernel * dilation
    return ni
