"""The real data minis (../shared/data, read-only) load through the same code paths."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from pointlib.datasets import ModelNet10, ModelNet40, ShapeNetPart, get_dataset


def test_modelnet40_txt_mini(shared_data, tmp_path):
    root = shared_data / "modelnet40_normal_resampled_mini"
    train = ModelNet40(root, "train", 64, cache_dir=tmp_path)
    test = get_dataset("modelnet40", root, "test", num_points=64, cache_dir=tmp_path)
    assert (len(train), len(test)) == (849, 178)
    assert len(np.unique(train.labels)) == 36 and len(np.unique(test.labels)) == 21
    assert train.classes[0] == "airplane" and train.format == "txt"
    item = train[0]
    assert item["xyz"].shape == (64, 3) and torch.isfinite(item["xyz"]).all()
    assert torch.allclose(item["normals"].norm(dim=1), torch.ones(64), atol=1e-3)
    assert "849 shapes" in repr(train)
    m10 = ModelNet10(root, "test", 64, sampling="first", cache_dir=tmp_path)
    assert m10.num_classes == 10 and len(m10) > 0


def test_modelnet_h5_mini(shared_data, tmp_path):
    root = shared_data / "modelnet_h5_samples"
    ds = ModelNet40(root, "train", 256, h5_files=["modelnet40_subset_2048.h5"], cache_dir=tmp_path)
    assert len(ds) == 156 and ds.format == "h5" and len(np.unique(ds.labels)) == 39
    assert ds.names[0].startswith("airplane_")
    ycb = ModelNet40(
        root,
        "train",
        128,
        h5_files=["ycb_objects_train.h5"],
        normals=False,
        sampling="first",
        cache_dir=tmp_path,
    )
    assert len(ycb) == 60 and "normals" not in ycb[0]


def test_shapenetpart_mini(shared_data, tmp_path):
    root = shared_data / "shapenetpart_mini"
    sizes = {
        s: len(ShapeNetPart(root, s, 256, cache_dir=tmp_path))
        for s in ("train", "val", "test", "trainval")
    }
    assert sizes == {"train": 2, "val": 5, "test": 13, "trainval": 7}
    ds = ShapeNetPart(root, "test", 256, cache_dir=tmp_path)
    parts = torch.cat([ds[i]["parts"] for i in range(len(ds))]).unique().tolist()
    assert set(parts) <= {6, 7, 45, 47, 48, 49}


def test_off_meshes_mini(shared_data, tmp_path):
    root = tmp_path / "ModelNet10"
    (root / "bathtub" / "train").mkdir(parents=True)
    (root / "bathtub" / "test").mkdir(parents=True)
    for i in range(1, 6):
        split = "train" if i <= 3 else "test"
        shutil.copy(shared_data / "meshes" / f"bathtub_{i:04d}.off", root / "bathtub" / split)
    ds = ModelNet10(root, "train", 128, mesh_samples=1024, cache_dir=tmp_path / "c")
    assert len(ds) == 3 and ds.format == "off" and set(ds.labels.tolist()) == {0}
    x = ds[0]["xyz"]
    assert x.norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)  # CAD units -> unit sphere
    assert len(ModelNet10(root, "test", 128, mesh_samples=1024, cache_dir=tmp_path / "c")) == 2


def test_shared_folder_left_untouched(shared_data):
    for sub in ("modelnet40_normal_resampled_mini", "shapenetpart_mini", "modelnet_h5_samples"):
        assert not (shared_data / sub / ".pointlib_cache").exists()
