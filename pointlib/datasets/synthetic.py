"""SyntheticShapes: the embedded default dataset, generated procedurally (no download).

Twelve classes of primitives and composites (trimesh), each with random proportions drawn from
class-specific ranges, in a canonical **upright pose** (up = +z) with a random yaw about z.
Points are sampled area-weighted on the surface with outward face normals.

Design: the classes differ by *intrinsic* geometry (number and shape of parts, curvature,
holes, aspect ratios), so a rotation-invariant model can tell them apart under any SO(3)
rotation, while the aligned pose also offers orientation cues (tables, chairs, mushrooms and
arrows always point up) that a non-invariant model learns and loses under rotation.

Generation is deterministic: item ``i`` of class ``c`` in split ``s`` uses
``numpy.random.default_rng([seed, s, c, i])``; the same seed gives bit-identical arrays. The
set is generated on first use and cached (see :mod:`pointlib.datasets.cache`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pointlib.datasets._cached import resolve_cache_dir
from pointlib.datasets.base import PointCloudDataset, Transform
from pointlib.datasets.cache import cached_arrays

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "box", "sphere", "cylinder", "cone", "torus", "capsule", "table", "dumbbell", "snowman",
    "mushroom", "arrow", "chair",
)  # fmt: skip
_SPLIT_IDS = {"train": 0, "test": 1, "val": 2}


def _shapes() -> dict[str, Callable[[np.random.Generator], Any]]:
    from pointlib._optional import require

    tm = require("trimesh", "SyntheticShapes")
    cr = tm.creation

    def at(mesh, x=0.0, y=0.0, z=0.0):
        mesh.apply_translation([x, y, z])
        return mesh

    def box(r):
        return cr.box(extents=[r.uniform(0.6, 1.0), r.uniform(0.6, 1.0), r.uniform(0.6, 1.0)])

    def sphere(r):
        m = cr.icosphere(subdivisions=2, radius=1.0)
        m.apply_scale(r.uniform(0.9, 1.1, size=3))
        return m

    def cylinder(r):
        return cr.cylinder(radius=r.uniform(0.3, 0.45), height=r.uniform(1.4, 2.0), sections=32)

    def cone(r):
        return cr.cone(radius=r.uniform(0.45, 0.65), height=r.uniform(1.0, 1.5), sections=32)

    def torus(r):
        return cr.torus(
            major_radius=r.uniform(0.6, 0.8),
            minor_radius=r.uniform(0.12, 0.2),
            major_sections=32,
            minor_sections=12,
        )

    def capsule(r):
        return cr.capsule(height=r.uniform(0.8, 1.4), radius=r.uniform(0.25, 0.35), count=[16, 16])

    def legs(r, w, d, h, t):
        return [
            at(cr.box(extents=[t, t, h]), sx * (w / 2 - t), sy * (d / 2 - t), h / 2)
            for sx in (-1, 1)
            for sy in (-1, 1)
        ]

    def table(r):
        w, d, h = r.uniform(1.2, 1.6), r.uniform(0.7, 1.0), r.uniform(0.7, 1.0)
        top = at(cr.box(extents=[w, d, 0.06]), z=h + 0.03)
        return tm.util.concatenate([top, *legs(r, w, d, h, 0.07)])

    def chair(r):
        w, h = r.uniform(0.5, 0.7), r.uniform(0.45, 0.6)
        seat = at(cr.box(extents=[w, w, 0.06]), z=h + 0.03)
        bh = r.uniform(0.5, 0.8)
        back = at(cr.box(extents=[w, 0.06, bh]), y=w / 2 - 0.03, z=h + 0.06 + bh / 2)
        return tm.util.concatenate([seat, back, *legs(r, w, w, h, 0.05)])

    def dumbbell(r):
        length, rad = r.uniform(1.2, 1.8), r.uniform(0.25, 0.35)
        bar = cr.cylinder(radius=0.06, height=length, sections=16)
        ends = [at(cr.icosphere(subdivisions=2, radius=rad), z=s * length / 2) for s in (-1, 1)]
        return tm.util.concatenate([bar, *ends])

    def snowman(r):
        r1, r2 = r.uniform(0.45, 0.55), r.uniform(0.3, 0.38)
        r3 = r.uniform(0.18, 0.24)
        return tm.util.concatenate(
            [
                at(cr.icosphere(subdivisions=2, radius=r1), z=r1),
                at(cr.icosphere(subdivisions=2, radius=r2), z=2 * r1 + r2 * 0.8),
                at(cr.icosphere(subdivisions=2, radius=r3), z=2 * r1 + 1.6 * r2 + r3 * 0.8),
            ]
        )

    def mushroom(r):
        h, cap = r.uniform(0.6, 0.9), r.uniform(0.5, 0.7)
        stem = at(cr.cylinder(radius=r.uniform(0.1, 0.15), height=h, sections=16), z=h / 2)
        top = cr.icosphere(subdivisions=2, radius=1.0)
        top.apply_scale([cap, cap, cap * 0.45])
        return tm.util.concatenate([stem, at(top, z=h)])

    def arrow(r):
        length = r.uniform(1.2, 1.6)
        shaft = at(cr.cylinder(radius=0.07, height=length, sections=16), z=length / 2)
        head_h = r.uniform(0.35, 0.5)
        head = at(cr.cone(radius=r.uniform(0.2, 0.28), height=head_h, sections=24), z=length)
        return tm.util.concatenate([shaft, head])

    return {
        "box": box,
        "sphere": sphere,
        "cylinder": cylinder,
        "cone": cone,
        "torus": torus,
        "capsule": capsule,
        "table": table,
        "dumbbell": dumbbell,
        "snowman": snowman,
        "mushroom": mushroom,
        "arrow": arrow,
        "chair": chair,
    }


def generate(
    num_points: int, samples_per_class: int, seed: int, split: str
) -> dict[str, np.ndarray]:
    """Generate the arrays of one split: ``xyz``/``normals (M, N, 3)`` float32, ``labels (M,)``."""
    from pointlib.io import sample_mesh

    makers = _shapes()
    sid = _SPLIT_IDS[split]
    xyz, nrm, lab = [], [], []
    for c, name in enumerate(SYNTHETIC_CLASSES):
        for i in range(samples_per_class):
            rng = np.random.default_rng([seed, sid, c, i])
            mesh = makers[name](rng)
            yaw = rng.uniform(0, 2 * np.pi)
            rot = np.array(
                [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
            )
            x, n = sample_mesh(
                mesh, num_points, seed=int(rng.integers(2**62)), dtype=__import__("torch").float64
            )
            x, n = x.numpy() @ rot.T, n.numpy() @ rot.T
            xyz.append(x.astype(np.float32))
            nrm.append(n.astype(np.float32))
            lab.append(c)
    return {"xyz": np.stack(xyz), "normals": np.stack(nrm), "labels": np.array(lab, np.int64)}


class SyntheticShapes(PointCloudDataset):
    """Procedural 12-class shape set (the embedded default; no files needed).

    Args:
        root: cache folder for the generated arrays (``None``: the default cache dir).
        split: ``"train"``, ``"test"`` or ``"val"`` (independent draws).
        num_points: points per shape. (default: 512)
        samples_per_class: shapes per class (default: 80 for train, 20 otherwise).
        seed: generation seed. (default: 0)
        normals, transform, normalize, cache: as for the other datasets.

    With the defaults the train split is 960 shapes x 512 points (about 12 MB), generated in a
    few seconds on one CPU core.
    """

    name: ClassVar[str] = "synthetic"
    CLASSES: ClassVar[tuple[str, ...]] = SYNTHETIC_CLASSES
    STATS: ClassVar[dict[str, int | None]] = {"train": 960, "test": 240, "val": 240}
    STATS_WORD: ClassVar[str] = "default"
    up_axis = "z"

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        num_points: int = 512,
        *,
        normals: bool = True,
        transform: Transform | None = None,
        normalize: bool | None = None,
        samples_per_class: int | None = None,
        seed: int = 0,
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            root, split, num_points, normals=normals, transform=transform, normalize=normalize
        )
        if split not in _SPLIT_IDS:
            raise ValueError(f"synthetic: split must be one of {tuple(_SPLIT_IDS)}, got {split!r}")
        spc = (
            samples_per_class if samples_per_class is not None else (80 if split == "train" else 20)
        )
        if spc < 1:
            raise ValueError(f"samples_per_class must be >= 1, got {spc}")
        self.samples_per_class = int(spc)
        self.seed = int(seed)
        self.classes = list(self.CLASSES)
        self.format = "generated"
        if cache_dir is None and self.root is not None:
            cache_dir = self.root
        cdir = resolve_cache_dir(None, self.name, cache_dir, cache)
        if cdir is not None:
            Path(cdir).mkdir(parents=True, exist_ok=True)
        settings = {
            "dataset": self.name,
            "split": split,
            "num_points": self.num_points,
            "samples_per_class": self.samples_per_class,
            "seed": self.seed,
        }
        arrays, self.cache_path = cached_arrays(
            cdir,
            f"{self.name}_{split}",
            settings,
            "generated",
            lambda: generate(self.num_points, self.samples_per_class, self.seed, split),
        )
        self._xyz, self._normals = arrays["xyz"], arrays["normals"]
        self._labels = arrays["labels"]
        self.names = [
            f"{self.classes[c]}_{i % self.samples_per_class:04d}"
            for i, c in enumerate(self._labels)
        ]

    def extra_repr(self) -> str:
        return f"seed={self.seed}, {self.samples_per_class}/class"
