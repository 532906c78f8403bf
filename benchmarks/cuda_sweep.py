"""Seeded sweep of a compiled backend against the pure-torch reference (indices bit-identical).

    python benchmarks/cuda_sweep.py --backend cuda [--seeds 4] [--json sweep.json]
    python benchmarks/cuda_sweep.py --backend cuda --one-call     # one small call per kernel
    python benchmarks/cuda_sweep.py --backend cpu --seeds 1       # the same code path on CPU

Every case draws its clouds from a seed: Gaussian clouds (distinct distances) and integer-lattice
clouds (exact duplicates and exact distance ties, which the contract breaks by index), dense
``(B, N, 3)`` and ragged ``(N, D)`` with a batch vector. Each op runs on ``--backend`` (on its
device) and on the ``torch`` reference (on CPU); the indices must be equal bit for bit and, for kNN,
the distances too. ``--one-call`` runs one small call of each kernel only (for
``compute-sanitizer --tool memcheck``, where every launch is slow). Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

import pointlib.ops as ops
from pointlib.ops import reference as ref


def _cloud(shape: tuple[int, ...], seed: int, kind: str, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "lattice":
        return torch.randint(0, 4, shape, generator=g).to(dtype)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def _batch(n: int, graphs: int, seed: int, shuffled: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(0, graphs, (n,), generator=g)
    return b if shuffled else b.sort().values


def dense_cases(quick: bool):
    Bs, Ns = ((1, 3), (1, 7, 64, 1000)) if not quick else ((2,), (40,))
    for B, N, kind in itertools.product(Bs, Ns, ("gauss", "lattice")):
        for k in sorted({1, min(16, N), min(N, 256)}):
            yield B, N, k, kind


def run(backend: str, device: str, seeds: int, one_call: bool) -> list[dict]:
    rows: list[dict] = []

    def record(op: str, case: str, ok: bool, t: float) -> None:
        rows.append({"op": op, "case": case, "ok": ok, "ms": round(t * 1e3, 3)})
        if not ok:
            print(f"MISMATCH {op} {case}", flush=True)

    dtypes = (torch.float32,) if one_call else (torch.float32, torch.float64)
    for seed, dtype in itertools.product(range(seeds), dtypes):
        for B, N, k, kind in dense_cases(one_call):
            pts = _cloud((B, N, 3), 1000 * seed + N + k, kind, dtype)
            case = f"seed={seed} {dtype} B={B} N={N} k={k} {kind}"
            t0 = time.perf_counter()
            idx, d2 = ops.knn(pts.to(device), k, backend=backend)
            t = time.perf_counter() - t0
            wi, wd = ref.knn(pts, pts, k)
            record("knn", case, torch.equal(idx.cpu(), wi) and torch.equal(d2.cpu(), wd), t)
            r = 0.5 if kind == "gauss" else 1.0
            t0 = time.perf_counter()
            got = ops.ball_query(pts.to(device), r, 16, backend=backend)
            t = time.perf_counter() - t0
            record("ball_query", case, torch.equal(got.cpu(), ref.ball_query(pts, pts, r, 16)), t)
            npoint = max(1, N // 2)
            t0 = time.perf_counter()
            got = ops.fps(pts.to(device), npoint, backend=backend)
            t = time.perf_counter() - t0
            record("fps", case, torch.equal(got.cpu(), ref.fps(pts, npoint)), t)
            if one_call:
                break
        _ragged(backend, device, seed, dtype, one_call, record)
    return rows


def _ragged(backend, device, seed, dtype, one_call, record) -> None:
    """The ragged / any-D ops, where this pointlib has them."""
    if not hasattr(ops, "knn_ragged"):
        return
    sizes = ((300, 4),) if one_call else ((50, 3), (900, 5), (2000, 16))
    dims = (3,) if one_call else (1, 3, 16, 64)
    for (n, graphs), D, kind, shuffled in itertools.product(
        sizes, dims, ("gauss", "lattice"), (False, True)
    ):
        x = _cloud((n, D), 7 * seed + n + D, kind, dtype)
        bx = _batch(n, graphs, seed + n, shuffled)
        case = f"seed={seed} {dtype} n={n} graphs={graphs} D={D} {kind} shuffled={shuffled}"
        for k in (1, 20) if not one_call else (8,):
            t0 = time.perf_counter()
            idx, d2 = ops.knn_ragged(x.to(device), k, batch_x=bx.to(device), backend=backend)
            t = time.perf_counter() - t0
            wi, wd = ops.knn_ragged(x, k, batch_x=bx, backend="torch")
            record("knn_ragged", f"{case} k={k}", torch.equal(idx.cpu(), wi) and
                   torch.equal(d2.cpu(), wd), t)  # fmt: skip
        r = 0.8 * D**0.5 if kind == "gauss" else 1.5
        t0 = time.perf_counter()
        got = ops.ball_query_ragged(x.to(device), r, 12, batch_x=bx.to(device), backend=backend)
        t = time.perf_counter() - t0
        want = ops.ball_query_ragged(x, r, 12, batch_x=bx, backend="torch")
        record("ball_query_ragged", case, torch.equal(got.cpu(), want), t)
        t0 = time.perf_counter()
        got = ops.fps_ragged(x.to(device), ratio=0.5, batch=bx.to(device), backend=backend)
        t = time.perf_counter() - t0
        want = ops.fps_ragged(x, ratio=0.5, batch=bx, backend="torch")
        record("fps_ragged", case, torch.equal(got.cpu(), want), t)
        if one_call:
            break


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--device", default=None, help="tensor device (default: the backend's)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--one-call", action="store_true", help="one small call per kernel")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    device = args.device or ("cuda" if args.backend == "cuda" else "cpu")
    print(f"backends on {device}: {ops.available_backends(device=device)}", flush=True)
    t0 = time.perf_counter()
    rows = run(args.backend, device, 1 if args.one_call else args.seeds, args.one_call)
    bad = [r for r in rows if not r["ok"]]
    by_op: dict[str, list[int]] = {}
    for r in rows:
        by_op.setdefault(r["op"], [0, 0])[0 if r["ok"] else 1] += 1
    summary = {op: {"ok": v[0], "mismatch": v[1]} for op, v in by_op.items()}
    print(f"sweep: {len(rows)} cases, {len(bad)} mismatches, {time.perf_counter() - t0:.1f} s")
    for op, v in summary.items():
        print(f"  {op:18s} ok {v['ok']:4d}  mismatch {v['mismatch']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"backend": args.backend, "device": device,
                                         "summary": summary, "rows": rows}, indent=1))  # fmt: skip
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
