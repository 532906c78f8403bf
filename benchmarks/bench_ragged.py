"""Ragged batches and feature-space kNN: pointlib vs torch-cluster (and torch.cdist + topk).

    python benchmarks/bench_ragged.py [--device cpu|cuda] [--repeat 7] [--json out.json]

Cases (issue 13):

* ragged 3-D batch: 16 surface clouds of 700-1300 points (``make_cloud``, seeded sizes), flat
  ``(N, 3)`` rows with a sorted ``batch`` vector: kNN graph ``k = 16``, radius ``r = 0.2`` with
  ``max_num_neighbors = 32``, FPS ``ratio = 0.5``; pointlib through the ``torch_cluster`` drop-in
  (edges, as PyG receives them) and, for kNN, with an *unsorted* batch (torch-cluster needs it
  sorted);
* DGCNN's feature-space kNN: 16 x 1024 points, ``D = 64``, ``k = 20``: the dense
  ``pointlib.ops.knn`` on ``(16, 1024, 64)``, the drop-in ``knn`` on flat rows, torch-cluster's
  ``knn`` and ``torch.cdist(x, x).topk(20)``.

Medians of ``--repeat`` timed calls after one warm-up, in ms; ratios are ours / peer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import pointlib.interop.torch_cluster as tc
import pointlib.ops as ops
from pointlib import _ext
from pointlib.testing import make_cloud


def timeit(fn: Callable[[], object], device: str, repeat: int) -> float:
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def ragged_batch(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(700, 1301, (16,), generator=g).tolist()
    clouds = [make_cloud(1, n, generator=torch.Generator().manual_seed(i))[0][0]
              for i, n in enumerate(sizes)]  # fmt: skip
    x = torch.cat(clouds).to(device)
    batch = torch.repeat_interleave(torch.arange(16), torch.tensor(sizes)).to(device)
    return x, batch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev, rep = args.device, args.repeat
    try:
        import torch_cluster as peer

        if peer is tc:  # pragma: no cover - the drop-in is installed
            peer = None
    except ImportError:
        peer = None
    load = os.getloadavg()

    x, batch = ragged_batch(dev)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1)).to(dev)
    xu, bu = x[perm], batch[perm]
    feats = torch.randn(16, 1024, 64, generator=torch.Generator().manual_seed(2)).to(dev)
    flat = feats.reshape(-1, 64)
    fb = torch.arange(16, device=dev).repeat_interleave(1024)

    cases: dict[str, dict[str, Callable[[], object]]] = {
        f"ragged knn_graph k=16 (N={x.shape[0]}, 16 clouds)": {
            "pointlib (drop-in)": lambda: tc.knn_graph(x, 16, batch),
            "pointlib (drop-in, unsorted batch)": lambda: tc.knn_graph(xu, 16, bu),
        },
        "ragged radius_graph r=0.2 max 32": {
            "pointlib (drop-in)": lambda: tc.radius_graph(x, 0.2, batch, max_num_neighbors=32),
        },
        "ragged fps ratio=0.5": {
            "pointlib (drop-in)": lambda: tc.fps(x, batch, 0.5, random_start=False),
        },
        "feature knn 16x1024 D=64 k=20": {
            "pointlib.ops.knn (B,N,D)": lambda: ops.knn(feats, 20),
            "pointlib (drop-in, flat)": lambda: tc.knn(flat, flat, 20, fb, fb),
            "cdist+topk": lambda: torch.cdist(feats, feats).topk(20, dim=-1, largest=False),
        },
    }
    if peer is not None:
        cases[next(iter(cases))]["torch_cluster"] = lambda: peer.knn_graph(x, 16, batch)
        cases["ragged radius_graph r=0.2 max 32"]["torch_cluster"] = lambda: peer.radius_graph(
            x, 0.2, batch, max_num_neighbors=32
        )
        cases["ragged fps ratio=0.5"]["torch_cluster"] = lambda: peer.fps(
            x, batch, 0.5, random_start=False
        )
        cases["feature knn 16x1024 D=64 k=20"]["torch_cluster"] = lambda: peer.knn(
            flat, flat, 20, fb, fb
        )
    rows = []
    for case, impls in cases.items():
        for name, fn in impls.items():
            ms = timeit(fn, dev, rep if "cdist" not in name else max(3, rep // 2))
            rows.append({"case": case, "impl": name, "ms": round(ms, 3)})
            print(f"{case:48s} {name:36s} {ms:10.2f} ms", flush=True)
    get = {(r["case"], r["impl"]): r["ms"] for r in rows}
    ratios = {}
    for case, impls in cases.items():
        for peer_name in ("torch_cluster", "cdist+topk"):
            if (case, peer_name) not in get:
                continue
            for name in impls:
                if name.startswith("pointlib"):
                    key = f"{case}: {name} / {peer_name}"
                    ratios[key] = round(get[(case, name)] / get[(case, peer_name)], 3)
    print("\nratios (ours / peer):")
    for k, v in ratios.items():
        print(f"  {k}: {v}")
    result = {
        "device": dev,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "torch": torch.__version__,
        "torch_cluster": getattr(peer, "__version__", None) if peer else None,
        "threads": torch.get_num_threads(),
        "extension": _ext.describe(),
        "loadavg_start": load,
        "loadavg_end": os.getloadavg(),
        "rows": rows,
        "ratios": ratios,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
