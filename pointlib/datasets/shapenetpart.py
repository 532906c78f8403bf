"""ShapeNetPart (``shapenetcore_partanno_segmentation_benchmark_v0_normal``) part segmentation.

Layout (``root`` = that folder): ``synsetoffset2category.txt`` (``<Name>\\t<synset>``),
``<synset>/<id>.txt`` with rows ``x y z nx ny nz part`` (global part ids 0..49) and
``train_test_split/shuffled_{train,val,test}_file_list.json`` listing ``shape_data/<synset>/<id>``.
Splits: ``train``, ``val``, ``test`` and ``trainval`` (= train + val, the recipe's training set).

Each shape (about 2,500 rows; it varies) is reduced to ``num_points`` (default 2048) once and
cached: ``sampling="fps"`` (default), ``"first"`` or ``"random"``; shapes with fewer rows repeat
rows by a seeded choice (the original loader always draws 2,048 indices *with* replacement under
``np.random.seed(2)``, spec §4.4, which this does not copy). Per item xyz go to the unit sphere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pointlib.datasets._cached import load_cached, resolve_cache_dir
from pointlib.datasets._points import check_sampling, load_sampled, read_text, read_txt_points
from pointlib.datasets.base import DatasetError, DatasetNotFoundError, PointCloudDataset, Transform

SHAPENETPART_CATEGORIES: dict[str, str] = {
    "Airplane": "02691156", "Bag": "02773838", "Cap": "02954340", "Car": "02958343",
    "Chair": "03001627", "Earphone": "03261776", "Guitar": "03467667", "Knife": "03624134",
    "Lamp": "03636649", "Laptop": "03642806", "Motorbike": "03790512", "Mug": "03797390",
    "Pistol": "03948459", "Rocket": "04099429", "Skateboard": "04225987", "Table": "04379243",
}  # fmt: skip
"""Category name -> ShapeNet synset id, in the official (label) order."""

SHAPENETPART_SEG_CLASSES: dict[str, list[int]] = {
    "Airplane": [0, 1, 2, 3], "Bag": [4, 5], "Cap": [6, 7], "Car": [8, 9, 10, 11],
    "Chair": [12, 13, 14, 15], "Earphone": [16, 17, 18], "Guitar": [19, 20, 21],
    "Knife": [22, 23], "Lamp": [24, 25, 26, 27], "Laptop": [28, 29],
    "Motorbike": [30, 31, 32, 33, 34, 35], "Mug": [36, 37], "Pistol": [38, 39, 40],
    "Rocket": [41, 42, 43], "Skateboard": [44, 45, 46], "Table": [47, 48, 49],
}  # fmt: skip
"""Category name -> its global part ids (16 categories, 50 parts)."""

NUM_PARTS = 50
PART_TO_CATEGORY: tuple[int, ...] = tuple(
    ci for ci, parts in enumerate(SHAPENETPART_SEG_CLASSES.values()) for _ in parts
)
"""Global part id -> category index."""


class ShapeNetPart(PointCloudDataset):
    """ShapeNetPart: 16,881 shapes, 16 categories, 50 parts.

    Args:
        root: the ``..._v0_normal`` folder.
        split: ``"trainval"``, ``"train"``, ``"val"`` or ``"test"``.
        num_points: points per shape (default 2048).
        categories: restrict to these category names (labels stay the global 0..15).
        normals, transform, normalize, sampling, seed, cache_dir, cache: as for ModelNet40.

    Items: ``xyz``, ``normals``, ``parts (N,)`` int64 (0..49), ``category`` and ``label``
    (the same category index into :attr:`classes`).
    """

    name: ClassVar[str] = "shapenetpart"
    task: ClassVar[str] = "segmentation"
    CLASSES: ClassVar[tuple[str, ...]] = tuple(SHAPENETPART_CATEGORIES)
    SEG_CLASSES: ClassVar[dict[str, list[int]]] = SHAPENETPART_SEG_CLASSES
    STATS: ClassVar[dict[str, int | None]] = {
        "trainval": 14007,
        "train": 12137,
        "val": 1870,
        "test": 2874,
    }
    num_parts: int = NUM_PARTS
    up_axis = "y"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "trainval",
        num_points: int = 2048,
        *,
        normals: bool = True,
        transform: Transform | None = None,
        normalize: bool | None = None,
        sampling: str = "fps",
        categories: list[str] | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__(
            root, split, num_points, normals=normals, transform=transform, normalize=normalize
        )
        if split not in self.STATS:
            raise ValueError(
                f"{self.name}: split must be one of {tuple(self.STATS)}, got {split!r}"
            )
        root_p = self._require_root()
        self.format = "txt"
        self.sampling = check_sampling(sampling)
        self.seed = int(seed)
        self.classes = list(self.CLASSES)
        synset_to_cat = self._read_categories(root_p)
        if categories is not None:
            unknown = sorted(set(categories) - set(self.CLASSES))
            if unknown:
                raise ValueError(f"unknown ShapeNetPart categories {unknown}")
        items: list[tuple[str, int, Path]] = []
        lists = []
        for part in ("train", "val") if split == "trainval" else (split,):
            lst = root_p / "train_test_split" / f"shuffled_{part}_file_list.json"
            lists.append(lst)
            for entry in self._read_json(lst):
                bits = entry.strip("/").split("/")
                if len(bits) < 2:
                    raise DatasetError(f"{lst}: malformed entry {entry!r}")
                synset, sid = bits[-2], bits[-1]
                if synset not in synset_to_cat:
                    raise DatasetError(f"{lst}: entry {entry!r} has unknown synset {synset}")
                cat = synset_to_cat[synset]
                if categories is not None and self.classes[cat] not in categories:
                    continue
                p = root_p / synset / f"{sid}.txt"
                if not p.is_file():
                    raise DatasetNotFoundError(f"{p}: listed in {lst.name} but missing")
                items.append((f"{synset}/{sid}", cat, p))
        if not items:
            what = f"categories {categories}" if categories is not None else "shapes"
            raise DatasetError(
                f"{', '.join(str(p) for p in lists)}: no {what} listed for split {split!r}"
            )
        self.names = [n for n, _, _ in items]
        settings: dict[str, Any] = {
            "dataset": self.name,
            "split": split,
            "num_points": self.num_points,
            "sampling": sampling,
            "seed": self.seed,
            "categories": categories,
        }
        cdir = resolve_cache_dir(root_p, self.name, cache_dir, cache)
        arrays, self.cache_path = load_cached(
            cdir,
            f"{self.name}_{split}",
            settings,
            lists + [p for _, _, p in items],
            lambda: self._build(items),
        )
        self._xyz = arrays["xyz"]
        self._normals = arrays["normals"]
        self._labels = arrays["labels"].astype(np.int64)
        self._parts = arrays["parts"].astype(np.int64)

    @staticmethod
    def _read_categories(root: Path) -> dict[str, int]:
        f = root / "synsetoffset2category.txt"
        try:
            rows = [ln.split() for ln in read_text(f).splitlines() if ln.strip()]
        except FileNotFoundError:
            raise DatasetNotFoundError(f"{f}: missing (is root the _v0_normal folder?)") from None
        out = {}
        for row in rows:
            if len(row) != 2 or row[0] not in SHAPENETPART_CATEGORIES:
                raise DatasetError(f"{f}: unexpected line {' '.join(row)!r}")
            out[row[1]] = list(SHAPENETPART_CATEGORIES).index(row[0])
        return out

    @staticmethod
    def _read_json(path: Path) -> list[str]:
        try:
            data = json.loads(read_text(path))
        except FileNotFoundError:
            raise DatasetNotFoundError(f"{path}: split list is missing") from None
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise DatasetError(f"{path}: expected a JSON list of 'shape_data/<synset>/<id>'")
        return data

    def _build(self, items: list[tuple[str, int, Path]]) -> dict[str, np.ndarray]:
        def load(i: int) -> np.ndarray:
            _, cat, p = items[i]
            c = read_txt_points(p, 7)
            parts = c[:, 6]
            allowed = SHAPENETPART_SEG_CLASSES[self.classes[cat]]
            ok = np.isin(parts, allowed)
            if not ok.all():
                raise DatasetError(
                    f"{p}: part label {parts[~ok][0]:g} is not a part of "
                    f"{self.classes[cat]} {allowed}"
                )
            return c

        names = [n for n, _, _ in items]
        pts = load_sampled(load, len(items), self.num_points, self.sampling, self.seed, names)
        return {
            "xyz": np.ascontiguousarray(pts[..., :3]),
            "normals": np.ascontiguousarray(pts[..., 3:6]),
            "parts": pts[..., 6].astype(np.int64),
            "labels": np.array([c for _, c, _ in items], np.int64),
        }

    def extra_repr(self) -> str:
        return f"{self.num_parts} parts, sampling={self.sampling!r}"
