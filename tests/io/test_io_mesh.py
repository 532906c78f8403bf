"""pointlib.io.read_mesh / sample_mesh: OFF (ModelNet headers), OBJ/PLY/STL, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pointlib.io import FileFormatError, Mesh, read_mesh, sample_mesh

trimesh = pytest.importorskip("trimesh")

CUBE_V = [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
CUBE_QUADS = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
REAL_FACES = {1: 3546, 2: 664, 3: 19985, 4: 3519, 5: 30734}


def off_text(header: str, vertices, faces) -> str:
    lines = [header]
    lines += [" ".join(f"{c:g}" for c in v) for v in vertices]
    lines += [" ".join(str(i) for i in (len(f), *f)) for f in faces]
    return "\n".join(lines) + "\n"


def write(path, text: str | bytes):
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return path


@pytest.mark.parametrize("bathtub", sorted(REAL_FACES))
def test_real_modelnet_meshes_load(shared_data, bathtub):
    path = shared_data / "meshes" / f"bathtub_{bathtub:04d}.off"
    mesh = read_mesh(path)
    assert mesh.num_faces == REAL_FACES[bathtub]
    assert mesh.vertices.dtype == np.float64 and mesh.faces.dtype == np.int64
    assert np.isfinite(mesh.vertices).all() and 20 < np.abs(mesh.vertices).max() < 40
    assert mesh.path == path and "bathtub" in repr(mesh)
    if bathtub in (2, 4):  # independent oracle: trimesh's own OFF reader, without processing
        ref = trimesh.load(str(path), process=False)
        np.testing.assert_array_equal(mesh.vertices, ref.vertices)
        np.testing.assert_array_equal(mesh.faces, ref.faces)


def test_modelnet_glued_header(tmp_path):
    """ModelNet files such as 'OFF490 518 0' glue the counts to the keyword."""
    tris = [t for q in CUBE_QUADS for t in ([q[0], q[1], q[2]], [q[0], q[2], q[3]])]
    mesh = read_mesh(write(tmp_path / "glued.off", off_text("OFF8 12 0", CUBE_V, tris)))
    assert (mesh.num_vertices, mesh.num_faces) == (8, 12)
    np.testing.assert_allclose(mesh.face_areas().sum(), 6.0)
    same = read_mesh(write(tmp_path / "fine.off", off_text("OFF\n8 12 0", CUBE_V, tris)))
    assert same == mesh
    inline = read_mesh(write(tmp_path / "inline.off", off_text("OFF 8 12 0", CUBE_V, tris)))
    assert inline == mesh


def test_off_polygons_comments_and_colours(tmp_path):
    text = "# a comment\n" + off_text("COFF\n# counts next\n8 6 12", CUBE_V, CUBE_QUADS)
    text = text.replace("0.5 0.5 0.5\n", "0.5 0.5 0.5 255 0 0 255\n")  # a COFF vertex colour
    mesh = read_mesh(write(tmp_path / "quads.off", text))
    assert mesh.num_faces == 12  # six quads, fan-triangulated
    np.testing.assert_allclose(mesh.face_areas().sum(), 6.0)
    np.testing.assert_array_equal(mesh.vertices, np.asarray(CUBE_V))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty file"),
        ("PLY\n3 1 0\n", "expected an 'OFF' header"),
        ("OFF\n", "no vertex/face count line"),
        ("OFF\nthree 1 0\n", "malformed vertex/face count line"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "truncated: header declares 3 vertices and 1 faces"),
        ("OFF\n3 1 0\n0 0 0\n1 0 zero\n0 1 0\n3 0 1 2\n", "could not convert string to float"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n", "face index outside the range"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1\n", "face 0 is malformed"),
        ("OFF\n3 1 0\n0 0 0\n1 0 nan\n0 1 0\n3 0 1 2\n", "non-finite"),
        ("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "no faces"),
        (b"OFF\x00\x01\x02binary junk", "binary content"),
    ],
)
def test_corrupt_off_names_the_file(tmp_path, content, match):
    path = write(tmp_path / "bad_shape.off", content)
    with pytest.raises(FileFormatError, match=match) as info:
        read_mesh(path)
    assert str(path) in str(info.value) and info.value.path == path
    assert isinstance(info.value, ValueError)


def test_truncated_real_mesh(shared_data, tmp_path):
    raw = (shared_data / "meshes" / "bathtub_0002.off").read_bytes()
    path = write(tmp_path / "bathtub_0002.off", raw[: len(raw) // 2])
    with pytest.raises(FileFormatError, match="truncated") as info:
        read_mesh(path)
    assert "bathtub_0002.off" in str(info.value)


def test_missing_and_unknown(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.off"):
        read_mesh(tmp_path / "nope.off")
    with pytest.raises(ValueError, match=r"unknown mesh suffix '\.3ds'"):
        read_mesh(write(tmp_path / "x.3ds", "whatever"))


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".stl", ".off"])
def test_trimesh_formats_round_trip(tmp_path, suffix):
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    path = tmp_path / f"box{suffix}"
    if suffix == ".off":
        path.write_text(off_text("OFF\n8 12 0", box.vertices, box.faces))
    else:
        box.export(str(path))
    mesh = read_mesh(path)
    assert mesh.num_faces == 12
    np.testing.assert_allclose(mesh.face_areas().sum(), box.area)
    # the same triangles (as coordinate sets), whatever vertex order the format keeps
    ours = {tuple(np.round(mesh.vertices[f], 6).ravel()) for f in mesh.faces}
    theirs = {tuple(np.round(box.vertices[f], 6).ravel()) for f in box.faces}
    assert ours == theirs
    assert mesh.to_trimesh().is_watertight or suffix == ".stl"


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".stl"])
def test_corrupt_trimesh_formats(tmp_path, suffix):
    path = write(tmp_path / f"broken{suffix}", b"\x00\xff not a mesh at all \x13\x37" * 3)
    with pytest.raises(FileFormatError) as info:
        read_mesh(path)
    assert str(path) in str(info.value)


def test_truncated_binary_ply_mesh(tmp_path):
    path = tmp_path / "box.ply"
    trimesh.creation.box().export(str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 40])
    with pytest.raises(FileFormatError, match=r"box\.ply"):
        read_mesh(path)


def two_triangles() -> Mesh:
    """Two triangles in z=0 (normal +z) and x=0 (normal +x), areas 0.5 and 1.5."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 5], [0, 3, 5], [0, 0, 6]], float)
    return Mesh(v, np.array([[0, 1, 2], [3, 4, 5]]))


def test_sample_mesh_area_weighted_with_face_normals():
    mesh = two_triangles()
    xyz, normals = sample_mesh(mesh, 8000, seed=0)
    assert xyz.shape == normals.shape == (8000, 3) and xyz.dtype == torch.float32
    on_first = xyz[:, 2].abs() < 1e-6
    # area-weighted: P(first) = 0.5 / 2.0 = 0.25 (binomial sd ~0.005)
    assert abs(float(on_first.float().mean()) - 0.25) < 0.02
    torch.testing.assert_close(
        normals[on_first], torch.tensor([0.0, 0, 1]).expand(int(on_first.sum()), 3)
    )
    torch.testing.assert_close(
        normals[~on_first], torch.tensor([1.0, 0, 0]).expand(int((~on_first).sum()), 3)
    )
    # inside the triangles: first one x, y >= 0, x + y <= 1
    p = xyz[on_first]
    assert (p[:, :2] >= 0).all() and (p[:, :2].sum(1) <= 1 + 1e-6).all()
    q = xyz[~on_first]
    assert (q[:, 0].abs() < 1e-6).all() and (q[:, 2] >= 5 - 1e-6).all()
    # uniform inside a triangle: the mean is the centroid
    torch.testing.assert_close(p.mean(0), torch.tensor([1 / 3, 1 / 3, 0]), atol=0.03, rtol=0)


def test_sample_mesh_is_seeded(shared_data):
    mesh = read_mesh(shared_data / "meshes" / "bathtub_0002.off")
    a = sample_mesh(mesh, 1024, seed=7)
    b = sample_mesh(mesh, 1024, seed=7)
    c = sample_mesh(mesh, 1024, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    torch.testing.assert_close(a[1].norm(dim=1), torch.ones(1024))
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    assert (a[0].numpy() >= lo - 1e-4).all() and (a[0].numpy() <= hi + 1e-4).all()
    # a trimesh.Trimesh is accepted and gives the same points
    tm = mesh.to_trimesh()
    assert torch.equal(sample_mesh(tm, 1024, seed=7)[0], a[0])
    assert sample_mesh(mesh, 5, seed=1, dtype=torch.float64)[0].dtype == torch.float64


def test_sample_mesh_skips_degenerate_faces_and_validates():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 2, 2]], float)
    mesh = Mesh(v, np.array([[0, 1, 2], [3, 3, 3], [0, 1, 1]]))
    xyz, normals = sample_mesh(mesh, 500, seed=0)
    assert (xyz[:, 2] == 0).all() and torch.isfinite(normals).all()
    with pytest.raises(ValueError, match="positive integer"):
        sample_mesh(mesh, 0, seed=0)
    with pytest.raises(ValueError, match="zero"):
        sample_mesh(Mesh(v, np.array([[3, 3, 3]])), 10, seed=0)
    with pytest.raises(ValueError, match=r"face indices must lie in \[0, 4\)"):
        Mesh(v, np.array([[0, 1, 4]]))
    with pytest.raises(ValueError, match=r"vertices must be \(V, 3\)"):
        Mesh(v[:, :2], np.array([[0, 1, 2]]))
