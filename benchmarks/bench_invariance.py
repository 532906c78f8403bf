"""Rotation invariance of the point models on real shapes (and on generated clouds).

For each model and dtype: seeded random initialisation, BatchNorm statistics from one train-mode
pass over real training shapes, ``eval()``; then the test shapes are given unrotated and under
``R`` Haar-random rotations (points and normals), and the script reports the largest
``|Δlogit|`` and how many predictions (argmax; per point for part segmentation) change.

    python benchmarks/bench_invariance.py                    # cls + partseg, float64 + float32
    python benchmarks/bench_invariance.py --models risurconv_cls --dtypes float32 --shapes 8
    python benchmarks/bench_invariance.py --json out.json    # also write the figures as JSON

Needs the real minis (``$POINTLIB_DATA_ROOT``: ``modelnet40_normal_resampled_mini`` and
``shapenetpart_mini``); ``--synthetic`` uses generated clouds instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pointlib.geometry import apply_rotation, random_rotation
from pointlib.models import create_model
from pointlib.testing import data_root, make_cloud

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def modelnet_batch(split: str, count: int, num_points: int) -> tuple[torch.Tensor, ...]:
    """``count`` shapes of the ModelNet40 mini split: ``xyz, normals (B, N, 3)``, labels."""
    from pointlib.datasets import ModelNet40

    root = _root() / "modelnet40_normal_resampled_mini"
    ds = ModelNet40(root, split=split, num_points=num_points, format="txt")
    step = max(1, len(ds) // count)
    items = [ds[i] for i in range(0, len(ds), step)][:count]
    return (
        torch.stack([it["xyz"] for it in items]),
        torch.stack([it["normals"] for it in items]),
        torch.tensor([int(it["label"]) for it in items]),
    )


def shapenet_batch(split: str, count: int, num_points: int) -> tuple[torch.Tensor, ...]:
    """``count`` ShapeNetPart mini shapes: ``xyz, normals (B, N, 3)``, categories ``(B,)``."""
    from pointlib.datasets import ShapeNetPart

    root = _root() / "shapenetpart_mini"
    ds = ShapeNetPart(root, split=split, num_points=num_points)
    items = [ds[i % len(ds)] for i in range(count)]
    return (
        torch.stack([it["xyz"] for it in items]),
        torch.stack([it["normals"] for it in items]),
        torch.tensor([int(it["category"]) for it in items]),
    )


def _root() -> Path:
    root = data_root()
    if root is None:
        raise SystemExit("real minis not found: set POINTLIB_DATA_ROOT (or use --synthetic)")
    return root


def calibrated(name: str, calib: tuple[torch.Tensor, ...], dtype: torch.dtype, **kw):
    """``create_model(name)`` with seeded init, BN statistics from one pass over ``calib``."""
    torch.manual_seed(0)
    seg = "partseg" in name
    model = create_model(name, **({"num_parts": 50} if seg else {"num_classes": 40}), **kw)
    model = model.to(dtype).train()
    xyz, nrm, extra = calib
    with torch.no_grad():
        model(xyz.to(dtype), nrm.to(dtype), *([extra] if seg else []))
    return model.eval()


def measure(
    model, data: tuple[torch.Tensor, ...], dtype: torch.dtype, rotations: int, seed: int = 0
) -> dict[str, float]:
    """Largest ``|Δlogit|`` and argmax changes over ``rotations`` Haar rotations of ``data``."""
    xyz, nrm, extra = data
    xyz, nrm = xyz.to(dtype), nrm.to(dtype)
    seg = extra is not None and type(model).__name__.endswith("PartSeg")
    args = [extra] if seg else []
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ref = model(xyz, nrm, *args)
        worst, flips, total = 0.0, 0, 0
        for _ in range(rotations):
            R = random_rotation(xyz.shape[0], g, dtype=torch.float64)
            rx, rn = apply_rotation(R, xyz.double(), nrm.double())
            out = model(rx.to(dtype), rn.to(dtype), *args)
            worst = max(worst, float((out - ref).abs().max()))
            flips += int((out.argmax(-1) != ref.argmax(-1)).sum())
            total += ref.argmax(-1).numel()
    return {
        "max_dlogit": worst,
        "argmax_changes": flips,
        "decisions": total,
        "logit_std": float(ref.std()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["risurconv_cls", "risurconv_partseg"])
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=list(DTYPES))
    p.add_argument("--shapes", type=int, default=None, help="test shapes (cls 24, partseg 8)")
    p.add_argument("--rotations", type=int, default=None, help="rotations (cls 8, partseg 4)")
    p.add_argument("--faithful", action="store_true", help="faithful mode (negative control)")
    p.add_argument("--synthetic", action="store_true", help="generated clouds, not real shapes")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for name in a.models:
        seg = "partseg" in name
        n_pts = 2048 if seg else 1024
        if "tiny" in name:
            n_pts = 256
        shapes = a.shapes or (8 if seg else 24)
        rots = a.rotations or (4 if seg else 8)
        if a.synthetic:
            xyz, nrm = make_cloud(shapes, n_pts, dtype=torch.float64)
            extra = torch.arange(shapes) % 16 if seg else None
            test = calib = (xyz, nrm, extra)
        elif seg:
            calib = shapenet_batch("test", 8, n_pts)
            test = shapenet_batch("test", shapes, n_pts)
        else:
            calib = modelnet_batch("train", 24, n_pts)
            c = modelnet_batch("test", shapes, n_pts)
            test = (c[0], c[1], None)
        for dn in a.dtypes:
            dtype = DTYPES[dn]
            kw = {"faithful": True} if a.faithful else {}
            model = calibrated(name, calib, dtype, **kw)
            t0 = time.perf_counter()
            res = measure(model, test, dtype, rots)
            res.update(
                model=name, dtype=dn, shapes=shapes, rotations=rots,
                faithful=a.faithful, synthetic=a.synthetic, seconds=time.perf_counter() - t0,
            )  # fmt: skip
            rows.append(res)
            print(
                f"{name:22s} {dn:8s} {'faithful' if a.faithful else 'fixed':8s} "
                f"{shapes}x{rots}: max|dlogit| {res['max_dlogit']:.3e}  argmax changes "
                f"{res['argmax_changes']}/{res['decisions']}  "
                f"(logit std {res['logit_std']:.2f}, {res['seconds']:.0f} s)",
                flush=True,
            )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
