"""``pointlib demo``: rotation robustness of RISurConv vs a non-invariant baseline, on CPU.

On the embedded :class:`~pointlib.datasets.SyntheticShapes` (aligned shapes whose upright pose
is a shortcut), it trains a small fixed-mode RISurConv and PointNet++ (SSG) briefly, then writes
the robustness table (``robustness.csv`` / ``.md``), an accuracy-vs-angle sweep
(``angle_sweep.png``) and a render of a few SO(3)-rotated test clouds coloured by each model's
prediction (``predictions.png``) into the output folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pointlib.engine.checkpoint import model_from_checkpoint
from pointlib.engine.config import Config, config_from_dict
from pointlib.engine.data import DataBundle, bundle_from_datasets
from pointlib.engine.evaluate import forward_batch
from pointlib.engine.outputs import atomic_write_text, dumps_json
from pointlib.engine.plots import plot_sweep, render_clouds
from pointlib.engine.robustness import (
    RobustnessRow,
    format_table,
    run_robustness,
    write_robustness,
)
from pointlib.engine.rotations import rotate_batch, sample_rotations

__all__ = ["DemoSettings", "demo_config", "previous_results", "run_demo"]

MODELS = {
    "RISurConv (fixed, tiny)": "risurconv_cls_tiny",
    "PointNet++ SSG (tiny)": ("pointnet2_cls_ssg_tiny"),
}


@dataclass
class DemoSettings:
    """Size knobs of the demo (``quick`` shrinks everything for smoke tests)."""

    epochs: int = 12
    num_points: int = 256
    train_per_class: int = 40
    test_per_class: int = 10
    batch_size: int = 16
    num_rotations: int = 3
    sweep_steps: int = 12
    so3_train: bool = True  # also train with SO3 augmentation (the SO3/SO3 column)
    seed: int = 0
    cache_dir: str | None = None  # SyntheticShapes cache (default: pointlib's cache folder)

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(
            epochs=1,
            num_points=64,
            train_per_class=3,
            test_per_class=1,
            batch_size=8,
            num_rotations=2,
            sweep_steps=4,
            so3_train=False,
        )


def demo_config(model: str, s: DemoSettings) -> Config:
    """The training config of one demo model (also a template for your own runs)."""
    return config_from_dict(
        {
            "name": f"demo-{model}",
            "model": {"name": model, "kwargs": {"faithful": False}},
            "data": {
                "name": "synthetic",
                "root": s.cache_dir,
                "num_points": s.num_points,
                "batch_size": s.batch_size,
                "eval_batch_size": 32,
                "val_fraction": 0.15,
                "kwargs": {"samples_per_class": s.train_per_class, "seed": s.seed},
            },
            "augment": {"rotation": "z", "scale": [0.8, 1.25], "shift": 0.1},
            "optim": {"lr": 3e-3, "weight_decay": 1e-4},
            "sched": {"name": "cosine", "min_lr": 1e-4},
            "train": {"epochs": s.epochs, "seed": s.seed, "tensorboard": False},
            "eval": {
                "num_rotations": s.num_rotations,
                "sweep_steps": s.sweep_steps,
                "angle_sweep": True,
            },
            "robustness": {
                "train_rotations": ["z", "so3"] if s.so3_train else ["z"],
                "tests": {"z": ["none", "z", "so3"], "so3": ["so3"]},
            },
        }
    )


def _demo_data(cfg: Config, s: DemoSettings) -> DataBundle:
    """SyntheticShapes train (val drawn from it) and test splits, each with its own size."""
    from pointlib.datasets import get_dataset

    kw = dict(cfg.data.kwargs, num_points=s.num_points, normals=True)
    train_base = get_dataset("synthetic", s.cache_dir, "train", **kw)
    kw["samples_per_class"] = s.test_per_class
    test_base = get_dataset("synthetic", s.cache_dir, "test", **kw)
    return bundle_from_datasets(cfg, train_base, test_base)


def previous_results(out: str | Path) -> list[str]:
    """Names of the demo outputs already in ``out`` (empty when it is safe to write there)."""
    out = Path(out)
    names = ["demo.json", "robustness.csv", "robustness.md", "robustness.json", *MODELS.values()]
    return [n for n in names if (out / n).exists()]


def run_demo(
    out: str | Path = "pointlib-demo",
    settings: DemoSettings | None = None,
    *,
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Run the demo; returns ``rows``, ``table`` (text), ``files`` and ``wall_s``."""
    s = settings or DemoSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    rows: list[RobustnessRow] = []
    sweeps: dict[str, list[float]] = {}
    angles: list[float] = []
    best_paths: dict[str, Path] = {}
    data = None
    for label, model in MODELS.items():
        cfg = demo_config(model, s)
        cfg.train.progress = progress
        if data is None:
            data = _demo_data(cfg, s)
        log(
            f"[demo] training {label} ({model}) on SyntheticShapes: {len(data.train)} train / "
            f"{len(data.val) if data.val else 0} val / {len(data.test)} test, "
            f"{s.num_points} points, {s.epochs} epochs"
        )
        model_rows, extras = run_robustness(cfg, out / model, label=label, data=data)
        rows += model_rows
        angles, sweeps[label] = extras["sweep"]
        best_paths[label] = out / model / "train_z" / "best.pt"
    assert data is not None
    title = "SyntheticShapes, z-trained: rotation about a 45°-tilted axis"
    sweep_note = f"each point: all {len(data.test)} test shapes rotated by that angle"
    plot_sweep(angles, sweeps, out / "angle_sweep.png", title=title, note=sweep_note)
    _render_predictions(best_paths, data, out / "predictions.png", seed=s.seed)
    wall = time.time() - t0
    note = (
        f"`pointlib demo`: SyntheticShapes ({len(data.classes)} classes, {s.num_points} points), "
        f"{s.epochs} epochs per training on CPU; wall time {wall:.0f} s."
    )
    write_robustness(out, rows, note=note, extra={"angles": angles, "sweeps": sweeps})
    table = format_table(rows, markdown=True)
    files = [
        "robustness.csv",
        "robustness.md",
        "robustness.json",
        "angle_sweep.png",
        "predictions.png",
        "demo.json",
        *(f"{m}/" for m in MODELS.values()),  # run folders: best.pt, metrics, confusions
    ]
    atomic_write_text(
        out / "demo.json",
        dumps_json({"wall_s": wall, "settings": s.__dict__, "files": files}),
    )
    return {"rows": rows, "table": table, "files": [out / f for f in files], "wall_s": wall}


@torch.no_grad()
def _render_predictions(
    best_paths: dict[str, Path], data: Any, path: Path, *, seed: int, count: int = 5
) -> None:
    """Render ``count`` test clouds (one per class where possible), SO3-rotated with the demo's
    seeded rotations, coloured by each model's prediction."""
    picked: list[int] = []
    seen: set[int] = set()
    for i in range(len(data.test)):
        y = int(data.test[i]["label"])
        if y not in seen:
            seen.add(y)
            picked.append(i)
        if len(picked) == count:
            break
    items = [data.test[i] for i in picked]
    xyz = torch.stack([it["xyz"] for it in items])
    normals = torch.stack([it["normals"] for it in items]) if "normals" in items[0] else None
    idx = torch.tensor([it["index"] for it in items])
    R = sample_rotations("so3", idx, seed=seed + 1, dtype=xyz.dtype)
    rx, rn = rotate_batch(xyz, normals, R)
    preds = {}
    for label, p in best_paths.items():
        model = model_from_checkpoint(p).eval()
        preds[label] = forward_batch(model, {}, "cls", rx, rn).argmax(-1).tolist()
    render_clouds(
        list(rx),
        preds,
        [int(it["label"]) for it in items],
        data.classes,
        path,
        title="SO(3)-rotated test clouds, coloured by predicted class",
    )
