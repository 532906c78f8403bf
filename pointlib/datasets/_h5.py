"""Reading and validating the h5 files of ModelNet (``ply_hdf5_2048``) and ScanObjectNN.

Every failure raises :class:`~pointlib.datasets.base.DatasetError` whose message starts with the
file: unreadable or corrupt files (h5py raises ``OSError``, ``RuntimeError``, ``KeyError`` ...),
non-numeric arrays, non-finite or implausibly large values (garbage bytes inside a file decode as
numbers up to ``3e38``), normals that cannot be unit vectors, fractional or out-of-range labels and
files without shapes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pointlib.datasets.base import DatasetError

#: Largest accepted ``|coordinate|`` in an h5 file. The releases hold unit-sphere (ModelNet) or
#: metre-scale (ScanObjectNN) clouds; anything larger is corrupt data, not a shape.
MAX_ABS_COORD = 1.0e6
#: Tolerance of the normal checks (components within ``1 + tol``, length at least ``1 - tol``).
NORMAL_TOL = 1.0e-2

_NUMERIC_KINDS = "fiu"


def read_h5(
    path: str | os.PathLike[str],
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    strings: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """The arrays ``required`` (must exist) and ``optional`` (when present) of an h5 file.

    Numeric arrays must have an integer or float dtype; names in ``strings`` are decoded to
    ``str`` (UTF-8). Raises :class:`DatasetError` naming ``path`` for a missing key, a group
    where an array is expected, a string-typed numeric array or an unreadable file.
    """
    from pointlib._optional import require

    h5py = require("h5py", "h5 dataset files")
    p = Path(path)
    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(p, "r") as f:
            missing = [k for k in required if k not in f]
            if missing:
                raise DatasetError(
                    f"{p}: missing {' and '.join(repr(k) for k in missing)} dataset "
                    f"(keys present: {sorted(f.keys())})"
                )
            for key in [*required, *(k for k in optional if k in f)]:
                node = f[key]
                if not isinstance(node, h5py.Dataset):
                    raise DatasetError(f"{p}: {key!r} is a group, expected an array")
                if key in strings:
                    out[key] = np.array([_text(p, key, s) for s in node[()].reshape(-1)])
                    continue
                if node.dtype.kind not in _NUMERIC_KINDS:
                    raise DatasetError(
                        f"{p}: {key!r} has dtype {node.dtype}, expected numbers (int or float)"
                    )
                out[key] = np.asarray(node[()])
    except DatasetError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise DatasetError(f"{p}: unreadable or truncated h5 file ({exc})") from exc
    return out


def _text(p: Path, key: str, value: object) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{p}: {key!r} holds non-UTF-8 bytes ({exc})") from None
    return str(value)


def check_points(arr: np.ndarray, where: str) -> np.ndarray:
    """Check ``(M, N, 3)`` coordinates: finite and ``|x| <= MAX_ABS_COORD``; returns float32."""
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise DatasetError(f"{where}: expected (M, N, 3) points, got shape {arr.shape}")
    arr = np.asarray(arr, np.float32)
    _check_finite(arr, where)
    big = np.abs(arr).reshape(len(arr), -1).max(axis=1, initial=0.0) > MAX_ABS_COORD
    if big.any():
        first = int(np.flatnonzero(big)[0])
        raise DatasetError(
            f"{where}: {int(big.sum())} item(s) have coordinates beyond +-{MAX_ABS_COORD:g} "
            f"(first item {first}, max {float(np.abs(arr[first]).max()):.3g}); corrupt file?"
        )
    return arr


def check_normals(arr: np.ndarray, where: str) -> np.ndarray:
    """Check ``(M, N, 3)`` normals: finite, every component within ``1 + NORMAL_TOL`` of 0 and
    a length of at least ``1 - NORMAL_TOL``.

    Not "unit length" exactly: the official ModelNet40 files hold a few ``(1, 1, 1)`` normals
    (length 1.73), which are kept. Corrupt bytes decode to components far outside ``[-1, 1]``
    (or to near-zero vectors) and are rejected.
    """
    arr = np.asarray(arr, np.float32)
    _check_finite(arr, where)
    norm = np.linalg.norm(arr.astype(np.float64), axis=-1)
    bad = (np.abs(arr).max(axis=-1) > 1.0 + NORMAL_TOL) | (norm < 1.0 - NORMAL_TOL)
    if bad.any():
        item, point = (int(v[0]) for v in np.nonzero(bad))
        raise DatasetError(
            f"{where}: {int(bad.any(axis=-1).sum())} item(s) have normals that are not unit "
            f"vectors (first item {item}, point {point}: {arr[item, point].tolist()}); "
            "corrupt file?"
        )
    return arr


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """``(M,)`` int64 labels: integer-valued and in ``[0, num_classes)``."""
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            bad = labels[~np.isfinite(labels) | (labels != np.round(labels))][0]
            raise DatasetError(f"{where}: label {float(bad):g} is not an integer")
    out_of_range = (labels < 0) | (labels >= num_classes)
    if out_of_range.any():
        bad = labels[out_of_range][0]
        value = int(bad) if float(bad).is_integer() else f"{float(bad):g}"
        raise DatasetError(f"{where}: label {value} out of range for {num_classes} classes")
    return labels.astype(np.int64)


def check_count(n: int, where: str) -> None:
    """Raise when a file or split holds no shapes (an empty dataset is never returned)."""
    if n == 0:
        raise DatasetError(f"{where}: holds no shapes")


def _check_finite(arr: np.ndarray, where: str) -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.unique(np.nonzero(~finite)[0])
        raise DatasetError(f"{where}: NaN/inf values in {len(bad)} item(s), first index {bad[0]}")
