from __future__ import annotations

import pytest
import torch
from _layouts import SCANOBJECTNN_SIZES, write_fg3d, write_scanobjectnn

from pointlib.datasets import FG3D, DatasetError, DatasetNotFoundError, ScanObjectNN
from pointlib.geometry import random_rotation


@pytest.mark.parametrize(
    ("variant", "folder", "stem"),
    [
        ("OBJ_ONLY", "main_split_nobg", "objectdataset"),
        ("OBJ_BG", "main_split", "objectdataset"),
        ("PB_T50_RS", "main_split", "objectdataset_augmentedrot_scale75"),
    ],
)
def test_scanobjectnn_variants(tmp_path, cache, variant, folder, stem):
    root = write_scanobjectnn(tmp_path / "h5_files")
    ds = ScanObjectNN(root, "train", 32, variant=variant, cache_dir=cache)
    # every file has its own size, so the length says which one was read
    assert len(ds) == 5 + SCANOBJECTNN_SIZES[(folder, stem, "training")]
    test = ScanObjectNN(root, "test", 32, variant=variant, cache_dir=cache)
    assert len(test) == 5 + SCANOBJECTNN_SIZES[(folder, stem, "test")]
    assert ds.names[0] == f"training_{stem}.h5/0"
    assert ds.num_classes == 15 and ds.variant == variant
    item = ds[0]
    assert item["xyz"].shape == (32, 3) and item["normals"].shape == (32, 3)
    assert torch.allclose(item["normals"].norm(dim=1), torch.ones(32), atol=1e-5)
    assert ds.STATS["train"] == (11416 if variant == "PB_T50_RS" else 2309)
    assert f"variant='{variant}'" in repr(ds)


def test_scanobjectnn_normals_rotation_invariant_sign(tmp_path, cache):
    root = write_scanobjectnn(tmp_path / "h5_files", n=2)
    ds = ScanObjectNN(root, "test", 48, cache=False)
    x = ds._xyz.astype("float64")
    R = random_rotation(1, torch.Generator().manual_seed(3), dtype=torch.float64)[0].numpy()
    from pointlib.datasets._points import estimate_normals

    n = estimate_normals(x.astype("float32"))
    nr = estimate_normals((x @ R.T).astype("float32"))
    assert abs(nr - n @ R.T).max() < 1e-3  # same normals, same signs after rotation


def test_scanobjectnn_raw_normal_sign_is_the_eigensolvers(tmp_path, cache):
    """``normal_sign="raw"`` (faithful pipeline): the LRA with torch.linalg.eigh's own sign, the
    same axes as the invariant normals up to sign, cached separately."""
    from pointlib.features import local_reference_axis

    root = write_scanobjectnn(tmp_path / "h5_files", n=2)
    inv = ScanObjectNN(root, "test", 48, cache_dir=cache)
    raw = ScanObjectNN(root, "test", 48, normal_sign="raw", cache_dir=cache)
    assert raw.cache_path != inv.cache_path and "normal_sign='raw'" in repr(raw)
    xyz = torch.from_numpy(raw._xyz.astype("float32"))
    want = local_reference_axis(xyz, 32, faithful=True)
    torch.testing.assert_close(torch.from_numpy(raw._normals), want, rtol=0, atol=1e-6)
    a, b = torch.from_numpy(raw._normals), torch.from_numpy(inv._normals)
    torch.testing.assert_close(a.abs(), b.abs(), rtol=0, atol=1e-5)  # same axes
    assert bool(((a * b).sum(-1) < 0).any())  # but some signs differ: a real choice
    with pytest.raises(ValueError, match="normal_sign must be 'invariant' or 'raw'"):
        ScanObjectNN(root, "test", 48, normal_sign="flip", cache_dir=cache)


def test_scanobjectnn_missing_and_corrupt(tmp_path, cache):
    root = write_scanobjectnn(tmp_path / "h5_files")
    (root / "main_split_nobg" / "test_objectdataset.h5").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"test_objectdataset\.h5"):
        ScanObjectNN(root, "test", 16, variant="OBJ_ONLY", cache_dir=cache)
    (root / "main_split" / "test_objectdataset.h5").write_bytes(b"\x89HDF garbage")
    with pytest.raises(DatasetError, match=r"test_objectdataset\.h5: unreadable"):
        ScanObjectNN(root, "test", 16, variant="OBJ_BG", cache_dir=cache)


def test_fg3d_layout(tmp_path, cache):
    root = write_fg3d(tmp_path / "FG3D")
    ds = FG3D(root, "train", 32, category="airplane", mesh_samples=128, cache_dir=cache)
    assert len(ds) == 3 and ds.num_classes == 13 and ds.classes[0] == "sub0"
    assert ds.labels.tolist() == [0, 1, 2]
    assert ds[0]["normals"].shape == (32, 3)
    assert len(FG3D(root, "test", 32, mesh_samples=128, cache_dir=cache)) == 3
    with pytest.raises(DatasetNotFoundError, match=r"Car_subcategories\.txt"):
        FG3D(root, "train", 32, category="car", cache_dir=cache)
    bad = write_fg3d(tmp_path / "FG3Dbad", n_classes=5)
    with pytest.raises(DatasetError, match="5 subcategories"):
        FG3D(bad, "train", 32, cache_dir=cache)


def test_scanobjectnn_label_out_of_range_and_bad_sampling(tmp_path, cache):
    h5py = pytest.importorskip("h5py")
    root = write_scanobjectnn(tmp_path / "h5_files")
    with h5py.File(root / "main_split" / "training_objectdataset.h5", "r+") as f:
        f["label"][2] = 15
    with pytest.raises(DatasetError, match=r"training_objectdataset\.h5: label 15 out of range"):
        ScanObjectNN(root, "train", 16, variant="OBJ_BG", cache_dir=cache)
    with pytest.raises(ValueError, match="sampling must be one of"):
        ScanObjectNN(root, "train", 16, sampling="poisson", cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


def test_scanobjectnn_raw_normal_sign(tmp_path, cache):
    """``normal_sign="raw"``: the LRA with the eigensolver's sign (the reference code's normals,
    ``estimate_normals(faithful=True)``); the same axes as the invariant rule up to sign, and a
    separate cache entry."""
    from pointlib.features import estimate_normals

    root = write_scanobjectnn(tmp_path / "h5_files", n=2)
    inv = ScanObjectNN(root, "test", 48, cache_dir=cache)
    raw = ScanObjectNN(root, "test", 48, normal_sign="raw", cache_dir=cache)
    assert raw.cache_path != inv.cache_path
    xyz = torch.from_numpy(raw._xyz)
    want = estimate_normals(xyz, 32, faithful=True)
    torch.testing.assert_close(torch.from_numpy(raw._normals), want, rtol=0, atol=1e-6)
    a, b = torch.from_numpy(raw._normals), torch.from_numpy(inv._normals)
    dot = (a * b).sum(-1)
    assert torch.allclose(dot.abs(), torch.ones_like(dot), atol=1e-4)  # same axes
    assert (dot < 0).any() and (dot > 0).any()  # the sign rules differ on these clouds
    with pytest.raises(ValueError, match="normal_sign"):
        ScanObjectNN(root, "test", 48, normal_sign="outward", cache_dir=cache)
