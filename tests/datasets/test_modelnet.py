from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from _layouts import write_modelnet_h5, write_modelnet_off

from pointlib.datasets import DatasetError, DatasetNotFoundError, ModelNet10, ModelNet40
from pointlib.datasets.modelnet import detect_modelnet_format
from pointlib.ops import fps


def test_txt_contract(modelnet_txt, cache):
    train = ModelNet40(modelnet_txt, "train", 32, cache_dir=cache)
    test = ModelNet40(modelnet_txt, "test", 32, cache_dir=cache)
    assert (len(train), len(test)) == (6, 3)
    assert train.format == "txt" and train.up_axis == "y" and train.num_classes == 40
    item = train[0]
    assert set(item) == {"xyz", "normals", "label"}
    assert item["xyz"].shape == (32, 3) and item["xyz"].dtype == torch.float32
    assert item["normals"].shape == (32, 3) and item["label"].dtype == torch.int64
    # per-item centred + unit sphere (spec §4.1); normals untouched (unit)
    assert torch.allclose(item["xyz"].mean(0), torch.zeros(3), atol=1e-5)
    assert item["xyz"].norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(item["normals"].norm(dim=1), torch.ones(32), atol=1e-5)
    assert sorted({int(train[i]["label"]) for i in range(len(train))}) == [0, 1, 8]
    r = repr(train)
    assert "split='train'" in r and "6 shapes" in r and "format='txt'" in r
    assert "official 9843" in r


def test_first_and_fps_sampling_match_file_rows(modelnet_txt, cache):
    rows = np.loadtxt(modelnet_txt / "airplane" / "airplane_0001.txt", delimiter=",")
    first = ModelNet40(
        modelnet_txt, "train", 20, sampling="first", normalize=False, cache_dir=cache
    )
    np.testing.assert_allclose(first[0]["xyz"].numpy(), rows[:20, :3], rtol=1e-6)
    np.testing.assert_allclose(first[0]["normals"].numpy(), rows[:20, 3:], rtol=1e-6)
    ds = ModelNet40(modelnet_txt, "train", 20, normalize=False, cache_dir=cache)
    idx = fps(torch.tensor(rows[None, :, :3], dtype=torch.float32), 20)[0].numpy()
    np.testing.assert_allclose(ds[0]["xyz"].numpy(), rows[idx, :3], rtol=1e-6)


def test_fewer_points_than_requested_repeats_rows(modelnet_txt, cache):
    with pytest.warns(RuntimeWarning, match="fewer than 100 points"):
        ds = ModelNet40(modelnet_txt, "train", 100, normalize=False, cache_dir=cache)
    rows = np.loadtxt(modelnet_txt / "airplane" / "airplane_0001.txt", delimiter=",")
    xyz = ds[0]["xyz"].numpy()
    np.testing.assert_allclose(xyz[:80], rows[:, :3], rtol=1e-6)  # all rows, then repeats
    d = np.linalg.norm(xyz[80:, None] - rows[None, :, :3], axis=-1).min(1)
    assert d.max() < 1e-5  # the 20 extra points are copies of file rows


def test_modelnet10_filters_modelnet40_lists(modelnet_txt, cache):
    ds = ModelNet10(modelnet_txt, "train", 16, cache_dir=cache)
    assert ds.num_classes == 10 and len(ds) == 4  # bathtub + chair, not airplane
    assert sorted(set(ds.labels.tolist())) == [0, 2]  # bathtub, chair in ModelNet10 order


def test_h5_with_and_without_normals(tmp_path, cache):
    root = write_modelnet_h5(tmp_path / "modelnet40_ply_hdf5_2048")
    assert detect_modelnet_format(root) == "h5"
    train = ModelNet40(root, "train", 32, cache_dir=cache)
    assert len(train) == 12 and train.STATS["train"] == 9840
    assert train[0]["normals"].shape == (32, 3)
    bare = write_modelnet_h5(tmp_path / "bare", normals=False)
    with pytest.raises(DatasetError, match="no normals"):
        ModelNet40(bare, "test", 32, cache_dir=cache)
    ds = ModelNet40(bare, "test", 32, normals=False, cache_dir=cache)
    assert "normals" not in ds[0] and len(ds) == 6


def test_off_meshes_sampled_and_seeded(tmp_path, cache):
    root = write_modelnet_off(tmp_path / "ModelNet40")
    assert detect_modelnet_format(root) == "off"
    a = ModelNet40(root, "train", 64, mesh_samples=256, cache_dir=cache)
    b = ModelNet40(root, "train", 64, mesh_samples=256, cache=False)
    assert len(a) == 4 and a.format == "off"
    assert torch.equal(a[0]["xyz"], b[0]["xyz"])
    c = ModelNet40(root, "train", 64, mesh_samples=256, seed=1, cache=False)
    assert not torch.equal(a[0]["xyz"], c[0]["xyz"])
    # the cube's face normals are axis-aligned unit vectors
    n = a[0]["normals"]
    assert torch.allclose(n.abs().max(dim=1).values, torch.ones(64), atol=1e-5)


# -- bad input ------------------------------------------------------------------------------


def test_missing_root_and_split_file(tmp_path, modelnet_txt, cache):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        ModelNet40(tmp_path / "nope", "train", 16, cache_dir=cache)
    (modelnet_txt / "modelnet40_test.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"modelnet40_test\.txt"):
        ModelNet40(modelnet_txt, "test", 16, cache_dir=cache)
    with pytest.raises(ValueError, match="split"):
        ModelNet40(modelnet_txt, "validation", 16, cache_dir=cache)
    (modelnet_txt / "chair" / "chair_0001.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"chair_0001\.txt"):
        ModelNet40(modelnet_txt, "train", 16, cache_dir=cache)


def test_truncated_and_corrupt_txt(modelnet_txt, cache):
    f = modelnet_txt / "bathtub" / "bathtub_0001.txt"
    text = f.read_text()
    f.write_text(text[: len(text) - 20])  # cut inside the last row
    with pytest.raises(DatasetError, match=r"bathtub_0001\.txt.*truncated"):
        ModelNet40(modelnet_txt, "train", 16, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())  # nothing cached
    f.write_text(text.replace("0.", "x.", 1))
    with pytest.raises(DatasetError, match=r"bathtub_0001\.txt.*non-numeric"):
        ModelNet40(modelnet_txt, "train", 16, cache_dir=cache)


def test_nan_rows_dropped_with_warning(modelnet_txt, cache):
    f = modelnet_txt / "bathtub" / "bathtub_0001.txt"
    lines = f.read_text().splitlines()
    lines[3] = "nan,nan,nan,0,0,1"
    f.write_text("\n".join(lines) + "\n")
    with pytest.warns(RuntimeWarning, match=r"bathtub_0001\.txt: dropped 1 row"):
        ds = ModelNet40(modelnet_txt, "train", 16, cache_dir=cache)
    assert all(torch.isfinite(ds[i]["xyz"]).all() for i in range(len(ds)))


def test_unknown_class_in_split_list(modelnet_txt, cache):
    (modelnet_txt / "modelnet40_train.txt").write_text("spaceship_0001\n")
    with pytest.raises(DatasetError, match="unknown class 'spaceship'"):
        ModelNet40(modelnet_txt, "train", 16, cache_dir=cache)


def test_h5_bad_labels_and_corrupt_file(tmp_path, cache):
    h5py = pytest.importorskip("h5py")
    root = write_modelnet_h5(tmp_path / "h5")
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        f["label"][0] = 200
    with pytest.raises(DatasetError, match=r"ply_data_test0\.h5: label 200 out of range"):
        ModelNet40(root, "test", 16, cache_dir=cache)
    data = (root / "ply_data_train1.h5").read_bytes()
    (root / "ply_data_train1.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=r"ply_data_train1\.h5: unreadable or truncated"):
        ModelNet40(root, "train", 16, cache_dir=cache)


def test_corrupt_off(tmp_path, cache):
    root = write_modelnet_off(tmp_path / "ModelNet40")
    bad = root / "chair" / "test" / "chair_0003.off"
    bad.write_text("OFF\n4 4 0\n0 0 0\n1 0 0\n")
    with pytest.raises(DatasetError, match=r"chair_0003\.off"):
        ModelNet40(root, "test", 16, mesh_samples=64, cache_dir=cache)


def test_not_a_modelnet_folder(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match="not a ModelNet folder"):
        ModelNet40(tmp_path / "x", "train", 16)


def test_env_cache_is_used_and_root_untouched(modelnet_txt, tmp_path, monkeypatch):
    monkeypatch.setenv("POINTLIB_CACHE", str(tmp_path / "envcache"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = ModelNet40(modelnet_txt, "test", 16)
    assert ds.cache_path is not None
    assert ds.cache_path.parent.parent == tmp_path / "envcache" / "modelnet40"
    assert os.path.exists(ds.cache_path) and not (modelnet_txt / ".pointlib_cache").exists()


def test_default_cache_goes_to_user_cache_not_data_root(modelnet_txt, tmp_path, monkeypatch):
    monkeypatch.delenv("POINTLIB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = sorted(p.name for p in modelnet_txt.rglob("*"))
    ds = ModelNet40(modelnet_txt, "test", 16)
    assert ds.cache_path is not None and os.path.exists(ds.cache_path)
    assert (tmp_path / "xdg" / "pointlib" / "modelnet40") in ds.cache_path.parents
    assert sorted(p.name for p in modelnet_txt.rglob("*")) == before
    # a second root with the same settings gets its own folder (no cache thrashing)
    other = tmp_path / "copy"
    import shutil

    shutil.copytree(modelnet_txt, other)
    assert ModelNet40(other, "test", 16).cache_path.parent != ds.cache_path.parent
