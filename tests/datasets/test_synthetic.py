from __future__ import annotations

import numpy as np
import torch

from pointlib.datasets import SYNTHETIC_CLASSES, SyntheticShapes, get_dataset


def test_deterministic_and_seeded(tmp_path):
    a = SyntheticShapes(tmp_path / "a", "train", 128, samples_per_class=2, seed=5)
    b = SyntheticShapes(None, "train", 128, samples_per_class=2, seed=5, cache=False)
    assert np.array_equal(a._xyz, b._xyz) and np.array_equal(a._normals, b._normals)
    assert a.cache_path is not None and a.cache_path.parent == tmp_path / "a"
    c = SyntheticShapes(tmp_path / "a", "train", 128, samples_per_class=2, seed=6)
    assert not np.array_equal(a._xyz, c._xyz)
    t = SyntheticShapes(tmp_path / "a", "test", 128, samples_per_class=2, seed=5)
    assert not np.array_equal(a._xyz, t._xyz)  # splits are independent draws


def test_contract_and_upright(tmp_path):
    ds = get_dataset("synthetic", tmp_path, "train", num_points=96, samples_per_class=2)
    assert len(ds) == 2 * len(SYNTHETIC_CLASSES) == 24 and ds.num_classes == 12
    assert ds.up_axis == "z" and np.bincount(ds.labels).tolist() == [2] * 12
    item = ds[0]
    assert item["xyz"].shape == (96, 3) and item["label"].dtype == torch.int64
    assert torch.allclose(item["normals"].norm(dim=1), torch.ones(96), atol=1e-5)
    # upright: tables stand on the z=0 plane with their top up (orientation cue)
    table = ds._xyz[ds.labels == SYNTHETIC_CLASSES.index("table")][0]
    assert table[:, 2].min() > -1e-6 and table[:, 2].max() > 0.6


def test_classes_differ_intrinsically(tmp_path):
    """Rotation-invariant shape histograms (centroid distances + D2) separate the classes."""
    train = SyntheticShapes(tmp_path, "train", 256, samples_per_class=4)
    test = SyntheticShapes(tmp_path, "test", 256, samples_per_class=2)
    pairs = np.random.default_rng(0).integers(0, 256, size=(2, 1000))

    def desc(x):
        r = np.linalg.norm(x - x.mean(0), axis=1)
        d2 = np.linalg.norm(x[pairs[0]] - x[pairs[1]], axis=1) / (2 * r.max())
        return np.concatenate(
            [np.histogram(r / r.max(), 16, (0, 1))[0] / 256, np.histogram(d2, 16, (0, 1))[0] / 1e3]
        )

    a = np.stack([desc(x) for x in train._xyz])
    b = np.stack([desc(x) for x in test._xyz])
    pred = train.labels[((b[:, None] - a[None]) ** 2).sum(-1).argmin(1)]
    assert (pred == test.labels).mean() > 0.8  # chance is 1/12
