"""pointlib.io.read_point_cloud / write_point_cloud: round trips, real files, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pointlib.io import FileFormatError, read_point_cloud, write_point_cloud

FORMATS = [".ply", ".pcd", ".xyz", ".txt", ".npz"]
WITH_COLORS = [".ply", ".pcd", ".npz"]


@pytest.fixture
def cloud():
    g = torch.Generator().manual_seed(0)
    xyz = torch.randn(300, 3, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(300, 3, generator=g), dim=1)
    colors = torch.rand(300, 3, generator=g)
    return xyz, normals, colors


def needs_open3d(suffix: str) -> None:
    """``.pcd`` goes through open3d, a dependency of pointlib: a missing or broken open3d is a
    failure here, never a skip."""
    if suffix == ".pcd":
        from pointlib._optional import import_open3d

        import_open3d()


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_xyz_normals(tmp_path, cloud, suffix):
    needs_open3d(suffix)
    xyz, normals, _ = cloud
    path = write_point_cloud(tmp_path / f"c{suffix}", xyz, normals)
    got = read_point_cloud(path)
    assert set(got) == {"xyz", "normals"}
    assert got["xyz"].dtype == torch.float32
    assert torch.equal(got["xyz"], xyz) and torch.equal(got["normals"], normals)


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_xyz_only_numpy_float64(tmp_path, cloud, suffix):
    needs_open3d(suffix)
    xyz64 = cloud[0].double().numpy() * np.pi
    got = read_point_cloud(write_point_cloud(tmp_path / f"c{suffix}", xyz64))
    assert set(got) == {"xyz"}
    assert torch.equal(got["xyz"], torch.from_numpy(xyz64.astype(np.float32)))


@pytest.mark.parametrize("suffix", WITH_COLORS)
def test_round_trip_colors(tmp_path, cloud, suffix):
    needs_open3d(suffix)
    xyz, normals, colors = cloud
    got = read_point_cloud(write_point_cloud(tmp_path / f"c{suffix}", xyz, normals, colors=colors))
    assert torch.equal(got["xyz"], xyz) and torch.equal(got["normals"], normals)
    atol = 0 if suffix == ".npz" else 0.5 / 255 + 1e-6  # 8-bit colour in PLY/PCD
    torch.testing.assert_close(got["colors"], colors, atol=atol, rtol=0)


def test_text_layouts(tmp_path, cloud):
    xyz, normals, _ = cloud
    write_point_cloud(tmp_path / "a.txt", xyz, normals)
    write_point_cloud(tmp_path / "a.xyz", xyz, normals)
    assert "," in (tmp_path / "a.txt").read_text().splitlines()[0]
    assert "," not in (tmp_path / "a.xyz").read_text().splitlines()[0]
    # ShapeNetPart-style rows: x y z nx ny nz part -> the extra column is returned
    rows = "# comment\n0 0 0 0 0 1 3\n1 0 0 0 1 0 4\n"
    got = read_point_cloud(_write(tmp_path / "part.txt", rows))
    assert got["extra"].tolist() == [[3.0], [4.0]] and got["normals"][1].tolist() == [0, 1, 0]
    got = read_point_cloud(_write(tmp_path / "xyzi.xyz", "0 0 0 0.5\n1 2 3 0.25\n"))
    assert set(got) == {"xyz", "extra"} and got["xyz"][1].tolist() == [1, 2, 3]
    single = read_point_cloud(_write(tmp_path / "one.xyz", "1,2,3\n"))
    assert single["xyz"].shape == (1, 3)


def test_real_modelnet_txt(shared_data):
    path = shared_data / "modelnet40_normal_resampled_mini" / "bathtub" / "bathtub_0001.txt"
    got = read_point_cloud(path)
    assert got["xyz"].shape == got["normals"].shape == (2048, 3)
    unit = (got["normals"].norm(dim=1) - 1).abs() < 1e-3
    assert unit.float().mean() > 0.99  # the release has a few odd rows, e.g. (1, 1, 1)
    assert got["xyz"].norm(dim=1).max() <= 1.0 + 1e-4  # unit sphere, as released


def test_ply_interoperates_with_open3d(tmp_path, cloud):
    needs_open3d(".pcd")
    from pointlib._optional import import_open3d

    o3d = import_open3d()
    xyz, normals, _ = cloud
    write_point_cloud(tmp_path / "ours.ply", xyz, normals)
    pcd = o3d.io.read_point_cloud(str(tmp_path / "ours.ply"))
    np.testing.assert_array_equal(np.asarray(pcd.points), xyz.double().numpy())
    np.testing.assert_array_equal(np.asarray(pcd.normals), normals.double().numpy())
    pcd.colors = o3d.utility.Vector3dVector(np.full((300, 3), 0.5))
    for ascii_ in (False, True):  # open3d writes double properties, binary or ascii
        o3d.io.write_point_cloud(str(tmp_path / "theirs.ply"), pcd, write_ascii=ascii_)
        got = read_point_cloud(tmp_path / "theirs.ply")
        tol = 1e-5 if ascii_ else 0.0  # open3d's ascii PLY prints 6 significant digits
        torch.testing.assert_close(got["xyz"], xyz, atol=tol, rtol=tol)
        torch.testing.assert_close(got["normals"], normals, atol=tol, rtol=tol)
        torch.testing.assert_close(
            got["colors"], torch.full((300, 3), 0.5), atol=0.51 / 255, rtol=0
        )


def test_ply_variants_by_hand(tmp_path):
    ascii_ply = (
        "ply\nformat ascii 1.0\ncomment hi\nelement vertex 2\nproperty float x\n"
        "property float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
        "property uchar blue\nelement face 1\nproperty list uchar int vertex_indices\n"
        "end_header\n0 1 2 255 0 51\n3 4 5 0 255 0\n3 0 1 1\n"
    )
    got = read_point_cloud(_write(tmp_path / "a.ply", ascii_ply))
    assert got["xyz"].tolist() == [[0, 1, 2], [3, 4, 5]]
    torch.testing.assert_close(got["colors"][0], torch.tensor([1.0, 0.0, 0.2]))
    rec = np.array([(1.5, -2.0, 3.25, 0.0, 0.0, 1.0)], dtype=">f4")
    header = (
        "ply\nformat binary_big_endian 1.0\nelement vertex 1\n"
        + "".join(f"property float {k}\n" for k in ("x", "y", "z", "nx", "ny", "nz"))
        + "end_header\n"
    )
    got = read_point_cloud(_write(tmp_path / "be.ply", header.encode() + rec.tobytes()))
    assert got["xyz"].tolist() == [[1.5, -2.0, 3.25]] and got["normals"].tolist() == [[0, 0, 1]]


def _write(path, content: str | bytes):
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("suffix", FORMATS)
def test_truncated_files_name_the_file(tmp_path, cloud, suffix):
    needs_open3d(suffix)
    xyz, normals, _ = cloud
    path = write_point_cloud(tmp_path / f"shape_0042{suffix}", xyz, normals)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2 + 7])  # mid-row for text files
    with pytest.raises(FileFormatError) as info:
        read_point_cloud(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", FORMATS)
def test_garbage_and_empty_files(tmp_path, suffix):
    needs_open3d(suffix)
    for content in (b"", b"\x00\x01garbage \xff\xfe"):
        path = _write(tmp_path / f"junk{suffix}", content)
        with pytest.raises(FileFormatError, match="junk"):
            read_point_cloud(path)


def test_nan_rows_and_npz_keys(tmp_path):
    path = _write(tmp_path / "nan.txt", "0,0,0\n1,nan,2\n3,4,5\n")
    with pytest.raises(FileFormatError, match=r"1 rows of 'xyz' are not finite.*row 1"):
        read_point_cloud(path)
    np.savez(tmp_path / "wrong.npz", points=np.zeros((4, 3)))
    with pytest.raises(FileFormatError, match=r"no 'xyz' array \(arrays: \['points'\]\)"):
        read_point_cloud(tmp_path / "wrong.npz")
    np.savez(tmp_path / "shape.npz", xyz=np.zeros((4, 2)))
    with pytest.raises(FileFormatError, match=r"'xyz' must be \(N, 3\)"):
        read_point_cloud(tmp_path / "shape.npz")
    with pytest.raises(FileFormatError, match="columns"):
        read_point_cloud(_write(tmp_path / "two.xyz", "1 2\n3 4\n"))


def test_missing_unknown_and_bad_arguments(tmp_path, cloud):
    xyz, normals, colors = cloud
    with pytest.raises(FileNotFoundError, match=r"missing\.ply"):
        read_point_cloud(tmp_path / "missing.ply")
    with pytest.raises(ValueError, match=r"unknown point-cloud suffix '\.las'"):
        read_point_cloud(_write(tmp_path / "a.las", "x"))
    with pytest.raises(ValueError, match=r"unknown point-cloud suffix"):
        write_point_cloud(tmp_path / "a.las", xyz)
    with pytest.raises(ValueError, match=r"xyz must be \(N, 3\), got \(300, 2\)"):
        write_point_cloud(tmp_path / "a.ply", xyz[:, :2])
    with pytest.raises(ValueError, match=r"normals \(299, 3\) must match xyz \(300, 3\)"):
        write_point_cloud(tmp_path / "a.ply", xyz, normals[1:])
    with pytest.raises(ValueError, match="do not store colors"):
        write_point_cloud(tmp_path / "a.txt", xyz, colors=colors)
    assert not list(tmp_path.glob("*.ply")) and not list(tmp_path.glob(".*"))


def test_writes_are_atomic(tmp_path, cloud, monkeypatch):
    xyz, normals, _ = cloud
    path = write_point_cloud(tmp_path / "keep.txt", xyz)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savetxt", boom)
    with pytest.raises(OSError, match="simulated"):
        write_point_cloud(path, xyz * 2, normals)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]  # no temporary left behind
    nested = write_point_cloud(tmp_path / "a" / "b" / "c.npz", xyz)
    assert nested.is_file()
