"""Throughput of the attention core per mode vs a naive gather + softmax implementation.

Usage::

    python benchmarks/bench_attention.py [--threads 1] [--repeat 7] [--device cpu] [--quick]
    python benchmarks/bench_attention.py --second-wave   # issue 17: outlook, SHViT, L2ViT rows

Prints a markdown table (median wall time per call, forward and forward+backward) that goes into
``benchmarks/RESULTS.md``. The naive baselines are what one writes without the core:
advanced-index gathering of K/V, explicit logits, ``softmax``, weighted sum (and ``q k^T`` first
for linear attention).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from pointlib.attention import attention, grid, knn_neighborhood, windows
from pointlib.attention.linear import clamped_linear_attention
from pointlib.attention.outlook import outlook_attention, outlook_windows


def _naive_query(q, k, v, idx, bias):
    B = q.shape[0]
    b = torch.arange(B)[:, None, None]
    kg = k.permute(0, 2, 1, 3)[b, idx]  # (B, N, K, H, D)
    vg = v.permute(0, 2, 1, 3)[b, idx]
    logits = torch.einsum("bhnd,bnkhd->bhnk", q, kg) * q.shape[-1] ** -0.5 + bias
    return torch.einsum("bhnk,bnkhd->bhnd", logits.softmax(-1), vg)


def _naive_group(q, k, v, idx):
    B, H, N, D = q.shape
    G, K = idx.shape[1:]
    b = torch.arange(B)[:, None, None]
    ii = idx.expand(B, G, K)
    qg, kg, vg = (t.permute(0, 2, 1, 3)[b, ii] for t in (q, k, v))  # (B, G, K, H, D)
    logits = torch.einsum("bgihd,bgjhd->bghij", qg, kg) * D**-0.5
    out = torch.einsum("bghij,bgjhd->bgihd", logits.softmax(-1), vg)
    res = torch.zeros(B, N, H, D, dtype=q.dtype)
    res[b, ii] = out
    return res.permute(0, 2, 1, 3)


def _naive_global(q, k, v):
    return ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1) @ v


def _naive_linear(q, k, v):
    fq, fk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    w = fq @ fk.transpose(-1, -2)
    return (w / w.sum(-1, keepdim=True)) @ v


def _naive_outlook_unfold(logits, v, h, w):
    """VOLO's own formulation: ``nn.Unfold`` of the value map, weights, ``nn.Fold``."""
    B, H, G, K, _ = logits.shape
    D = v.shape[-1]
    vm = v.transpose(2, 3).reshape(B, H * D, h, w)
    cols = torch.nn.functional.unfold(vm, 3, padding=1, stride=2)
    cols = cols.view(B, H, D, K, G).permute(0, 1, 4, 3, 2)
    y = (logits.softmax(-1) @ cols).permute(0, 1, 4, 3, 2).reshape(B, H * D * K, G)
    out = torch.nn.functional.fold(y, (h, w), 3, padding=1, stride=2)
    return out.view(B, H, D, h * w).transpose(2, 3)


def _naive_rings(logits, v):
    """Per-ring slot weights times the ring's own values (no index)."""
    B, H, S, K, _ = logits.shape
    return logits.softmax(-1) @ v.view(B, H, S, K, -1)


def _naive_clamped_linear(q, k, v, tau):
    fq, fk = q.relu(), k.relu()
    w = fq @ fk.transpose(-1, -2)
    return tau * (w @ v) / w.sum(-1, keepdim=True).clamp(min=100.0)


def _second_wave(B: int, H: int, D: int, s: int) -> list:
    """Issue 17 rows: outlook (image windows, point rings), SHViT single head, L2ViT linear."""
    rows = []
    hw = 56 // s  # VOLO stage 1 at 448 px / stride 8 (56x56), 3x3 windows, stride 2
    index, (oh, ow) = outlook_windows(hw, hw, 3, 2, 1)
    lo = torch.randn(B, H, oh * ow, 9, 9, requires_grad=True)
    vo = torch.randn(B, H, hw * hw, D, requires_grad=True)
    rows.append(
        (
            f"outlook (VOLO {hw}x{hw}, 3x3 stride 2; naive = unfold/fold)",
            lambda: outlook_attention(lo, vo, index, scale=D**-0.5),
            None,
            lambda: _naive_outlook_unfold(lo * D**-0.5, vo, hw, hw),
        )
    )
    S, K = 512 // s, 16  # RISurConv-like: 512 centres, rings of 16
    lr = torch.randn(B, H, S, K, K, requires_grad=True)
    vr = torch.randn(B, H, S * K, D, requires_grad=True)
    ring = torch.arange(S * K).view(1, S, K)  # the same groups through the general gather path
    rows.append(
        (
            f"outlook on point rings (S={S}, K={K}; explicit = indexed path; "
            "naive = per-ring matmul)",
            lambda: outlook_attention(lr, vr, None, return_groups=True),
            lambda: outlook_attention(lr, vr, ring, return_groups=True),
            lambda: _naive_rings(lr, vr),
        )
    )
    n = 196 // (2 if s > 1 else 1)  # SHViT-S1 stage 2 at 224 px (14x14), one head
    qs = torch.randn(B, 1, n, 16, requires_grad=True)
    ks = torch.randn(B, 1, n, 16, requires_grad=True)
    vs = torch.randn(B, 1, n, 48, requires_grad=True)
    rows.append(
        (
            f"SHViT single head (N={n}, qk=16, v=48)",
            lambda: attention(qs, ks, vs),
            lambda: attention(qs, ks, vs, backend="explicit"),
            lambda: _naive_global(qs, ks, vs),
        )
    )
    nl = 3136 // s  # L2ViT-T stage 1 at 224 px (56x56)
    ql, kl, vl = (torch.randn(B, H, nl, D, requires_grad=True) for _ in range(3))
    tau = torch.full((H, 1, 1), D**-0.5, requires_grad=True)
    rows.append(
        (
            f"L2ViT clamped linear (N={nl}, kv-first vs qk-first)",
            lambda: clamped_linear_attention(ql, kl, vl, tau),
            None,
            lambda: _naive_clamped_linear(ql, kl, vl, tau),
        )
    )
    return rows


def _time(fn: Callable[[], torch.Tensor], repeat: int, backward: bool) -> float:
    def once() -> None:
        out = fn()
        if backward:
            out.sum().backward()

    once()  # warm-up
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        once()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--second-wave", action="store_true", help="only the issue-17 mixers")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    s = 4 if args.quick else 1
    B, H, D = 2, 4, 32

    def qkv(n):
        return [torch.randn(B, H, n, D, requires_grad=True) for _ in range(3)]

    if args.second_wave:
        _report(_second_wave(B, H, D, s), args, B, H, D)
        return
    rows = []
    # query mode: kNN point attention with a bias
    n, kk = 4096 // s, 16
    pos = torch.randn(B, n, 3)
    nbr = knn_neighborhood(pos, kk)
    q, k, v = qkv(n)
    bias = torch.randn(B, H, n, kk, requires_grad=True)
    rows.append(
        (
            f"query (kNN points, N={n}, K={kk}, bias)",
            lambda: attention(q, k, v, nbr, bias=bias),
            lambda: attention(q, k, v, nbr, bias=bias, backend="explicit"),
            lambda: _naive_query(q, k, v, nbr.index, bias),
        )
    )
    hw = 64 // (2 if args.quick else 1)
    gnb = grid(hw, hw, 7)
    qg, kg, vg = qkv(hw * hw)
    rows.append(
        (
            f"query (NAT grid {hw}x{hw}, 7x7)",
            lambda: attention(qg, kg, vg, gnb),
            lambda: attention(qg, kg, vg, gnb, backend="explicit"),
            lambda: _naive_query(qg, kg, vg, gnb.index.expand(B, -1, -1), 0.0),
        )
    )
    wnb = windows(hw, hw, 8)
    rows.append(
        (
            f"group (windows {hw}x{hw}, 8x8)",
            lambda: attention(qg, kg, vg, wnb),
            lambda: attention(qg, kg, vg, wnb, backend="explicit"),
            lambda: _naive_group(qg, kg, vg, wnb.index),
        )
    )
    ng = 1024 // s
    q2, k2, v2 = qkv(ng)
    rows.append(
        (
            f"global (N={ng})",
            lambda: attention(q2, k2, v2),
            lambda: attention(q2, k2, v2, backend="explicit"),
            lambda: _naive_global(q2, k2, v2),
        )
    )
    nl = 4096 // s
    q3, k3, v3 = qkv(nl)
    rows.append(
        (
            f"linear global (N={nl}, kv-first vs qk-first)",
            lambda: attention(q3, k3, v3, kernel="linear"),
            None,
            lambda: _naive_linear(q3, k3, v3),
        )
    )
    _report(rows, args, B, H, D)


def _report(rows: list, args: argparse.Namespace, B: int, H: int, D: int) -> None:
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads={args.threads}, B={B}, H={H}, D={D}, float32, median of {args.repeat}"
    )
    print()
    print(
        "| mode | core auto fwd | core explicit fwd | naive fwd "
        "| core auto fwd+bwd | naive fwd+bwd |"
    )
    print("|---|---|---|---|---|---|")
    for name, core, expl, naive in rows:
        with torch.no_grad():
            cf = _time(core, args.repeat, False)
            ef = _time(expl, args.repeat, False) if expl is not None else float("nan")
            nf = _time(naive, args.repeat, False)
        cb = _time(core, args.repeat, True)
        nb = _time(naive, args.repeat, True)
        es = "n/a" if expl is None else f"{ef:.1f} ms"
        print(f"| {name} | {cf:.1f} ms | {es} | {nf:.1f} ms | {cb:.1f} ms | {nb:.1f} ms |")


if __name__ == "__main__":
    main()
