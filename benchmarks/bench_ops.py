"""Benchmark pointlib's point ops against torch-cluster, torch.cdist+topk, scipy and open3d.

    python benchmarks/bench_ops.py [--device cpu|cuda] [--quick] [--json out.json]
    python benchmarks/bench_ops.py --device cuda --batch 32 --sizes 1024 2048 --dtype float32

Shapes are those RISurConv uses: B clouds x 1024 points (generic ellipsoid clouds from
``pointlib.testing.make_cloud``) and one real ModelNet40 cloud (2048 points) from the data minis.
Each entry is the median of ``--repeat`` timed calls after one warm-up call, in milliseconds.
Peers that are not installed are reported as ``n/a``.

``--sizes`` runs every op (kNN k=8/32/64, FPS N->N/2 and N->512, ball query) at each N;
``--dtype`` is the input dtype of pointlib's kNN and ball query (float16/bfloat16 are computed in
float32; the dense FPS and the peers always get float32). On CUDA the ratios are taken against
the pure-torch CUDA paths (``cdist+topk`` and pointlib's ``torch`` backend, i.e. batched FPS
and masked top-k ball query), and FPS is compared with its memory-bandwidth bound: every step
reads the coordinates and reads and writes the running minimum distance of every point,
``B*N*(D*s + 2*4)`` bytes (``s`` the coordinate size), times ``npoint`` steps, at
``--bandwidth`` bytes/s (H200: 4.3e12).
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

import pointlib.ops as ops
from pointlib import _ext
from pointlib.testing import data_root, make_cloud


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timeit(fn: Callable[[], object], device: str, repeat: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _flat(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    B, N, _ = x.shape
    return x.reshape(B * N, 3), torch.arange(B, device=x.device).repeat_interleave(N)


def peers_knn(x: torch.Tensor, k: int) -> dict[str, Callable[[], object]]:
    out: dict[str, Callable[[], object]] = {}
    try:
        import torch_cluster

        flat, batch = _flat(x)
        out["torch_cluster.knn"] = lambda: torch_cluster.knn(flat, flat, k, batch, batch)
    except ImportError:
        pass
    out["cdist+topk"] = lambda: torch.cdist(x, x).topk(k, dim=-1, largest=False)
    if x.device.type == "cpu":
        try:
            from scipy.spatial import cKDTree

            pts = x.numpy()

            def scipy_knn():
                for b in range(pts.shape[0]):
                    cKDTree(pts[b]).query(pts[b], k=k, workers=-1)

            out["scipy.cKDTree"] = scipy_knn
        except ImportError:
            pass
        try:
            from pointlib._optional import import_open3d

            o3d = import_open3d()

            def o3d_knn():
                for b in range(x.shape[0]):
                    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(x[b].double().numpy()))
                    tree = o3d.geometry.KDTreeFlann(pc)
                    for p in pc.points:
                        tree.search_knn_vector_3d(p, k)

            out["open3d.KDTreeFlann"] = o3d_knn
        except Exception:
            pass
    return out


def peers_fps(x: torch.Tensor, npoint: int) -> dict[str, Callable[[], object]]:
    try:
        import torch_cluster
    except ImportError:
        return {}
    flat, batch = _flat(x)
    ratio = npoint / x.shape[1]
    return {"torch_cluster.fps": lambda: torch_cluster.fps(flat, batch, ratio, random_start=False)}


def peers_ball(x: torch.Tensor, r: float, ns: int) -> dict[str, Callable[[], object]]:
    out: dict[str, Callable[[], object]] = {}
    try:
        import torch_cluster

        flat, batch = _flat(x)
        out["torch_cluster.radius"] = lambda: torch_cluster.radius(
            flat, flat, r, batch, batch, max_num_neighbors=ns
        )
    except ImportError:
        pass
    if x.device.type == "cpu":
        try:
            from scipy.spatial import cKDTree

            pts = x.numpy()

            def scipy_ball():
                for b in range(pts.shape[0]):
                    cKDTree(pts[b]).query_ball_point(pts[b], r, workers=-1)

            out["scipy.cKDTree"] = scipy_ball
        except ImportError:
            pass
    return out


def real_cloud(device: str) -> torch.Tensor | None:
    root = data_root()
    if root is None:
        return None
    f = root / "modelnet40_normal_resampled_mini" / "airplane" / "airplane_0001.txt"
    if not f.exists():
        cands = sorted((root / "modelnet40_normal_resampled_mini").glob("*/*.txt"))
        if not cands:
            return None
        f = cands[0]
    rows = [list(map(float, line.split(",")[:3])) for line in f.read_text().split()]
    return torch.tensor(rows, dtype=torch.float32, device=device)[None]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repeats (smoke run)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--sizes", type=int, nargs="*", default=None, help="N of the synthetic cases")
    ap.add_argument(
        "--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"]
    )
    ap.add_argument("--bandwidth", type=float, default=4.3e12, help="bytes/s for the FPS bound")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    repeat = args.repeat or (2 if args.quick else 7)
    B = 2 if args.quick else args.batch
    backends = ops.available_backends(device=dev)
    dtype = getattr(torch, args.dtype)
    cases: list[tuple[str, torch.Tensor, str, dict]] = []
    if args.sizes:
        for n in args.sizes:
            x = make_cloud(B, n, device=dev)[0]
            for k in (8,) if args.quick else (8, 32, 64):
                cases.append((f"knn B={B} N={n} k={k}", x, "knn", {"k": min(k, n)}))
            for npoint in sorted({max(1, n // 2), min(n, 512)}):
                cases.append((f"fps B={B} {n}->{npoint}", x, "fps", {"npoint": npoint}))
            cases.append((f"ball_query B={B} N={n} r=0.2 ns=32", x, "ball_query", {"r": 0.2}))
    else:
        x1024 = make_cloud(B, 1024, device=dev)[0]
        x2048 = make_cloud(B, 2048, device=dev)[0]
        for k in (8,) if args.quick else (8, 32, 64):
            cases.append((f"knn B={B} N=1024 k={k}", x1024, "knn", {"k": k}))
        cases.append((f"fps B={B} 1024->512", x1024, "fps", {"npoint": 512}))
        if not args.quick:
            cases.append((f"fps B={B} 2048->512", x2048, "fps", {"npoint": 512}))
        cases.append((f"ball_query B={B} N=1024 r=0.2 ns=32", x1024, "ball_query", {"r": 0.2}))
    real = None if args.sizes else real_cloud(dev)
    if real is not None:
        cases.append((f"knn real N={real.shape[1]} k=32", real, "knn", {"k": 32}))
        cases.append((f"fps real {real.shape[1]}->512", real, "fps", {"npoint": 512}))
        cases.append((f"ball_query real N={real.shape[1]} r=0.2", real, "ball_query", {"r": 0.2}))

    rows = []
    for name, x32, op, p in cases:
        impls: dict[str, Callable[[], object]] = {}
        # the dense fps takes float32/float64 only: half-precision runs time it in float32
        x = x32.to(dtype) if op != "fps" or dtype.itemsize >= 4 else x32
        for b in backends:
            if b not in ops.available_backends(op, dev):
                continue
            if op == "knn":
                impls[f"pointlib[{b}]"] = lambda b=b, x=x, p=p: ops.knn(x, p["k"], backend=b)
            elif op == "fps":
                impls[f"pointlib[{b}]"] = lambda b=b, x=x, p=p: ops.fps(x, p["npoint"], backend=b)
            else:
                impls[f"pointlib[{b}]"] = lambda b=b, x=x, p=p: ops.ball_query(
                    x, p["r"], 32, backend=b
                )
        if op == "knn":
            impls.update(peers_knn(x32, p["k"]))
        elif op == "fps":
            impls.update(peers_fps(x32, p["npoint"]))
        else:
            impls.update(peers_ball(x32, p["r"], 32))
        for impl, fn in impls.items():
            ms = timeit(fn, dev, repeat if "torch]" not in impl else max(1, repeat // 3))
            rows.append({"case": name, "impl": impl, "ms": round(ms, 3)})
            print(f"{name:40s} {impl:24s} {ms:10.2f} ms", flush=True)

    def ratio(case_prefix: str, ours: str, peer: str) -> float | None:
        get = {(r["case"], r["impl"]): r["ms"] for r in rows}
        for r in rows:
            if r["case"].startswith(case_prefix) and r["impl"] == ours:
                peer_ms = get.get((r["case"], peer))
                return round(r["ms"] / peer_ms, 3) if peer_ms else None
        return None

    best = "pointlib[cuda]" if dev == "cuda" else "pointlib[cpu]"
    goals = {
        "knn k=32 / torch_cluster.knn (goal <= 0.2)": ratio(
            f"knn B={B} N=1024 k=32", best, "torch_cluster.knn"
        ),
        "fps 1024->512 / torch_cluster.fps (goal <= 0.333)": ratio(
            f"fps B={B} 1024", best, "torch_cluster.fps"
        ),
        "ball_query / torch_cluster.radius (goal <= 0.333)": ratio(
            f"ball_query B={B}", best, "torch_cluster.radius"
        ),
    }
    if dev == "cuda":  # against the pure-torch CUDA paths, every case (goal <= 0.5 each)
        for name, _, op, _p in cases:
            peer = "cdist+topk" if op == "knn" else "pointlib[torch]"
            goals[f"{name} / {peer} (goal <= 0.5)"] = ratio(name, best, peer)
            goals[f"{name} / pointlib[torch]"] = ratio(name, best, "pointlib[torch]")
    bounds = {}
    for name, x32, op, p in cases:
        if op != "fps":
            continue
        Bx, N, D = x32.shape
        nbytes = Bx * N * (D * max(4, dtype.itemsize) + 2 * 4) * p["npoint"]  # fps: >= fp32
        bound_ms = nbytes / args.bandwidth * 1e3
        got = {(r["case"], r["impl"]): r["ms"] for r in rows}.get((name, best))
        bounds[name] = {
            "bytes": nbytes,
            "bound_ms": round(bound_ms, 4),
            "ours_ms": got,
            "ours_over_bound (goal <= 2)": round(got / bound_ms, 2) if got else None,
        }
    print("\nratios (ours / peer):")
    for g, v in goals.items():
        print(f"  {g}: {v}")
    print(f"\nFPS vs the memory-bandwidth bound at {args.bandwidth:.3g} B/s:")
    for g, v in bounds.items():
        print(f"  {g}: {v}")
    result = {
        "device": dev,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "extension": _ext.describe(),
        "loadavg_start": load,
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3] if load else None,
        "rows": rows,
        "goal_ratios": goals,
        "dtype": args.dtype,
        "fps_bandwidth_bound": bounds,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
