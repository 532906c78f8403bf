"""Read speed of pointlib.io before and after a change, in one run, on the real minis.

The "before" readers are the modules ``pointlib/io/{pointcloud,mesh}.py`` of a git revision
(``--before``), loaded from ``git show`` next to the current ones, so both run on the same machine
in the same process. Inputs: the raw ModelNet OFF meshes of ``$POINTLIB_DATA_ROOT/meshes``, and
PLY (binary, ascii) and PCD files written from the first ``--clouds`` shapes of
``modelnet40_normal_resampled_mini`` (the minis hold no PLY/PCD files).

    python benchmarks/bench_io.py --before 91688cc --repeat 5
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _module_at(rev: str, rel: str, name: str):
    src = subprocess.run(
        ["git", "show", f"{rev}:{rel}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    exec(compile(src, f"{rev}:{rel}", "exec"), mod.__dict__)
    return mod


def _best(fn, files, repeat: int) -> float:
    """Best-of-``repeat`` wall time (s) of ``fn`` over all ``files``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for f in files:
            fn(f)
        times.append(time.perf_counter() - t0)
    return min(times)


def _clouds(data: Path, n: int, out: Path) -> dict[str, list[Path]]:
    from pointlib._optional import import_open3d
    from pointlib.io import read_point_cloud, write_point_cloud

    o3d = import_open3d("the PCD benchmark inputs")
    names = sorted((data / "modelnet40_normal_resampled_mini" / "airplane").glob("*.txt"))[:n]
    files: dict[str, list[Path]] = {"ply (binary)": [], "ply (ascii)": [], "pcd (binary)": []}
    for src in names:
        item = read_point_cloud(src)
        files["ply (binary)"].append(write_point_cloud(out / f"{src.stem}.ply", **item))
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(item["xyz"].double().numpy()))
        pcd.normals = o3d.utility.Vector3dVector(item["normals"].double().numpy())
        ascii_ply = out / f"{src.stem}_ascii.ply"
        o3d.io.write_point_cloud(str(ascii_ply), pcd, write_ascii=True)
        files["ply (ascii)"].append(ascii_ply)
        files["pcd (binary)"].append(write_point_cloud(out / f"{src.stem}.pcd", **item))
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="91688cc", help="git revision of the old readers")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--clouds", type=int, default=50)
    ap.add_argument("--samples", type=int, default=10000, help="points per sample_mesh call")
    args = ap.parse_args()
    data = Path(os.environ.get("POINTLIB_DATA_ROOT", ROOT.parent / "shared" / "data"))
    import pointlib.io.mesh as new_mesh
    import pointlib.io.pointcloud as new_pc

    old_pc = _module_at(args.before, "pointlib/io/pointcloud.py", "_before_pointcloud")
    old_mesh = _module_at(args.before, "pointlib/io/mesh.py", "_before_mesh")
    meshes = sorted((data / "meshes").glob("*.off"))
    with tempfile.TemporaryDirectory() as tmp:
        clouds = _clouds(data, args.clouds, Path(tmp))
        rows = []
        for kind, files in clouds.items():
            for f in files:  # same arrays from both readers
                a, b = old_pc.read_point_cloud(f), new_pc.read_point_cloud(f)
                assert all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys(), f
            before = _best(old_pc.read_point_cloud, files, args.repeat)
            after = _best(new_pc.read_point_cloud, files, args.repeat)
            rows.append((f"read_point_cloud {kind}", len(files), before, after))
        for f in meshes:
            a, b = old_mesh.read_mesh(f), new_mesh.read_mesh(f)
            assert np.array_equal(a.vertices, b.vertices), f
            assert np.array_equal(a.faces, b.faces), f
        before = _best(old_mesh.read_mesh, meshes, args.repeat)
        after = _best(new_mesh.read_mesh, meshes, args.repeat)
        rows.append(("read_mesh .off (ModelNet)", len(meshes), before, after))
        loaded = [new_mesh.read_mesh(f) for f in meshes]
        n = args.samples
        before = _best(lambda m: old_mesh.sample_mesh(m, n, seed=0), loaded, args.repeat)
        after = _best(lambda m: new_mesh.sample_mesh(m, n, seed=0), loaded, args.repeat)
        rows.append((f"sample_mesh {n} points", len(loaded), before, after))
        diffs = [
            float((old_mesh.sample_mesh(m, n, seed=0)[0] - new_mesh.sample_mesh(m, n, seed=0)[0])
                  .abs().max())
            for m in loaded
        ]  # fmt: skip
    where = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"machine: {where}, python {platform.python_version()}, numpy {np.__version__}")
    print(f"best of {args.repeat} runs")
    print(f"| operation | files | before {args.before} (ms) | after (ms) | after / before |")
    print("|---|---|---|---|---|")
    for name, k, b, a in rows:
        print(f"| {name} | {k} | {1000 * b:.1f} | {1000 * a:.1f} | {a / b:.2f} |")
    print(f"sample_mesh, same seed: max |xyz_before - xyz_after| = {max(diffs):.2e}")


if __name__ == "__main__":
    main()
