from __future__ import annotations

import pytest
import torch

from pointlib.datasets import ShapeNetPart, SyntheticShapes, collate_points, make_loader


def test_collate_stacks_and_checks():
    items = [
        {"xyz": torch.zeros(5, 3), "label": torch.tensor(i), "name": f"s{i}"} for i in range(3)
    ]
    b = collate_points(items)
    assert b["xyz"].shape == (3, 5, 3) and b["label"].tolist() == [0, 1, 2]
    assert b["name"] == ["s0", "s1", "s2"]
    items[1]["xyz"] = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="'xyz' has different shapes"):
        collate_points(items)


def test_loader_with_two_workers(tmp_path, shapenetpart_root):
    ds = SyntheticShapes(tmp_path, "test", 64, samples_per_class=1)
    loader = make_loader(ds, batch_size=4, shuffle=True, num_workers=2, seed=0)
    batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == 12
    assert batches[0]["xyz"].shape == (4, 64, 3) and batches[0]["normals"].shape == (4, 64, 3)
    again = [b["label"].tolist() for b in make_loader(ds, 4, shuffle=True, num_workers=0)]
    assert again == [b["label"].tolist() for b in batches]  # same seeded order
    seg = ShapeNetPart(shapenetpart_root, "trainval", 32, cache_dir=tmp_path / "c")
    b = next(iter(make_loader(seg, batch_size=3, num_workers=0)))
    assert b["parts"].shape == (3, 32) and b["category"].shape == (3,)
