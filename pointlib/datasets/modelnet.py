"""ModelNet40 / ModelNet10 in all three released forms.

``root`` is the folder as released; the format is detected from its contents:

* ``"txt"`` — ``modelnet40_normal_resampled``: ``modelnet40_shape_names.txt``,
  ``modelnet{40,10}_{train,test}.txt`` and ``<class>/<class>_<nnnn>.txt`` with rows
  ``x,y,z,nx,ny,nz`` (any number of rows; the release has 10,000).
* ``"h5"`` — ``modelnet40_ply_hdf5_2048``: ``ply_data_{train,test}<k>.h5`` (keys ``data``,
  ``label``, optional ``normal``), listed by ``{split}_files.txt`` when present; names from
  ``shape_names.txt`` (else the official 40). Other file names: pass ``h5_files=``.
* ``"off"`` — the raw meshes ``ModelNet40/<class>/{train,test}/<class>_<nnnn>.off``: sampled
  area-weighted with face normals (``mesh_samples`` points, seeded per file), then subsampled.

Every cloud is reduced to ``num_points`` once (``sampling="fps"``, FPS from index 0, or
``"first"``/``"random"``) and cached. Per item xyz are centred and scaled to the unit sphere
(spec §4.1); normals are left untouched. ModelNet10 reads the ``modelnet10_*`` lists of the txt
release, or filters the ModelNet40 lists/h5 labels to its 10 classes.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pointlib.datasets._cached import load_cached, resolve_cache_dir
from pointlib.datasets._h5 import check_count, check_labels, check_normals, check_points, read_h5
from pointlib.datasets._points import (
    check_sampling,
    load_sampled,
    read_text,
    read_txt_points,
    sample_indices,
)
from pointlib.datasets.base import DatasetError, DatasetNotFoundError, PointCloudDataset, Transform

MODELNET40_CLASSES: tuple[str, ...] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard",
    "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio",
    "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox",
)  # fmt: skip
MODELNET10_CLASSES: tuple[str, ...] = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table",
    "toilet",
)  # fmt: skip

FORMATS = ("txt", "h5", "off")


def _read_lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in read_text(path).splitlines() if ln.strip()]
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: required list file is missing") from None


def detect_modelnet_format(root: Path) -> str:
    """``"txt"``, ``"h5"`` or ``"off"`` from the contents of ``root`` (see module doc)."""
    if any(root.glob("modelnet*_shape_names.txt")) or any(root.glob("modelnet*_train.txt")):
        return "txt"
    if any(root.glob("*.h5")):
        return "h5"
    if any(root.glob("*/train/*.off")) or any(root.glob("*/test/*.off")):
        return "off"
    raise DatasetError(
        f"{root}: not a ModelNet folder: expected modelnet40_shape_names.txt (normal_resampled "
        "txt), *.h5 (ply_hdf5_2048) or <class>/{train,test}/*.off (raw meshes)"
    )


class ModelNet40(PointCloudDataset):
    """ModelNet40 classification (12,311 CAD models, 40 classes).

    Args:
        root: the released folder (format detected, or forced with ``format=``).
        split: ``"train"`` or ``"test"``.
        num_points: points per cloud (default 1024).
        normals: include ``normals`` in items. (default: ``True``)
        transform: callable on the item dict.
        normalize: centre + unit sphere per item. (default: ``True``)
        sampling: ``"fps"``, ``"first"`` or ``"random"``. (default: ``"fps"``)
        format: ``"txt"``, ``"h5"``, ``"off"`` or ``None`` (detect).
        h5_files: h5 file names (relative to ``root``) to read instead of the split's files.
        mesh_samples: surface points drawn per mesh before subsampling (OFF). (default: 10000)
        seed: seed for mesh sampling, random sampling and short-shape padding. (default: 0)
        cache_dir: cache folder (default: see :func:`~pointlib.datasets.cache.default_cache_dir`).
        cache: ``False`` disables the cache.

    Items: ``xyz (N, 3)``, ``normals (N, 3)``, ``label`` (index into :attr:`classes`).
    """

    name: ClassVar[str] = "modelnet40"
    CLASSES: ClassVar[tuple[str, ...]] = MODELNET40_CLASSES
    STATS: ClassVar[dict[str, int | None]] = {"train": 9843, "test": 2468}
    STATS_H5: ClassVar[dict[str, int | None]] = {"train": 9840, "test": 2468}
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "test")
    up_axis = "y"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        num_points: int = 1024,
        *,
        normals: bool = True,
        transform: Transform | None = None,
        normalize: bool | None = None,
        sampling: str = "fps",
        format: str | None = None,
        h5_files: list[str] | None = None,
        mesh_samples: int = 10000,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__(
            root, split, num_points, normals=normals, transform=transform, normalize=normalize
        )
        if split not in self.SPLITS:
            raise ValueError(f"{self.name}: split must be one of {self.SPLITS}, got {split!r}")
        root_p = self._require_root()
        fmt = format or detect_modelnet_format(root_p)
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.format = fmt
        self.classes = list(self.CLASSES)
        self.sampling = check_sampling(sampling)
        self.seed = int(seed)
        self._cache_dir = resolve_cache_dir(root_p, self.name, cache_dir, cache)
        settings: dict[str, Any] = {
            "dataset": self.name,
            "format": fmt,
            "split": split,
            "num_points": self.num_points,
            "sampling": sampling,
            "seed": self.seed,
        }
        if fmt == "txt":
            names, sources, build = self._plan_txt(root_p)
        elif fmt == "h5":
            self.STATS = self.STATS_H5  # type: ignore[misc]  # official h5 sizes differ
            names, sources, build = self._plan_h5(root_p, h5_files)
            settings["h5_files"] = [Path(s).name for s in sources]
        else:
            settings["mesh_samples"] = int(mesh_samples)
            names, sources, build = self._plan_off(root_p, int(mesh_samples))
        arrays, self.cache_path = load_cached(
            self._cache_dir, f"{self.name}_{fmt}_{split}", settings, sources, build
        )
        self._xyz = arrays["xyz"]
        self._normals = arrays.get("normals")
        if self.normals and self._normals is None:
            raise DatasetError(f"{root_p}: these files carry no normals; use normals=False")
        self._labels = arrays["labels"].astype(np.int64)
        self.names = [str(n) for n in arrays["names"]] if "names" in arrays else names

    # -- txt -------------------------------------------------------------------------------------
    def _list_file(self, root: Path, kind: str) -> tuple[Path, bool]:
        """The list ``modelnet{K}_{kind}.txt``; ``(path, filtered)`` falls back to ModelNet40's."""
        k = len(self.CLASSES)
        own = root / f"modelnet{k}_{kind}.txt"
        if own.is_file() or k == 40:
            return own, False
        return root / f"modelnet40_{kind}.txt", True

    def _plan_txt(self, root: Path):
        names_file, _ = self._list_file(root, "shape_names")
        if names_file.is_file():
            listed = _read_lines(names_file)
            wanted = (
                [c for c in listed if c in self.CLASSES]
                if len(self.CLASSES) != len(listed)
                else listed
            )
            if sorted(wanted) != sorted(self.CLASSES):
                raise DatasetError(f"{names_file}: class names do not match {self.name}")
            self.classes = wanted
        split_file, filtered = self._list_file(root, self.split)
        ids = _read_lines(split_file)
        index = {c: i for i, c in enumerate(self.classes)}
        items: list[tuple[str, int, Path]] = []
        for sid in ids:
            cls = sid.rsplit("_", 1)[0]
            if cls not in index:
                if filtered:
                    continue
                raise DatasetError(f"{split_file}: shape {sid!r} has unknown class {cls!r}")
            items.append((sid, index[cls], root / cls / f"{sid}.txt"))
        if not items:
            raise DatasetError(f"{split_file}: no shapes of {self.name} listed")
        for _, _, p in items:
            if not p.is_file():
                raise DatasetNotFoundError(f"{p}: listed in {split_file.name} but missing")
        names = [s for s, _, _ in items]

        def build() -> dict[str, np.ndarray]:
            pts = load_sampled(
                lambda i: read_txt_points(items[i][2], 6),
                len(items),
                self.num_points,
                self.sampling,
                self.seed,
                names,
            )
            return self._pack(pts, np.array([lab for _, lab, _ in items]), names)

        return names, [split_file] + [p for _, _, p in items], build

    # -- h5 --------------------------------------------------------------------------------------
    def _h5_paths(self, root: Path, h5_files: list[str] | None) -> list[Path]:
        if h5_files is not None:
            paths = [root / f for f in h5_files]
        else:
            listing = root / f"{self.split}_files.txt"
            if listing.is_file():
                paths = [root / Path(ln).name for ln in _read_lines(listing)]
            else:

                def num(p: Path) -> int:
                    m = re.search(r"(\d+)\.h5$", p.name)
                    return int(m.group(1)) if m else 0

                paths = sorted(root.glob(f"*{self.split}*.h5"), key=lambda p: (num(p), p.name))
            if not paths:
                raise DatasetNotFoundError(
                    f"{root}: no h5 files for split {self.split!r} (expected "
                    f"ply_data_{self.split}<k>.h5 or {self.split}_files.txt; or pass h5_files=)"
                )
        for p in paths:
            if not p.is_file():
                raise DatasetNotFoundError(f"{p}: h5 file is missing")
        return paths

    def _plan_h5(self, root: Path, h5_files: list[str] | None):
        paths = self._h5_paths(root, h5_files)
        names_file = root / "shape_names.txt"
        raw_classes = _read_lines(names_file) if names_file.is_file() else list(MODELNET40_CLASSES)
        if len(self.CLASSES) == len(raw_classes):
            self.classes = raw_classes

        def build() -> dict[str, np.ndarray]:
            xyz, nrm, lab, sid = [], [], [], []
            for p in paths:
                a = read_h5(p, ("data", "label"), ("normal", "shape_id"), strings=("shape_id",))
                d, lb = a["data"], a["label"].reshape(-1)
                if d.ndim != 3 or d.shape[2] != 3 or len(lb) != len(d):
                    raise DatasetError(
                        f"{p}: 'data' must be (M, N, 3) with one label per shape,"
                        f" got {d.shape} and {len(lb)} labels"
                    )
                check_count(d.shape[0] * d.shape[1], f"{p}: 'data' {d.shape}")
                d = check_points(d, f"{p}: 'data'")
                n = a.get("normal")
                if n is not None:
                    if n.shape != d.shape:
                        raise DatasetError(f"{p}: 'normal' shape {n.shape} != 'data' {d.shape}")
                    n = check_normals(n, f"{p}: 'normal'")
                ids = a.get("shape_id")
                if ids is None:
                    ids = [f"{p.stem}/{i}" for i in range(len(d))]
                elif len(ids) != len(d):
                    raise DatasetError(f"{p}: {len(ids)} 'shape_id' entries for {len(d)} shapes")
                xyz.append(d)
                nrm.append(n)
                lab.append(check_labels(lb, len(raw_classes), str(p)))
                sid.extend(str(s) for s in ids)
            labels = np.concatenate(lab)
            data = np.concatenate(xyz)
            has_n = all(n is not None for n in nrm)
            normals = np.concatenate(nrm) if has_n else None  # type: ignore[arg-type]
            if self.classes != raw_classes:  # ModelNet10 from ModelNet40 h5: filter + remap
                remap = np.array(
                    [self.classes.index(c) if c in self.classes else -1 for c in raw_classes]
                )
                labels = remap[labels]
                keep = labels >= 0
                data, labels = data[keep], labels[keep]
                sid[:] = [s for s, k in zip(sid, keep) if k]
                normals = normals[keep] if normals is not None else None
            check_count(len(labels), f"{', '.join(str(p) for p in paths)} ({self.name})")
            clouds = list(np.concatenate([data, normals], -1) if normals is not None else data)
            return self._subsample(clouds, labels, sid)

        return [], paths, build

    # -- off -------------------------------------------------------------------------------------
    def _plan_off(self, root: Path, mesh_samples: int):
        from pointlib.datasets._mesh import mesh_points

        items: list[tuple[str, int, Path]] = []
        present = sorted(p.parent.name for p in root.glob(f"*/{self.split}"))
        unknown = [c for c in present if c not in self.CLASSES and len(self.CLASSES) == 40]
        if unknown:
            raise DatasetError(f"{root}: unknown class folder(s) {unknown}")
        for lab, cls in enumerate(self.classes):
            for p in sorted((root / cls / self.split).glob("*.off")):
                items.append((p.stem, lab, p))
        if not items:
            raise DatasetNotFoundError(f"{root}: no <class>/{self.split}/*.off meshes")
        names = [s for s, _, _ in items]

        def load(i: int) -> np.ndarray:
            sid, _, p = items[i]
            x, n = mesh_points(p, mesh_samples, self.seed * (1 << 32) + zlib.crc32(sid.encode()))
            return np.concatenate([x, n], -1)

        def build() -> dict[str, np.ndarray]:
            pts = load_sampled(load, len(items), self.num_points, self.sampling, self.seed, names)
            return self._pack(pts, np.array([lab for _, lab, _ in items]), names)

        return names, [p for _, _, p in items], build

    # -- shared ------------------------------------------------------------------------------
    def _subsample(
        self, clouds: list[np.ndarray], labels: np.ndarray, names: list[str]
    ) -> dict[str, np.ndarray]:
        idx = sample_indices(clouds, self.num_points, self.sampling, self.seed, names)
        pts = (
            np.stack([c[i] for c, i in zip(clouds, idx)])
            if clouds
            else np.zeros((0, self.num_points, 6), np.float32)
        )
        return self._pack(pts, labels, names)

    @staticmethod
    def _pack(pts: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        out = {
            "xyz": np.ascontiguousarray(pts[..., :3], np.float32),
            "labels": np.asarray(labels, np.int64),
            "names": np.array(names, dtype=str),
        }
        if pts.shape[-1] >= 6:
            out["normals"] = np.ascontiguousarray(pts[..., 3:6], np.float32)
        return out

    def extra_repr(self) -> str:
        return f"sampling={self.sampling!r}"


class ModelNet10(ModelNet40):
    """ModelNet10 (4,899 CAD models, 10 classes); same formats and arguments as ModelNet40."""

    name: ClassVar[str] = "modelnet10"
    CLASSES: ClassVar[tuple[str, ...]] = MODELNET10_CLASSES
    STATS: ClassVar[dict[str, int | None]] = {"train": 3991, "test": 908}
    STATS_H5: ClassVar[dict[str, int | None]] = {"train": None, "test": None}
