"""Triangle meshes: reading (``.off`` natively; ``.obj``, ``.ply``, ``.stl`` via trimesh) and
area-weighted surface sampling with face normals.

The OFF reader is pointlib's own so that ModelNet's malformed headers load (``OFF`` glued to the
counts line, e.g. ``OFF490 518 0``) and so that truncated or corrupt files fail with a message
naming the file and the problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from pointlib._optional import require
from pointlib.io.errors import FileFormatError

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

MESH_SUFFIXES = (".off", ".obj", ".ply", ".stl")

__all__ = ["MESH_SUFFIXES", "Mesh", "read_mesh", "sample_mesh"]


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh as plain arrays.

    Attributes:
        vertices: ``(V, 3)`` float64 vertex positions.
        faces: ``(F, 3)`` int64 vertex indices per triangle (polygons are fan-triangulated).
        path: the file it was read from, if any.
    """

    vertices: np.ndarray
    faces: np.ndarray
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        v, f = self.vertices, self.faces
        where = f" (from {self.path})" if self.path is not None else ""
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"Mesh vertices must be (V, 3), got {tuple(v.shape)}{where}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"Mesh faces must be (F, 3), got {tuple(f.shape)}{where}")
        if f.size and (int(f.min()) < 0 or int(f.max()) >= len(v)):
            raise ValueError(
                f"Mesh face indices must lie in [0, {len(v)}), got "
                f"[{int(f.min())}, {int(f.max())}]{where}"
            )

    def __eq__(self, other: object) -> bool:
        """Equal vertices and faces (the source path is ignored)."""
        if not isinstance(other, Mesh):
            return NotImplemented
        return np.array_equal(self.vertices, other.vertices) and np.array_equal(
            self.faces, other.faces
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def face_areas(self) -> np.ndarray:
        """``(F,)`` triangle areas (float64)."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)

    def to_trimesh(self) -> trimesh.Trimesh:
        """The same mesh as a ``trimesh.Trimesh`` (no merging or other processing)."""
        tm = require("trimesh", "Mesh.to_trimesh")
        return tm.Trimesh(vertices=self.vertices, faces=self.faces, process=False)

    def __repr__(self) -> str:
        src = f", path={str(self.path)!r}" if self.path is not None else ""
        return f"Mesh(num_vertices={self.num_vertices}, num_faces={self.num_faces}{src})"


def read_mesh(path: str | os.PathLike[str]) -> Mesh:
    """Read a triangle mesh from ``.off``, ``.obj``, ``.ply`` or ``.stl``.

    ``.off`` is parsed here (tolerating ModelNet's ``OFF490 518 0`` headers, ``#`` comments,
    ``COFF`` colours and polygon faces); the other formats go through trimesh without processing
    (vertices are not merged, so indices match the file).

    Args:
        path: the mesh file.

    Returns:
        A :class:`Mesh` with ``vertices (V, 3)`` float64 and ``faces (F, 3)`` int64.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown suffix.
        FileFormatError: (a ``ValueError``) corrupt, truncated, empty or non-finite content; the
            message names the file.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(
            f"{p}: unknown mesh suffix {p.suffix!r}; supported: {', '.join(MESH_SUFFIXES)}"
        )
    if not p.is_file():
        raise FileNotFoundError(f"mesh file not found: {p}")
    if suffix == ".off":
        vertices, faces = _read_off(p)
    else:
        vertices, faces = _read_with_trimesh(p)
    if faces.shape[0] == 0:
        raise FileFormatError(p, "mesh has no faces")
    if not np.isfinite(vertices).all():
        bad = int((~np.isfinite(vertices)).any(axis=1).sum())
        raise FileFormatError(p, f"{bad} vertices have non-finite coordinates (NaN/inf)")
    return Mesh(vertices, faces, path=p)


def _read_off(p: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = p.read_bytes()
    if b"\x00" in raw[:4096]:
        raise FileFormatError(p, "binary content; expected an ASCII OFF file")
    text = raw.decode("utf-8", errors="replace")
    lines = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    if not lines:
        raise FileFormatError(p, "empty file; expected an 'OFF' header")
    head = lines[0]
    keyword = next((k for k in ("COFF", "NOFF", "OFF") if head.upper().startswith(k)), None)
    if keyword is None:
        raise FileFormatError(p, f"expected an 'OFF' header, got {head[:40]!r}")
    rest = head[len(keyword) :].strip()  # ModelNet: "OFF490 518 0" glues the counts on
    body = lines[1:]
    if not rest:
        if not body:
            raise FileFormatError(p, "truncated: no vertex/face count line after 'OFF'")
        rest, body = body[0], body[1:]
    try:
        counts = [int(t) for t in rest.split()]
    except ValueError:
        raise FileFormatError(p, f"malformed vertex/face count line {rest!r}") from None
    if len(counts) < 2 or counts[0] < 0 or counts[1] < 0:
        raise FileFormatError(p, f"malformed vertex/face count line {rest!r}")
    nv, nf = counts[0], counts[1]
    if len(body) < nv + nf:
        raise FileFormatError(
            p,
            f"truncated: header declares {nv} vertices and {nf} faces, "
            f"but only {len(body)} data lines follow",
        )
    vertices = _parse_vertices(p, body[:nv])
    faces = _parse_faces(p, body[nv : nv + nf], nv)
    return vertices, faces


def _parse_vertices(p: Path, rows: list[str]) -> np.ndarray:
    split = [r.split() for r in rows]
    short = next((i for i, t in enumerate(split) if len(t) < 3), None)
    if short is not None:
        raise FileFormatError(
            p, f"vertex {short} has {len(split[short])} values, expected 3: {rows[short]!r}"
        )
    try:
        flat = [tok for t in split for tok in t[:3]]
        return np.asarray(flat, dtype=np.float64).reshape(len(rows), 3)
    except ValueError as exc:
        raise FileFormatError(p, f"non-numeric vertex data ({exc})") from None


def _parse_faces(p: Path, rows: list[str], nv: int) -> np.ndarray:
    split = [r.split() for r in rows]
    try:
        if all(len(t) >= 4 and t[0] == "3" for t in split):  # all triangles (maybe coloured)
            flat = [tok for t in split for tok in t[1:4]]
            faces = np.asarray(flat, dtype=np.int64).reshape(-1, 3)
        else:
            faces = _fan(p, split)
    except ValueError as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(p, f"non-integer face data ({exc})") from None
    if faces.size and (int(faces.min()) < 0 or int(faces.max()) >= nv):
        raise FileFormatError(
            p,
            f"face indices span [{int(faces.min())}, {int(faces.max())}] "
            f"but the file has {nv} vertices",
        )
    return faces


def _fan(p: Path, split: list[list[str]]) -> np.ndarray:
    """Fan-triangulate polygon faces ``n i0 i1 ... i{n-1} [colour]``."""
    tris: list[tuple[int, int, int]] = []
    for j, s in enumerate(split):
        if not s:
            continue
        n = int(s[0])
        if n < 3 or len(s) < n + 1:
            raise FileFormatError(p, f"face {j} is malformed: {' '.join(s)!r}")
        idx = [int(t) for t in s[1 : n + 1]]
        tris.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, n - 1))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _check_stl(p: Path) -> None:
    """Detect truncated STL files, which trimesh reads as an empty mesh.

    Binary STL: an 80-byte header, a uint32 triangle count, then 50 bytes per triangle. ASCII STL
    (``solid`` ... ``endsolid``) must end with its ``endsolid`` line.
    """
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(84)
        fh.seek(max(0, size - 512))
        tail = fh.read()
    count = int.from_bytes(head[80:84], "little") if len(head) == 84 else -1
    binary_size = 84 + 50 * count
    if head.lstrip()[:5].lower() == b"solid" and size != binary_size:  # ASCII STL
        if b"endsolid" not in tail.lower():
            raise FileFormatError(p, "truncated ASCII STL: no closing 'endsolid' line")
        return
    if count < 0:
        raise FileFormatError(p, f"truncated STL: {size} bytes, a binary STL header needs 84")
    if size < binary_size:
        raise FileFormatError(
            p,
            f"truncated binary STL: header declares {count} triangles ({binary_size} bytes), "
            f"file has {size} bytes",
        )


def _read_with_trimesh(p: Path) -> tuple[np.ndarray, np.ndarray]:
    tm = require("trimesh", f"reading {p.suffix} meshes")
    if p.suffix.lower() == ".stl":
        _check_stl(p)
    try:
        loaded: Any = tm.load(str(p), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for bad files
        raise FileFormatError(p, f"could not be read as a {p.suffix} mesh ({exc})") from exc
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[-1] != 3 or faces.ndim != 2 or faces.shape[-1] != 3:
        raise FileFormatError(p, "could not be read as a triangle mesh")
    if faces.size and (int(faces.min()) < 0 or int(faces.max()) >= len(vertices)):
        raise FileFormatError(
            p,
            f"face indices span [{int(faces.min())}, {int(faces.max())}] "
            f"but the file has {len(vertices)} vertices",
        )
    return vertices, faces


def sample_mesh(
    mesh: Mesh | trimesh.Trimesh,
    num_points: int,
    *,
    seed: int | None = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Sample points uniformly on the surface of ``mesh`` (area-weighted), with face normals.

    A face is picked with probability proportional to its area, then a point uniformly inside it
    (reflected barycentric coordinates). The normal of a point is the unit normal of its face,
    oriented by the face winding (right-hand rule). Zero-area faces are never picked.

    Args:
        mesh: a :class:`Mesh` or a ``trimesh.Trimesh``.
        num_points: N, the number of points (> 0).
        seed: seed of a private ``numpy.random.Generator``; the same seed gives the same points
            (``None`` draws fresh entropy). (default: ``0``)
        dtype: floating dtype of the returned tensors. (default: ``torch.float32``)

    Returns:
        ``(xyz (N, 3), normals (N, 3))`` CPU tensors; computed in float64, then cast.

    Raises:
        ValueError: ``num_points <= 0``, or the mesh has no faces / zero surface area.
    """
    if isinstance(num_points, bool) or int(num_points) != num_points or num_points <= 0:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    name = f" {mesh.path}" if isinstance(mesh, Mesh) and mesh.path is not None else ""
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0:
        raise ValueError(f"mesh{name} has no triangle faces (faces shape {tuple(faces.shape)})")
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    cross = np.cross(b - a, c - a)
    double_area = np.linalg.norm(cross, axis=1)
    total = float(double_area.sum())
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"mesh{name} has zero (or non-finite) surface area; cannot sample it")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(double_area) / total
    pick = np.searchsorted(cdf, rng.random(int(num_points)), side="right")
    pick = np.minimum(pick, len(faces) - 1)
    uv = rng.random((int(num_points), 2))
    flip = uv.sum(axis=1) > 1
    uv[flip] = 1 - uv[flip]
    u, v = uv[:, :1], uv[:, 1:]
    xyz = a[pick] + u * (b[pick] - a[pick]) + v * (c[pick] - a[pick])
    normals = cross[pick] / double_area[pick, None]
    return torch.from_numpy(xyz).to(dtype), torch.from_numpy(normals).to(dtype)
