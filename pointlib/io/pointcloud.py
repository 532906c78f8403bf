"""Point-cloud files: ``.ply``, ``.pcd``, ``.xyz`` / ``.txt`` and ``.npz``.

Every reader returns a dict of CPU float32 tensors: ``xyz (N, 3)``, ``normals (N, 3)`` when the
file has them, ``colors (N, 3)`` in ``[0, 1]`` when it has them, and for text files with extra
columns ``extra (N, C)``. Writers are atomic (temporary file + ``os.replace``).

=========  ======================================================================================
``.ply``   pointlib's own reader/writer (ascii, binary little/big endian; the ``vertex`` element
           with ``x y z``, ``nx ny nz`` and ``red green blue``), so truncated files are detected
``.pcd``   open3d, plus a check that the data section holds the ``POINTS`` the header declares
``.xyz``   text, columns ``x y z [nx ny nz] [extra...]``, comma or whitespace separated
``.txt``   same as ``.xyz`` (ModelNet's ``modelnet40_normal_resampled`` rows load as they are)
``.npz``   arrays ``xyz`` and optionally ``normals``, ``colors``
=========  ======================================================================================
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pointlib._optional import import_open3d
from pointlib.io._atomic import atomic_path
from pointlib.io.errors import FileFormatError

POINT_CLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".txt", ".npz")

__all__ = ["POINT_CLOUD_SUFFIXES", "read_point_cloud", "write_point_cloud"]

ArrayLike = Tensor | np.ndarray


# --------------------------------------------------------------------------------------------
# public API


def read_point_cloud(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a point cloud.

    Args:
        path: a ``.ply``, ``.pcd``, ``.xyz``, ``.txt`` or ``.npz`` file.

    Returns:
        ``{"xyz": (N, 3)}`` plus ``"normals": (N, 3)``, ``"colors": (N, 3)`` (in ``[0, 1]``) and,
        for text files with more columns, ``"extra": (N, C)`` when present. CPU float32 tensors.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown suffix.
        FileFormatError: (a ``ValueError``) corrupt, truncated, empty or non-finite content; the
            message names the file.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in POINT_CLOUD_SUFFIXES:
        raise ValueError(
            f"{p}: unknown point-cloud suffix {p.suffix!r}; "
            f"supported: {', '.join(POINT_CLOUD_SUFFIXES)}"
        )
    if not p.is_file():
        raise FileNotFoundError(f"point-cloud file not found: {p}")
    reader = {
        ".ply": _read_ply,
        ".pcd": _read_pcd,
        ".xyz": _read_text,
        ".txt": _read_text,
        ".npz": _read_npz,
    }[suffix]
    arrays = reader(p)
    out: dict[str, Tensor] = {}
    for key, arr in arrays.items():
        arr = np.asarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
            raise FileFormatError(
                p, f"{len(rows)} rows of {key!r} are not finite (NaN/inf), first at row {rows[0]}"
            )
        out[key] = torch.from_numpy(np.ascontiguousarray(arr))
    if out["xyz"].shape[0] == 0:
        raise FileFormatError(p, "file holds no points")
    return out


def write_point_cloud(
    path: str | os.PathLike[str],
    xyz: ArrayLike,
    normals: ArrayLike | None = None,
    *,
    colors: ArrayLike | None = None,
) -> Path:
    """Write a point cloud atomically; the format follows the suffix.

    Args:
        path: target ``.ply``, ``.pcd``, ``.xyz``, ``.txt`` or ``.npz`` file (parents are created).
        xyz: ``(N, 3)`` points (tensor or array).
        normals: ``(N, 3)`` or ``None``.
        colors: ``(N, 3)`` in ``[0, 1]`` or ``None``; not stored by ``.xyz`` / ``.txt``.

    Returns:
        The path written.

    Text files store float32 with 9 significant digits and float64 with 17, so reading back gives
    the values written. ``.txt`` uses commas (as ModelNet), ``.xyz`` spaces. ``.ply`` is binary
    little-endian float32 (float64 when ``xyz`` is float64).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in POINT_CLOUD_SUFFIXES:
        raise ValueError(
            f"{p}: unknown point-cloud suffix {p.suffix!r}; "
            f"supported: {', '.join(POINT_CLOUD_SUFFIXES)}"
        )
    x = _as_array(xyz, "xyz", p)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"{p}: xyz must be (N, 3), got {tuple(x.shape)}")
    arrays = {"xyz": x}
    for key, val in (("normals", normals), ("colors", colors)):
        if val is None:
            continue
        a = _as_array(val, key, p)
        if a.shape != x.shape:
            raise ValueError(f"{p}: {key} {tuple(a.shape)} must match xyz {tuple(x.shape)}")
        arrays[key] = a
    if colors is not None and suffix in (".xyz", ".txt"):
        raise ValueError(f"{p}: text point clouds do not store colors; use .ply, .pcd or .npz")
    with atomic_path(p) as tmp:
        {
            ".ply": _write_ply,
            ".pcd": _write_pcd,
            ".xyz": _write_text,
            ".txt": _write_text,
            ".npz": _write_npz,
        }[suffix](tmp, arrays, suffix)
    return p


def _as_array(value: ArrayLike, name: str, p: Path) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    a = np.asarray(value)
    if a.dtype not in (np.float32, np.float64):
        if not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"{p}: {name} must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float32)
    return a


# --------------------------------------------------------------------------------------------
# text


def _read_text(p: Path) -> dict[str, np.ndarray]:
    first = None
    with open(p, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            s = line.split("#", 1)[0].strip()
            if s:
                first = s
                break
    if first is None:
        raise FileFormatError(p, "file holds no points")
    delimiter = "," if "," in first else None
    try:
        data = np.loadtxt(p, dtype=np.float64, delimiter=delimiter, comments="#", ndmin=2)
    except ValueError as exc:
        raise FileFormatError(p, f"malformed or truncated text rows ({exc})") from None
    ncol = data.shape[1]
    if ncol < 3:
        raise FileFormatError(p, f"rows have {ncol} columns; expected x y z [nx ny nz] [...]")
    out = {"xyz": data[:, :3]}
    if ncol >= 6:
        out["normals"] = data[:, 3:6]
    rest = data[:, 6:] if ncol >= 6 else data[:, 3:]
    if rest.shape[1]:
        out["extra"] = rest
    return out


def _write_text(tmp: Path, arrays: dict[str, np.ndarray], suffix: str) -> None:
    cols = [arrays["xyz"]] + ([arrays["normals"]] if "normals" in arrays else [])
    wide = any(c.dtype == np.float64 for c in cols)
    data = np.concatenate([c.astype(np.float64 if wide else np.float32) for c in cols], axis=1)
    fmt = "%.17g" if wide else "%.9g"
    np.savetxt(tmp, data, fmt=fmt, delimiter="," if suffix == ".txt" else " ")


# --------------------------------------------------------------------------------------------
# npz


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            if "xyz" not in keys:
                raise FileFormatError(p, f"npz has no 'xyz' array (arrays: {sorted(keys)})")
            out = {k: np.asarray(z[k]) for k in ("xyz", "normals", "colors") if k in keys}
    except FileFormatError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise FileFormatError(
            p, f"corrupt or truncated npz ({type(exc).__name__}: {exc})"
        ) from None
    x = out["xyz"]
    if x.ndim != 2 or x.shape[1] != 3:
        raise FileFormatError(p, f"'xyz' must be (N, 3), got {tuple(x.shape)}")
    for k in ("normals", "colors"):
        if k in out and out[k].shape != x.shape:
            raise FileFormatError(p, f"{k!r} {tuple(out[k].shape)} does not match xyz {x.shape}")
    return out


def _write_npz(tmp: Path, arrays: dict[str, np.ndarray], suffix: str) -> None:
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


# --------------------------------------------------------------------------------------------
# ply

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_NORMAL_NAMES = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
_COLOR_NAMES = (
    ("red", "green", "blue"),
    ("r", "g", "b"),
    ("diffuse_red", "diffuse_green", "diffuse_blue"),
)


class _PlyElement:
    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        self.props: list[tuple[str, str]] = []  # (name, numpy type code)
        self.has_list = False


def _parse_ply_header(p: Path, raw: bytes) -> tuple[str, list[_PlyElement], int]:
    end = re.search(rb"end_header[ \t]*\r?\n", raw)
    if not raw.startswith(b"ply") or end is None:
        raise FileFormatError(p, "not a PLY file (missing 'ply' magic or 'end_header')")
    header = raw[: end.start()].decode("ascii", errors="replace").splitlines()
    fmt = ""
    elements: list[_PlyElement] = []
    for line in header[1:]:
        t = line.split()
        if not t or t[0] in ("comment", "obj_info"):
            continue
        if t[0] == "format" and len(t) >= 2:
            fmt = t[1]
        elif t[0] == "element" and len(t) == 3:
            try:
                count = int(t[2])
            except ValueError:
                raise FileFormatError(p, f"bad PLY element line {line!r}") from None
            if count < 0:
                raise FileFormatError(p, f"PLY element {t[1]!r} has a negative count {count}")
            elements.append(_PlyElement(t[1], count))
        elif t[0] == "property" and elements:
            if len(t) >= 2 and t[1] == "list":
                elements[-1].has_list = True
                elements[-1].props.append((t[-1], "list"))
            elif len(t) == 3 and t[1] in _PLY_TYPES:
                elements[-1].props.append((t[2], _PLY_TYPES[t[1]]))
            else:
                raise FileFormatError(p, f"bad PLY property line {line!r}")
        else:
            raise FileFormatError(p, f"bad PLY header line {line!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise FileFormatError(p, f"unknown PLY format {fmt!r}")
    return fmt, elements, end.end()


def _read_ply(p: Path) -> dict[str, np.ndarray]:
    raw = p.read_bytes()
    fmt, elements, offset = _parse_ply_header(p, raw)
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise FileFormatError(p, f"PLY has no 'vertex' element (elements: {names})")
    vi = names.index("vertex")
    vertex = elements[vi]
    if vertex.has_list:
        raise FileFormatError(p, "PLY 'vertex' element has list properties; not supported")
    if fmt == "ascii":
        lines = raw[offset:].decode("ascii", errors="replace").splitlines()
        skip = sum(e.count for e in elements[:vi])
        rows = lines[skip : skip + vertex.count]
        if len(rows) < vertex.count:
            raise FileFormatError(
                p, f"truncated: header declares {vertex.count} vertices, found {len(rows)} rows"
            )
        try:
            table = np.loadtxt(rows, dtype=np.float64, ndmin=2) if rows else None
        except ValueError as exc:
            raise FileFormatError(p, f"malformed PLY vertex rows ({exc})") from None
        if table is None:
            table = np.zeros((0, len(vertex.props)))
        if table.shape[1] != len(vertex.props):
            raise FileFormatError(
                p,
                f"PLY vertex rows have {table.shape[1]} values, "
                f"header declares {len(vertex.props)} properties",
            )
        columns = {name: table[:, i] for i, (name, _) in enumerate(vertex.props)}
    else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        for e in elements[:vi]:
            if e.has_list:
                raise FileFormatError(
                    p, f"binary PLY with list element {e.name!r} before 'vertex'; not supported"
                )
            offset += e.count * np.dtype([(n, endian + t) for n, t in e.props]).itemsize
        dtype = np.dtype([(n, endian + t) for n, t in vertex.props])
        need = vertex.count * dtype.itemsize
        if len(raw) - offset < need:
            raise FileFormatError(
                p,
                f"truncated: {vertex.count} vertices need {need} bytes of data, "
                f"file has {max(len(raw) - offset, 0)}",
            )
        rec = np.frombuffer(raw, dtype=dtype, count=vertex.count, offset=offset)
        columns = {name: rec[name] for name, _ in vertex.props}
    if not all(k in columns for k in "xyz"):
        raise FileFormatError(p, f"PLY vertex lacks x/y/z (properties: {list(columns)})")
    out = {"xyz": np.stack([columns[k] for k in "xyz"], axis=1)}
    for keys in _NORMAL_NAMES:
        if all(k in columns for k in keys):
            out["normals"] = np.stack([columns[k] for k in keys], axis=1)
            break
    for keys in _COLOR_NAMES:
        if all(k in columns for k in keys):
            c = np.stack([columns[k] for k in keys], axis=1).astype(np.float64)
            code = dict(vertex.props)[keys[0]]
            if code[0] in "ui":  # integer colours: scale by the type's maximum
                c = c / float(np.iinfo(np.dtype(code)).max)
            out["colors"] = c
            break
    return out


def _write_ply(tmp: Path, arrays: dict[str, np.ndarray], suffix: str) -> None:
    wide = arrays["xyz"].dtype == np.float64
    ftype, fcode = ("double", "f8") if wide else ("float", "f4")
    fields: list[tuple[str, str]] = [(k, "<" + fcode) for k in "xyz"]
    header = [f"property {ftype} {k}" for k in "xyz"]
    if "normals" in arrays:
        fields += [(k, "<" + fcode) for k in ("nx", "ny", "nz")]
        header += [f"property {ftype} {k}" for k in ("nx", "ny", "nz")]
    if "colors" in arrays:
        fields += [(k, "u1") for k in ("red", "green", "blue")]
        header += [f"property uchar {k}" for k in ("red", "green", "blue")]
    n = arrays["xyz"].shape[0]
    rec = np.empty(n, dtype=np.dtype(fields))
    for i, k in enumerate("xyz"):
        rec[k] = arrays["xyz"][:, i]
    if "normals" in arrays:
        for i, k in enumerate(("nx", "ny", "nz")):
            rec[k] = arrays["normals"][:, i]
    if "colors" in arrays:
        c = np.clip(np.rint(np.asarray(arrays["colors"], dtype=np.float64) * 255), 0, 255)
        for i, k in enumerate(("red", "green", "blue")):
            rec[k] = c[:, i].astype(np.uint8)
    text = "\n".join(
        ["ply", "format binary_little_endian 1.0", "comment written by pointlib",
         f"element vertex {n}", *header, "end_header"]
    ) + "\n"  # fmt: skip
    with open(tmp, "wb") as fh:
        fh.write(text.encode("ascii"))
        fh.write(rec.tobytes())


# --------------------------------------------------------------------------------------------
# pcd (open3d)


def _pcd_header(p: Path, raw: bytes) -> tuple[dict[str, list[str]], int]:
    fields: dict[str, list[str]] = {}
    pos = 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        if nl < 0:
            break
        line = raw[pos:nl].decode("ascii", errors="replace").strip()
        pos = nl + 1
        if not line or line.startswith("#"):
            continue
        key, *vals = line.split()
        fields[key.upper()] = vals
        if key.upper() == "DATA":
            return fields, pos
    raise FileFormatError(p, "not a PCD file (no 'DATA' line in the header)")


def _check_pcd_data(p: Path, raw: bytes) -> int:
    """The ``POINTS`` count after checking the data section really holds that many points."""
    head, start = _pcd_header(p, raw)
    try:
        npts = int(head.get("POINTS", head.get("WIDTH", ["-1"]))[0])
        sizes = [int(s) for s in head.get("SIZE", [])]
        counts = [int(c) for c in head.get("COUNT", ["1"] * len(sizes))]
    except ValueError:
        raise FileFormatError(p, "malformed PCD header (POINTS/SIZE/COUNT)") from None
    if npts < 0 or not sizes or "x" not in head.get("FIELDS", []):
        raise FileFormatError(p, "malformed PCD header (needs FIELDS with x, SIZE and POINTS)")
    kind = head["DATA"][0].lower() if head["DATA"] else ""
    if kind == "ascii":
        rows = [r for r in raw[start:].splitlines() if r.strip()]
        ncol = sum(counts)
        if len(rows) < npts:
            raise FileFormatError(p, f"truncated: header declares {npts} points, found {len(rows)}")
        bad = next((i for i, r in enumerate(rows[:npts]) if len(r.split()) != ncol), None)
        if bad is not None:
            raise FileFormatError(p, f"PCD data row {bad} does not have {ncol} values")
    elif kind == "binary":
        need = npts * sum(s * c for s, c in zip(sizes, counts))
        if len(raw) - start < need:
            raise FileFormatError(
                p, f"truncated: {npts} points need {need} bytes, file has {len(raw) - start}"
            )
    elif kind != "binary_compressed":
        raise FileFormatError(p, f"unknown PCD DATA kind {kind!r}")
    return npts


def _read_pcd(p: Path) -> dict[str, np.ndarray]:
    npts = _check_pcd_data(p, p.read_bytes())
    o3d = import_open3d("reading .pcd files")
    pcd = o3d.io.read_point_cloud(str(p), format="pcd")
    got = len(pcd.points)
    if got != npts:
        raise FileFormatError(p, f"open3d read {got} points, the header declares {npts}")
    out = {"xyz": np.asarray(pcd.points)}
    if pcd.has_normals():
        out["normals"] = np.asarray(pcd.normals)
    if pcd.has_colors():
        out["colors"] = np.asarray(pcd.colors)
    return out


def _write_pcd(tmp: Path, arrays: dict[str, np.ndarray], suffix: str) -> None:
    o3d = import_open3d("writing .pcd files")
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(arrays["xyz"].astype(np.float64))
    if "normals" in arrays:
        pcd.normals = o3d.utility.Vector3dVector(arrays["normals"].astype(np.float64))
    if "colors" in arrays:
        pcd.colors = o3d.utility.Vector3dVector(arrays["colors"].astype(np.float64))
    if not o3d.io.write_point_cloud(str(tmp), pcd, write_ascii=False, compressed=False):
        raise OSError(f"open3d could not write {tmp}")
