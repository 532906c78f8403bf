"""ScanObjectNN (real scans, 15 classes) from the official h5 files.

``root`` is the ``h5_files`` folder as released (holding ``main_split/`` and ``main_split_nobg/``),
or one of those two folders directly. Variants and files:

===========  ====================  ==========================================================
variant      folder                files
===========  ====================  ==========================================================
OBJ_ONLY     ``main_split_nobg``   ``{training,test}_objectdataset.h5``
OBJ_BG       ``main_split``        ``{training,test}_objectdataset.h5``
PB_T50_RS    ``main_split``        ``{training,test}_objectdataset_augmentedrot_scale75.h5``
===========  ====================  ==========================================================

Keys ``data (M, 2048, 3)``, ``label (M,)`` (``mask`` is ignored). Clouds are reduced to
``num_points`` by FPS from index 0 (as the recipe's pointops FPS, spec §4.2) and, the scans
having no normals, normals are **estimated** once (k=32 weighted local PCA, i.e. the LRA, with a
rotation-invariant sign: oriented away from the cloud centroid; ``normal_sign="raw"`` keeps the
eigensolver's sign as the reference code; see :func:`pointlib.datasets._points.estimate_normals`)
and cached. xyz are used as stored
(``normalize=False`` by default, like the recipe).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pointlib.datasets._cached import load_cached, resolve_cache_dir
from pointlib.datasets._h5 import check_count, check_labels, check_points, read_h5
from pointlib.datasets._points import (
    NORMAL_SIGNS,
    check_sampling,
    estimate_normals,
    sample_indices,
)
from pointlib.datasets.base import DatasetError, DatasetNotFoundError, PointCloudDataset, Transform

SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
    "pillow", "sink", "sofa", "toilet",
)  # fmt: skip

VARIANTS: dict[str, tuple[str, str]] = {
    "OBJ_ONLY": ("main_split_nobg", "objectdataset"),
    "OBJ_BG": ("main_split", "objectdataset"),
    "PB_T50_RS": ("main_split", "objectdataset_augmentedrot_scale75"),
}
_SPLIT_PREFIX = {"train": "training", "test": "test"}


class ScanObjectNN(PointCloudDataset):
    """ScanObjectNN classification.

    Args:
        root: the ``h5_files`` folder (or its ``main_split``/``main_split_nobg`` subfolder).
        split: ``"train"`` or ``"test"``.
        num_points: points per cloud (default 1024; the files hold 2048).
        variant: ``"OBJ_ONLY"``, ``"OBJ_BG"`` or ``"PB_T50_RS"`` (default, the paper's "hardest").
        normal_k: neighbours for normal estimation. (default: 32)
        normal_sign: sign of the estimated normals: ``"invariant"`` (default: away from the
            cloud centroid, rotation invariant) or ``"raw"`` (the eigensolver's sign, as the
            reference code's LRA normals; use it with ``faithful=True`` models to reproduce the
            reference inputs).
        normals, transform, normalize, sampling, seed, cache_dir, cache: as for ModelNet40.
    """

    name: ClassVar[str] = "scanobjectnn"
    CLASSES: ClassVar[tuple[str, ...]] = SCANOBJECTNN_CLASSES
    STATS_BY_VARIANT: ClassVar[dict[str, dict[str, int | None]]] = {
        "OBJ_ONLY": {"train": 2309, "test": 581},
        "OBJ_BG": {"train": 2309, "test": 581},
        "PB_T50_RS": {"train": 11416, "test": 2882},
    }
    STATS: ClassVar[dict[str, int | None]] = STATS_BY_VARIANT["PB_T50_RS"]
    normalize_default: ClassVar[bool] = False
    up_axis = "y"  # scans are stored with y up (rotated variants only about that axis)

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        num_points: int = 1024,
        *,
        variant: str = "PB_T50_RS",
        normals: bool = True,
        transform: Transform | None = None,
        normalize: bool | None = None,
        sampling: str = "fps",
        normal_k: int = 32,
        normal_sign: str = "invariant",
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__(
            root, split, num_points, normals=normals, transform=transform, normalize=normalize
        )
        if split not in _SPLIT_PREFIX:
            raise ValueError(f"{self.name}: split must be 'train' or 'test', got {split!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.STATS = self.STATS_BY_VARIANT[variant]  # type: ignore[misc]
        self.classes = list(self.CLASSES)
        self.format = "h5"
        self.sampling = check_sampling(sampling)
        if normal_sign not in NORMAL_SIGNS:
            raise ValueError(f"normal_sign must be one of {NORMAL_SIGNS}, got {normal_sign!r}")
        self.normal_sign = normal_sign
        self.seed = int(seed)
        root_p = self._require_root()
        path = self.h5_path(root_p, split, variant)
        settings: dict[str, Any] = {
            "dataset": self.name,
            "variant": variant,
            "split": split,
            "num_points": self.num_points,
            "sampling": sampling,
            "seed": self.seed,
            "normal_k": int(normal_k),
            "normals_estimated": bool(normals),
        }
        if normal_sign != "invariant":  # the default keeps the existing caches' key
            settings["normal_sign"] = normal_sign
        cdir = resolve_cache_dir(root_p, self.name, cache_dir, cache)
        arrays, self.cache_path = load_cached(
            cdir,
            f"{self.name}_{variant}_{split}",
            settings,
            [path],
            lambda: self._build(path, int(normal_k), bool(normals)),
        )
        self._xyz = arrays["xyz"]
        self._normals = arrays.get("normals")
        self._labels = arrays["labels"]
        self.names = [f"{path.name}/{i}" for i in range(len(self._labels))]

    @staticmethod
    def h5_path(root: Path, split: str, variant: str) -> Path:
        """The official file for ``split``/``variant`` under ``root`` (raises if missing)."""
        folder, stem = VARIANTS[variant]
        fname = f"{_SPLIT_PREFIX[split]}_{stem}.h5"
        for cand in (root / folder / fname, root / fname):
            if cand.is_file():
                return cand
        raise DatasetNotFoundError(f"{root / folder / fname}: ScanObjectNN {variant} file missing")

    def _build(self, path: Path, k: int, with_normals: bool) -> dict[str, np.ndarray]:
        a = read_h5(path, ("data", "label"))
        data, labels = a["data"], a["label"].reshape(-1)
        if data.ndim != 3 or data.shape[2] < 3 or len(labels) != len(data):
            raise DatasetError(
                f"{path}: 'data' must be (M, N, 3) with one label per cloud, got "
                f"{data.shape} and {len(labels)} labels"
            )
        check_count(data.shape[0] * data.shape[1], f"{path}: 'data' {data.shape}")
        data = check_points(data[..., :3], f"{path}: 'data'")
        labels = check_labels(labels, self.num_classes, str(path))
        idx = sample_indices(list(data), self.num_points, self.sampling, self.seed)
        xyz = np.ascontiguousarray(np.take_along_axis(data, idx[..., None], axis=1))
        out = {"xyz": xyz, "labels": labels}
        if with_normals:
            out["normals"] = estimate_normals(xyz, k=k, sign=self.normal_sign)
        return out

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}"
