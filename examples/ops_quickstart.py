"""pointlib.ops in one minute: FPS -> kNN -> group on a real ModelNet40 cloud (or a synthetic one).

python examples/ops_quickstart.py
"""

from __future__ import annotations

import time

import torch

import pointlib.ops as ops
from pointlib import _ext
from pointlib.testing import data_root, make_cloud


def load_cloud() -> tuple[torch.Tensor, str]:
    root = data_root()
    files = (
        sorted((root / "modelnet40_normal_resampled_mini").glob("airplane/*.txt")) if root else []
    )
    if files:
        rows = [[float(v) for v in line.split(",")] for line in files[0].read_text().split()]
        data = torch.tensor(rows)
        return data[None, :, :3], f"ModelNet40 {files[0].name}"
    return make_cloud(1, 2048)[0], "synthetic ellipsoid"


def main() -> None:
    xyz, name = load_cloud()
    print(f"{name}: {xyz.shape[1]} points; {_ext.describe()}")
    print("backends:", ", ".join(ops.available_backends()))

    t0 = time.perf_counter()
    centres = ops.fps(xyz, 512)  # (1, 512) indices, deterministic from index 0
    new_xyz = ops.gather(xyz, centres)  # (1, 512, 3)
    idx, dist2 = ops.knn(xyz, 32, new_xyz)  # (1, 512, 32), ascending, ties -> lower index
    groups = ops.group(xyz, idx) - new_xyz[:, :, None]  # (1, 512, 32, 3) local offsets
    ball = ops.ball_query(xyz, 0.2, 32, new_xyz)  # (1, 512, 32), first members by index
    ms = (time.perf_counter() - t0) * 1e3

    print(
        f"fps -> {tuple(centres.shape)}, knn -> {tuple(idx.shape)}, group -> {tuple(groups.shape)}"
    )
    in_order = bool((centres[0] == torch.arange(512)).all())
    print(
        f"first centres: {centres[0, :6].tolist()} (file already stored in FPS order: {in_order})"
    )
    print(f"mean kNN radius (k=32): {dist2[..., -1].sqrt().mean():.4f}")
    members = (ball != ball[..., :1]).sum(-1) + 1
    print(f"ball r=0.2: mean members (capped at 32) {members.float().mean():.1f}")
    for backend in ops.available_backends("knn"):
        same = torch.equal(ops.knn(xyz, 32, new_xyz, backend=backend)[0], idx)
        print(f"  knn backend {backend:6s} matches: {same}")
    print(f"pipeline time: {ms:.1f} ms")


if __name__ == "__main__":
    main()
