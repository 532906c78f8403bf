"""Datasets: every benchmark format as released, plus an embedded synthetic default.

==================  =====================================================  ==============
name                class                                                  task
==================  =====================================================  ==============
``modelnet40``      :class:`ModelNet40` (txt / h5 / OFF, detected)         classification
``modelnet10``      :class:`ModelNet10`                                    classification
``scanobjectnn``    :class:`ScanObjectNN` (OBJ_ONLY / OBJ_BG / PB_T50_RS)  classification
``shapenetpart``    :class:`ShapeNetPart`                                  part seg.
``fg3d``            :class:`FG3D` (airplane / car / chair)                 classification
``synthetic``       :class:`SyntheticShapes` (generated, no download)      classification
==================  =====================================================  ==============

See ``docs/datasets.md`` for layouts, caching and the item contract. Optional packages (h5py,
trimesh) are imported only when a format needs them.
"""

from __future__ import annotations

import os
from typing import Any

from pointlib.datasets.base import DatasetError, DatasetNotFoundError, PointCloudDataset
from pointlib.datasets.collate import collate_points, make_loader
from pointlib.datasets.download import RESOURCES, CorruptArchiveError, DownloadError, download
from pointlib.datasets.fg3d import FG3D, FG3D_NUM_CLASSES
from pointlib.datasets.modelnet import (
    MODELNET10_CLASSES,
    MODELNET40_CLASSES,
    ModelNet10,
    ModelNet40,
)
from pointlib.datasets.scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN
from pointlib.datasets.shapenetpart import (
    NUM_PARTS,
    PART_TO_CATEGORY,
    SHAPENETPART_CATEGORIES,
    SHAPENETPART_SEG_CLASSES,
    ShapeNetPart,
)
from pointlib.datasets.synthetic import SYNTHETIC_CLASSES, SyntheticShapes

DATASETS: dict[str, type[PointCloudDataset]] = {
    "modelnet40": ModelNet40,
    "modelnet10": ModelNet10,
    "scanobjectnn": ScanObjectNN,
    "shapenetpart": ShapeNetPart,
    "fg3d": FG3D,
    "synthetic": SyntheticShapes,
}


def get_dataset(
    name: str, root: str | os.PathLike[str] | None, split: str, **kwargs: Any
) -> PointCloudDataset:
    """Build dataset ``name`` (a key of :data:`DATASETS`, case-insensitive) for ``split``."""
    key = name.lower().replace("-", "").replace("_", "")
    table = {k.replace("_", ""): v for k, v in DATASETS.items()}
    if key not in table:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return table[key](root, split, **kwargs)


__all__ = [
    "DATASETS",
    "FG3D",
    "FG3D_NUM_CLASSES",
    "MODELNET10_CLASSES",
    "MODELNET40_CLASSES",
    "NUM_PARTS",
    "PART_TO_CATEGORY",
    "RESOURCES",
    "SCANOBJECTNN_CLASSES",
    "SHAPENETPART_CATEGORIES",
    "SHAPENETPART_SEG_CLASSES",
    "SYNTHETIC_CLASSES",
    "CorruptArchiveError",
    "DatasetError",
    "DatasetNotFoundError",
    "DownloadError",
    "ModelNet10",
    "ModelNet40",
    "PointCloudDataset",
    "ScanObjectNN",
    "ShapeNetPart",
    "SyntheticShapes",
    "collate_points",
    "download",
    "get_dataset",
    "make_loader",
]
