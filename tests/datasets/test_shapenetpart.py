from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pointlib.datasets import (
    NUM_PARTS,
    PART_TO_CATEGORY,
    SHAPENETPART_SEG_CLASSES,
    DatasetError,
    DatasetNotFoundError,
    ShapeNetPart,
)


def test_part_table():
    assert len(SHAPENETPART_SEG_CLASSES) == 16 and NUM_PARTS == 50
    flat = [p for parts in SHAPENETPART_SEG_CLASSES.values() for p in parts]
    assert flat == list(range(50))
    assert PART_TO_CATEGORY[6] == 2 and PART_TO_CATEGORY[49] == 15  # Cap, Table


def test_splits_and_item_contract(shapenetpart_root, cache):
    sizes = {
        s: len(ShapeNetPart(shapenetpart_root, s, 32, cache_dir=cache))
        for s in ("train", "val", "test", "trainval")
    }
    assert sizes == {"train": 4, "val": 2, "test": 2, "trainval": 6}
    ds = ShapeNetPart(shapenetpart_root, "trainval", 32, cache_dir=cache)
    assert ds.task == "segmentation" and ds.num_classes == 16 and ds.up_axis == "y"
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"xyz", "normals", "label", "parts", "category"}
        assert item["parts"].shape == (32,) and item["parts"].dtype == torch.int64
        cat = ds.classes[int(item["category"])]
        assert set(item["parts"].tolist()) <= set(SHAPENETPART_SEG_CLASSES[cat])
        assert int(item["label"]) == int(item["category"])
    assert "2 shapes" in repr(ShapeNetPart(shapenetpart_root, "test", 32, cache_dir=cache))


def test_parts_follow_points(shapenetpart_root, cache):
    ds = ShapeNetPart(
        shapenetpart_root, "train", 20, sampling="first", normalize=False, cache_dir=cache
    )
    name = ds.names[0]
    rows = np.loadtxt(shapenetpart_root / f"{name}.txt")
    np.testing.assert_allclose(ds[0]["xyz"].numpy(), rows[:20, :3], rtol=1e-6)
    np.testing.assert_array_equal(ds[0]["parts"].numpy(), rows[:20, 6].astype(int))


def test_categories_filter(shapenetpart_root, cache):
    ds = ShapeNetPart(shapenetpart_root, "trainval", 16, categories=["Table"], cache_dir=cache)
    assert len(ds) == 3 and set(ds.labels.tolist()) == {15}


def test_bad_inputs(shapenetpart_root, cache):
    lst = shapenetpart_root / "train_test_split" / "shuffled_val_file_list.json"
    lst.write_text("[not json")
    with pytest.raises(DatasetError, match=r"shuffled_val_file_list\.json: not valid JSON"):
        ShapeNetPart(shapenetpart_root, "val", 16, cache_dir=cache)
    lst.unlink()
    with pytest.raises(DatasetNotFoundError, match=r"shuffled_val_file_list\.json"):
        ShapeNetPart(shapenetpart_root, "trainval", 16, cache_dir=cache)
    test_list = shapenetpart_root / "train_test_split" / "shuffled_test_file_list.json"
    name = json.loads(test_list.read_text())[0].split("/", 1)[1]
    f = shapenetpart_root / f"{name}.txt"
    rows = np.loadtxt(f)
    rows[0, 6] = 30  # a Motorbike part in a Cap/Table shape
    np.savetxt(f, rows, fmt="%.6f")
    with pytest.raises(DatasetError, match="part label 30"):
        ShapeNetPart(shapenetpart_root, "test", 16, cache_dir=cache)
