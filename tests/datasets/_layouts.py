"""Writers of tiny dataset folders in the official layouts (used by conftest and tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pointlib.datasets import MODELNET40_CLASSES, SHAPENETPART_CATEGORIES, SHAPENETPART_SEG_CLASSES


def _cloud(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    xyz = d * np.array([1.0, 0.7, 0.5]) * (1 + 0.1 * rng.random((n, 1)))
    return np.concatenate([xyz, d], 1)


def write_modelnet_txt(
    root: Path,
    rows: int = 80,
    per_class: int = 3,
    classes: tuple[str, ...] = ("airplane", "bathtub", "chair"),
) -> Path:
    """modelnet40_normal_resampled layout: names, split lists, <class>/<id>.txt (6 columns)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    train, test = [], []
    for c in classes:
        (root / c).mkdir(exist_ok=True)
        for i in range(1, per_class + 1):
            sid = f"{c}_{i:04d}"
            np.savetxt(root / c / f"{sid}.txt", _cloud(rng, rows), fmt="%.6f", delimiter=",")
            (train if i < per_class else test).append(sid)
    (root / "modelnet40_train.txt").write_text("\n".join(train) + "\n")
    (root / "modelnet40_test.txt").write_text("\n".join(test) + "\n")
    return root


def write_modelnet_h5(root: Path, n: int = 6, points: int = 64, normals: bool = True) -> Path:
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for split, k in (("train", 0), ("train", 1), ("test", 0)):
        clouds = np.stack([_cloud(rng, points) for _ in range(n)]).astype(np.float32)
        with h5py.File(root / f"ply_data_{split}{k}.h5", "w") as f:
            f["data"] = clouds[..., :3]
            f["label"] = rng.integers(0, 40, size=(n, 1)).astype(np.uint8)
            if normals:
                f["normal"] = clouds[..., 3:]
    (root / "shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    (root / "train_files.txt").write_text(
        "data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n"
        "data/modelnet40_ply_hdf5_2048/ply_data_train1.h5\n"
    )
    (root / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    return root


TETRA_OFF = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
CUBE_OFF = (  # ModelNet-style malformed header: OFF glued to the counts
    "OFF8 12 0\n0 0 0\n2 0 0\n2 1 0\n0 1 0\n0 0 3\n2 0 3\n2 1 3\n0 1 3\n"
    "3 0 2 1\n3 0 3 2\n3 4 5 6\n3 4 6 7\n3 0 1 5\n3 0 5 4\n"
    "3 1 2 6\n3 1 6 5\n3 2 3 7\n3 2 7 6\n3 3 0 4\n3 3 4 7\n"
)


def write_modelnet_off(root: Path) -> Path:
    for cls, text in (("bathtub", CUBE_OFF), ("chair", TETRA_OFF)):
        for split in ("train", "test"):
            d = root / cls / split
            d.mkdir(parents=True, exist_ok=True)
            for i in (1, 2) if split == "train" else (3,):
                (d / f"{cls}_{i:04d}.off").write_text(text)
    return root


def write_shapenetpart(root: Path, rows: int = 70) -> Path:
    """v0_normal layout: synsetoffset2category.txt, <synset>/<id>.txt (7 cols), split JSONs."""
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    (root / "synsetoffset2category.txt").write_text(
        "".join(f"{k}\t{v}\n" for k, v in SHAPENETPART_CATEGORIES.items())
    )
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for cat in ("Cap", "Table"):
        syn = SHAPENETPART_CATEGORIES[cat]
        (root / syn).mkdir(exist_ok=True)
        for i, split in enumerate(("train", "train", "val", "test")):
            sid = f"{cat.lower()}{i:03d}"
            c = _cloud(rng, rows)
            parts = rng.choice(SHAPENETPART_SEG_CLASSES[cat], size=(rows, 1))
            np.savetxt(root / syn / f"{sid}.txt", np.concatenate([c, parts], 1), fmt="%.6f")
            lists[split].append(f"shape_data/{syn}/{sid}")
    (root / "train_test_split").mkdir(exist_ok=True)
    for split, entries in lists.items():
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(
            json.dumps(entries)
        )
    return root


SCANOBJECTNN_SIZES = {  # (folder, stem, split prefix) -> clouds: every file has its own size
    ("main_split_nobg", "objectdataset", "training"): 0,
    ("main_split_nobg", "objectdataset", "test"): 1,
    ("main_split", "objectdataset", "training"): 2,
    ("main_split", "objectdataset", "test"): 3,
    ("main_split", "objectdataset_augmentedrot_scale75", "training"): 4,
    ("main_split", "objectdataset_augmentedrot_scale75", "test"): 5,
}


def write_scanobjectnn(root: Path, n: int = 5, points: int = 96) -> Path:
    """The h5_files layout; the file ``(folder, stem, prefix)`` holds
    ``n + SCANOBJECTNN_SIZES[...]`` clouds, so a test can tell which file was read."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(3)
    for (folder, stem, prefix), extra in SCANOBJECTNN_SIZES.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        m = n + extra
        with h5py.File(root / folder / f"{prefix}_{stem}.h5", "w") as f:
            f["data"] = np.stack([_cloud(rng, points)[:, :3] for _ in range(m)]).astype(np.float32)
            f["label"] = rng.integers(0, 15, size=m).astype(np.int64)
            f["mask"] = np.zeros((m, points), np.int64)
    return root


def write_fg3d(root: Path, category: str = "airplane", n_classes: int = 13) -> Path:
    cap = category.capitalize()
    root.mkdir(parents=True, exist_ok=True)
    subs = [f"sub{i}" for i in range(n_classes)]
    (root / f"{cap}_subcategories.txt").write_text("\n".join(subs) + "\n")
    (root / f"{category}_off").mkdir(exist_ok=True)
    train, test = [], []
    for i, s in enumerate(subs[:3]):
        for j in range(2):
            sid = f"{s}_{j:04d}"
            (root / f"{category}_off" / f"{sid}.off").write_text(CUBE_OFF if i % 2 else TETRA_OFF)
            (train if j == 0 else test).append(sid)
    (root / f"{cap}_off_train.txt").write_text("\n".join(train) + "\n")
    (root / f"{cap}_off_test.txt").write_text("\n".join(test) + "\n")
    return root
