"""Readers reject malformed headers and truncated meshes with errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from pointlib.io import FileFormatError, read_mesh, read_point_cloud

trimesh = pytest.importorskip("trimesh")


def _ply_header(fmt: str, count: int) -> bytes:
    return (
        f"ply\nformat {fmt} 1.0\nelement vertex {count}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    ).encode()


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian"])
def test_ply_negative_vertex_count(tmp_path, fmt):
    f = tmp_path / "neg.ply"
    body = b"0 0 0\n1 0 0\n0 1 0\n" if fmt == "ascii" else np.arange(9, dtype="<f4").tobytes()
    f.write_bytes(_ply_header(fmt, -2) + body)
    with pytest.raises(FileFormatError, match=r"neg\.ply: PLY element 'vertex' has a negative"):
        read_point_cloud(f)


def _box_stl(tmp_path, ascii: bool) -> tuple[bytes, int]:
    box = trimesh.creation.box()
    data = box.export(file_type="stl_ascii" if ascii else "stl")
    return (data.encode() if isinstance(data, str) else data), len(box.faces)


def test_truncated_binary_stl(tmp_path):
    data, n = _box_stl(tmp_path, ascii=False)
    f = tmp_path / "box.stl"
    f.write_bytes(data)
    assert read_mesh(f).num_faces == n  # the intact file reads
    f.write_bytes(data[: 84 + 50 * 5 + 17])
    with pytest.raises(
        FileFormatError, match=rf"box\.stl: truncated binary STL: header declares {n} triangles"
    ):
        read_mesh(f)
    f.write_bytes(data[:40])
    with pytest.raises(FileFormatError, match=r"box\.stl: truncated STL: 40 bytes"):
        read_mesh(f)


def test_truncated_ascii_stl(tmp_path):
    data, n = _box_stl(tmp_path, ascii=True)
    f = tmp_path / "box.stl"
    f.write_bytes(data)
    assert read_mesh(f).num_faces == n
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"box\.stl: truncated ASCII STL"):
        read_mesh(f)


def test_ply_mesh_face_index_out_of_range(tmp_path):
    f = tmp_path / "tri.ply"
    f.write_text(
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n"
    )
    with pytest.raises(FileFormatError, match=r"tri\.ply: face indices span \[0, 7\] but the"):
        read_mesh(f)
