"""FG3D fine-grained classification (Liu et al. 2021): airplane / car / chair meshes.

Layout assumed (that of the RISurConv loader, ``data_utils/FG3D_DataLoader.py``; the release
itself is a Google-Drive folder without a documented schema): ``root`` holds, per category
``<Cat>`` in ``Airplane``/``Car``/``Chair``,

* ``<Cat>_subcategories.txt`` — one subclass name per line (label = line index),
* ``<Cat>_off_train.txt`` / ``<Cat>_off_test.txt`` — one shape id per line,
  ``<subclass>_<number>`` (the subclass is everything before the last ``_``),
* ``<category>_off/<id>.off`` — the meshes (lower-case category, e.g. ``airplane_off/``).

Meshes are sampled area-weighted with face normals (``mesh_samples`` points, seeded per id;
the original uses Open3D Poisson-disk sampling, which we do not reproduce), reduced to
``num_points`` (FPS by default) and cached; per item xyz go to the unit sphere.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, ClassVar

import numpy as np

from pointlib.datasets._cached import load_cached, resolve_cache_dir
from pointlib.datasets._points import check_sampling, load_sampled, read_text
from pointlib.datasets.base import DatasetError, DatasetNotFoundError, PointCloudDataset, Transform

FG3D_NUM_CLASSES: dict[str, int] = {"airplane": 13, "car": 20, "chair": 33}


class FG3D(PointCloudDataset):
    """FG3D: one of three fine-grained category sets.

    Args:
        root: the FG3D folder (see module doc for the layout).
        split: ``"train"`` or ``"test"``.
        num_points: points per cloud (default 1024).
        category: ``"airplane"`` (13 classes), ``"car"`` (20) or ``"chair"`` (33).
        mesh_samples: surface points drawn per mesh before subsampling. (default: 4096)
        normals, transform, normalize, sampling, seed, cache_dir, cache: as for ModelNet40.

    Class names come from ``<Cat>_subcategories.txt``; a count different from the official one
    raises :class:`DatasetError`, unless ``strict=False``.
    """

    name: ClassVar[str] = "fg3d"
    STATS: ClassVar[dict[str, int | None]] = {"train": None, "test": None}  # sizes not verified
    up_axis = "y"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        num_points: int = 1024,
        *,
        category: str = "airplane",
        normals: bool = True,
        transform: Transform | None = None,
        normalize: bool | None = None,
        sampling: str = "fps",
        mesh_samples: int = 4096,
        seed: int = 0,
        strict: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__(
            root, split, num_points, normals=normals, transform=transform, normalize=normalize
        )
        if split not in ("train", "test"):
            raise ValueError(f"fg3d: split must be 'train' or 'test', got {split!r}")
        if category not in FG3D_NUM_CLASSES:
            raise ValueError(f"category must be one of {tuple(FG3D_NUM_CLASSES)}, got {category!r}")
        from pointlib.datasets._mesh import mesh_points

        self.category = category
        self.format = "off"
        self.sampling = check_sampling(sampling)
        self.seed = int(seed)
        root_p = self._require_root()
        cap = category.capitalize()
        cat_file = root_p / f"{cap}_subcategories.txt"
        list_file = root_p / f"{cap}_off_{split}.txt"
        for f in (cat_file, list_file):
            if not f.is_file():
                raise DatasetNotFoundError(f"{f}: FG3D list file is missing")
        self.classes = [ln.strip() for ln in read_text(cat_file).splitlines() if ln.strip()]
        if strict and len(self.classes) != FG3D_NUM_CLASSES[category]:
            raise DatasetError(
                f"{cat_file}: {len(self.classes)} subcategories, FG3D {category} "
                f"has {FG3D_NUM_CLASSES[category]} (strict=False to accept)"
            )
        index = {c: i for i, c in enumerate(self.classes)}
        items = []
        for sid in (ln.strip() for ln in read_text(list_file).splitlines()):
            if not sid:
                continue
            sub = sid.rsplit("_", 1)[0]
            if sub not in index:
                raise DatasetError(f"{list_file}: shape {sid!r} has unknown subcategory {sub!r}")
            p = root_p / f"{category}_off" / f"{sid}.off"
            if not p.is_file():
                raise DatasetNotFoundError(f"{p}: listed in {list_file.name} but missing")
            items.append((sid, index[sub], p))
        if not items:
            raise DatasetError(f"{list_file}: no shapes listed")
        self.names = [s for s, _, _ in items]
        settings: dict[str, Any] = {
            "dataset": self.name,
            "category": category,
            "split": split,
            "num_points": self.num_points,
            "sampling": sampling,
            "seed": self.seed,
            "mesh_samples": int(mesh_samples),
        }

        def load(i: int) -> np.ndarray:
            sid, _, p = items[i]
            seed_i = self.seed * (1 << 32) + zlib.crc32(sid.encode())
            x, n = mesh_points(p, int(mesh_samples), seed_i)
            return np.concatenate([x, n], -1)

        def build() -> dict[str, np.ndarray]:
            pts = load_sampled(load, len(items), self.num_points, sampling, self.seed, self.names)
            return {
                "xyz": np.ascontiguousarray(pts[..., :3]),
                "normals": np.ascontiguousarray(pts[..., 3:]),
                "labels": np.array([lab for _, lab, _ in items], np.int64),
            }

        cdir = resolve_cache_dir(root_p, self.name, cache_dir, cache)
        arrays, self.cache_path = load_cached(
            cdir,
            f"{self.name}_{category}_{split}",
            settings,
            [cat_file, list_file] + [p for _, _, p in items],
            build,
        )
        self._xyz, self._normals = arrays["xyz"], arrays["normals"]
        self._labels = arrays["labels"]

    def extra_repr(self) -> str:
        return f"category={self.category!r}"
