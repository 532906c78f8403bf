"""The dataset contract shared by every loader.

Every dataset is a ``torch.utils.data.Dataset`` built as
``Dataset(root, split, num_points, *, normals=True, transform=None, ...)`` whose items are dicts:

==============  ===============  ==========================================================
key             dtype / shape    meaning
==============  ===============  ==========================================================
``xyz``         float32 (N, 3)   coordinates (per-item unit sphere where the recipe says so)
``normals``     float32 (N, 3)   unit normals; **absent** when ``normals=False``
``label``       int64 ()         class index into ``dataset.classes``
``parts``       int64 (N,)       segmentation only: global part id (ShapeNetPart 0..49)
``category``    int64 ()         segmentation only: object category (== ``label``)
==============  ===============  ==========================================================

``transform`` (if given) receives the dict and returns a dict. Preprocessed arrays are cached
once per settings (see :mod:`pointlib.datasets.cache`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from pointlib.transforms import normalize_unit_sphere

__all__ = ["DatasetError", "DatasetNotFoundError", "Item", "PointCloudDataset"]

Item = dict[str, torch.Tensor]
Transform = Callable[[Item], Item]


class DatasetError(ValueError):
    """Malformed or inconsistent dataset files; the message names the file and the problem."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The root folder, a split list or another required file does not exist."""


class PointCloudDataset(Dataset):
    """Base class: holds preprocessed arrays and serves item dicts.

    Subclasses fill ``self._xyz (M, N, 3)``, ``self._normals (M, N, 3) | None``,
    ``self._labels (M,)``, optionally ``self._parts (M, N)``, and ``self.names`` (one id per
    item), then set ``self.format`` and ``self.cache_path``.

    Attributes:
        classes: class names, index = label. ``num_classes == len(classes)``.
        up_axis: the dataset's up axis (``"x"``, ``"y"`` or ``"z"``) for "z"-protocol rotations.
        STATS: official sizes per split (``None`` where unknown).
    """

    name: ClassVar[str] = "dataset"
    STATS: ClassVar[dict[str, int | None]] = {}
    up_axis: str = "y"
    task: ClassVar[str] = "classification"
    normalize_default: ClassVar[bool] = True
    STATS_WORD: ClassVar[str] = "official"  # how __repr__ names STATS

    classes: list[str]
    names: list[str]
    format: str
    cache_path: Path | None

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        split: str,
        num_points: int,
        *,
        normals: bool = True,
        transform: Transform | None = None,
        normalize: bool | None = None,
    ) -> None:
        super().__init__()
        if (
            isinstance(num_points, bool)
            or not isinstance(num_points, (int, np.integer))
            or num_points < 1
        ):
            raise ValueError(f"num_points must be a positive int, got {num_points!r}")
        self.root = Path(root) if root is not None else None
        self.split = split
        self.num_points = int(num_points)
        self.normals = bool(normals)
        self.transform = transform
        self.normalize = self.normalize_default if normalize is None else bool(normalize)
        self._xyz = np.zeros((0, self.num_points, 3), np.float32)
        self._normals: np.ndarray | None = None
        self._labels = np.zeros(0, np.int64)
        self._parts: np.ndarray | None = None
        self.names = []
        self.format = "?"
        self.cache_path = None

    # -- helpers for subclasses -------------------------------------------------------------
    def _require_root(self) -> Path:
        if self.root is None or not self.root.is_dir():
            raise DatasetNotFoundError(
                f"{self.name}: root folder {self.root} does not exist "
                f"(see docs/datasets.md or pointlib.datasets.download)"
            )
        return self.root

    def _check_labels(self, labels: np.ndarray, where: str) -> np.ndarray:
        """``(M,)`` int64 labels after checking they are integers in ``[0, num_classes)``."""
        from pointlib.datasets._h5 import check_labels

        return check_labels(labels, self.num_classes, where)

    # -- public API ----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        """``(M,)`` int64 labels of all items (for class-balanced sampling, metrics)."""
        return self._labels

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> Item:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        xyz = torch.from_numpy(np.array(self._xyz[index], dtype=np.float32))
        if self.normalize:
            xyz = normalize_unit_sphere(xyz)
        item: Item = {"xyz": xyz}
        if self.normals and self._normals is not None:
            item["normals"] = torch.from_numpy(np.array(self._normals[index], dtype=np.float32))
        item["label"] = torch.tensor(int(self._labels[index]), dtype=torch.int64)
        if self._parts is not None:
            item["parts"] = torch.from_numpy(self._parts[index].astype(np.int64))
            item["category"] = item["label"].clone()
        if self.transform is not None:
            item = self.transform(item)
        return item

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        present = len(np.unique(self._labels))
        official = self.STATS.get(self.split)
        size = f"{len(self)} shapes"
        if official and official != len(self):
            size += f" ({self.STATS_WORD} {official})"
        parts = [
            f"split={self.split!r}",
            size,
            f"{present}/{self.num_classes} classes present",
            f"{self.num_points} points",
            "normals" if self.normals else "no normals",
            f"format={self.format!r}",
            f"up={self.up_axis!r}",
        ]
        extra = self.extra_repr()
        if extra:
            parts.append(extra)
        parts.append(f"root='{self.root}'")
        return f"{type(self).__name__}({', '.join(parts)})"

    def summary(self) -> dict[str, Any]:
        """Machine-readable description of what was loaded."""
        return {
            "name": self.name,
            "split": self.split,
            "size": len(self),
            "num_classes": self.num_classes,
            "num_points": self.num_points,
            "normals": self.normals,
            "format": self.format,
            "root": str(self.root),
            "cache": str(self.cache_path) if self.cache_path else None,
        }
