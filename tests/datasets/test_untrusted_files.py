"""Loaders reject what they cannot read: every case names the file and the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _layouts import write_modelnet_h5, write_modelnet_txt, write_scanobjectnn, write_shapenetpart

from pointlib.datasets import DatasetError, ModelNet40, ScanObjectNN, ShapeNetPart
from pointlib.datasets._points import read_txt_points

h5py = pytest.importorskip("h5py")


def _empty(cache) -> bool:
    return not cache.exists() or not any(cache.glob("*.npz"))


# -- txt: a short row next to a long row must not shift the columns in between ----------------


def test_short_plus_long_row_is_rejected(tmp_path):
    f = tmp_path / "shape.txt"
    f.write_text("1,2,3,4,5,6\n1,2,3,4,5\n1,2,3,4,5,6,7\n1,2,3,4,5,6\n")  # total still 4 * 6
    with pytest.raises(DatasetError, match=r"shape\.txt: line 2 has 5 values, expected 6"):
        read_txt_points(f, 6)


def test_shifted_columns_in_modelnet_txt_are_not_cached(tmp_path, cache):
    root = write_modelnet_txt(tmp_path / "mn")
    f = root / "chair" / "chair_0002.txt"
    lines = f.read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0]  # 5 values
    lines[9] = lines[9] + ",0.5"  # 7 values: the token count matches again
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"chair_0002\.txt: line 5 has 5 values, expected 6"):
        ModelNet40(root, "train", 16, cache_dir=cache)
    assert _empty(cache)


def test_shifted_columns_in_shapenetpart(tmp_path, cache):
    root = write_shapenetpart(tmp_path / "snp")
    f = next((root / "02954340").glob("*.txt"))
    lines = f.read_text().splitlines()
    lines[0] = " ".join(lines[0].split()[:6])
    lines[1] = lines[1] + " 6"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{f.name}: line 1 has 6 values, expected 7"):
        ShapeNetPart(root, "trainval", 16, cache_dir=cache)
    assert _empty(cache)


# -- h5 values --------------------------------------------------------------------------------


def test_nan_in_h5_normals(tmp_path, cache):
    root = write_modelnet_h5(tmp_path / "h5")
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        f["normal"][2, 5, 1] = np.nan
    with pytest.raises(DatasetError, match=r"ply_data_test0\.h5: 'normal': NaN/inf values"):
        ModelNet40(root, "test", 16, cache_dir=cache)
    assert _empty(cache)


@pytest.mark.parametrize("key", ["normal", "data"])
def test_garbage_bytes_inside_an_h5_array(tmp_path, cache, key):
    root = write_modelnet_h5(tmp_path / "h5", n=40, points=64)
    path = root / "ply_data_test0.h5"
    with h5py.File(path, "r") as f:
        offset = f[key].id.get_offset()  # contiguous layout: the raw values start here
        nbytes = f[key].id.get_storage_size()
    garbage = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)
    garbage[3::4] = 0x7E  # high byte of each little-endian float32: finite values ~1e38
    start = offset + nbytes // 2 - 2048
    raw = bytearray(path.read_bytes())
    raw[start : start + 4096] = garbage.tobytes()
    path.write_bytes(bytes(raw))
    want = "not unit vectors" if key == "normal" else "coordinates beyond"
    with pytest.raises(DatasetError, match=rf"ply_data_test0\.h5: '{key}': .*{want}"):
        ModelNet40(root, "test", 16, cache_dir=cache)


def test_string_typed_h5_data(tmp_path, cache):
    root = write_modelnet_h5(tmp_path / "h5")
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        del f["data"]
        f["data"] = np.full((6, 64, 3), b"0.5", dtype="S3")
    with pytest.raises(DatasetError, match=r"ply_data_test0\.h5: 'data' has dtype \|S3"):
        ModelNet40(root, "test", 16, cache_dir=cache)


def test_corrupt_h5_metadata_names_the_file(tmp_path, cache):
    root = write_modelnet_h5(tmp_path / "h5")
    path = root / "ply_data_test0.h5"
    raw = bytearray(path.read_bytes())
    heap = raw.find(b"HEAP")  # the root group's local heap (its link names)
    assert heap > 0
    raw[heap : heap + 16] = b"\xa5" * 16
    path.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="check link existence"):  # the case of the report
        with h5py.File(path, "r") as f:
            _ = "data" in f
    with pytest.raises(DatasetError, match=r"ply_data_test0\.h5: unreadable or truncated h5"):
        ModelNet40(root, "test", 16, cache_dir=cache)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.full(6, 3.5, np.float32), r"label 3\.5 is not an integer"),
        (np.array([1, 2, -1, 0, 4, 5], np.int8), r"label -1 out of range for 40 classes"),
        (np.array([1, 2, 200, 0, -3, 5], np.int16), r"label 200 out of range for 40 classes"),
    ],
)
def test_h5_labels_checked_not_truncated(tmp_path, cache, labels, message):
    root = write_modelnet_h5(tmp_path / "h5")
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        del f["label"]
        f["label"] = labels
    with pytest.raises(DatasetError, match=rf"ply_data_test0\.h5: {message}"):
        ModelNet40(root, "test", 16, cache_dir=cache)


def test_integral_float_labels_are_accepted(tmp_path, cache):
    root = write_modelnet_h5(tmp_path / "h5")
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        lab = f["label"][()].astype(np.float32)
        del f["label"]
        f["label"] = lab
    ds = ModelNet40(root, "test", 16, cache_dir=cache)
    assert ds.labels.tolist() == lab.reshape(-1).astype(int).tolist()


def test_zero_shape_h5_is_an_error(tmp_path, cache):
    root = write_modelnet_h5(tmp_path / "h5")
    with h5py.File(root / "ply_data_test0.h5", "w") as f:
        f["data"] = np.zeros((0, 64, 3), np.float32)
        f["label"] = np.zeros((0, 1), np.uint8)
    with pytest.raises(DatasetError, match=r"ply_data_test0\.h5: 'data' \(0, 64, 3\): holds no"):
        ModelNet40(root, "test", 16, cache_dir=cache)


def test_scanobjectnn_shares_the_h5_checks(tmp_path, cache):
    root = write_scanobjectnn(tmp_path / "h5_files")
    path = root / "main_split" / "training_objectdataset.h5"
    with h5py.File(path, "r+") as f:
        f["data"][1, 3, 0] = 3e30
    with pytest.raises(DatasetError, match=r"training_objectdataset\.h5: 'data': .*beyond"):
        ScanObjectNN(root, "train", 16, variant="OBJ_BG", cache_dir=cache)
    with h5py.File(path, "r+") as f:
        f["data"][1, 3, 0] = 0.5
        del f["label"]
        f["label"] = np.array([0, 1, 2, 3, 4.25, 5, 6])
    with pytest.raises(DatasetError, match=r"training_objectdataset\.h5: label 4\.25 is not"):
        ScanObjectNN(root, "train", 16, variant="OBJ_BG", cache_dir=cache)


# -- lists ------------------------------------------------------------------------------------


def test_non_utf8_split_lists(tmp_path, cache):
    root = write_modelnet_txt(tmp_path / "mn")
    (root / "modelnet40_train.txt").write_bytes(b"chair_0001\n\xff\xfeairplane_0001\n")
    with pytest.raises(DatasetError, match=r"modelnet40_train\.txt: not a UTF-8 text file"):
        ModelNet40(root, "train", 16, cache_dir=cache)
    snp = write_shapenetpart(tmp_path / "snp")
    lst = snp / "train_test_split" / "shuffled_test_file_list.json"
    lst.write_bytes(b'["shape_data/\xff/x"]')
    with pytest.raises(DatasetError, match=r"shuffled_test_file_list\.json: not a UTF-8"):
        ShapeNetPart(snp, "test", 16, cache_dir=cache)


def test_empty_shapenetpart_split_is_an_error(tmp_path, cache):
    root = write_shapenetpart(tmp_path / "snp")
    (root / "train_test_split" / "shuffled_test_file_list.json").write_text(json.dumps([]))
    with pytest.raises(DatasetError, match=r"shuffled_test_file_list\.json: no shapes listed"):
        ShapeNetPart(root, "test", 16, cache_dir=cache)
    with pytest.raises(DatasetError, match=r"no categories \['Airplane'\] listed"):
        ShapeNetPart(root, "trainval", 16, categories=["Airplane"], cache_dir=cache)
