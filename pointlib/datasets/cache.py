"""On-disk caches for preprocessed datasets: keyed by settings, validated, written atomically.

A cache file is one ``.npz`` (no pickles) holding the arrays plus a JSON ``__meta__`` entry with the
settings and a fingerprint of the source files. The file name carries a hash of the settings, so a
change of settings (``num_points``, ``sampling`` ...) selects another file; a change of the sources
(size or mtime of any input file) no longer matches the stored fingerprint and triggers a rebuild
that overwrites the stale file. Writes go to a temporary file in the same folder followed by
``os.replace``, so a reader never sees a half-written cache, even after a crash mid-write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pointlib.io._atomic import make_temp, remove_stale_temps

__all__ = [
    "atomic_write_npz",
    "cached_arrays",
    "default_cache_dir",
    "fingerprint",
    "read_npz",
    "settings_key",
]

CACHE_VERSION = 1


def default_cache_dir(root: str | os.PathLike[str] | None, name: str) -> Path:
    """Where a dataset caches its preprocessed arrays unless ``cache_dir=`` is given.

    ``$POINTLIB_CACHE/<name>/<root-id>``, else ``$XDG_CACHE_HOME/pointlib/<name>/<root-id>``
    (``~/.cache/pointlib/...``), where ``<root-id>`` is a short hash of the resolved ``root``.
    The data folder itself is never written to by default: it may be shared or read-only (and
    ``os.access`` says "writable" to root even on a read-only bind mount).
    """
    env = os.environ.get("POINTLIB_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    base = base if env else base / "pointlib"
    if root is None:
        return base / name
    root_id = hashlib.sha1(os.fspath(Path(root).resolve()).encode()).hexdigest()[:12]
    return base / name / root_id


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short stable hash of JSON-serialisable ``settings`` (16 hex digits)."""
    blob = json.dumps({"v": CACHE_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def fingerprint(paths: Iterable[str | os.PathLike[str]]) -> str:
    """Hash of (path, size, mtime_ns) of every source file: changes when any input changes."""
    h = hashlib.sha1()
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.fspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def atomic_write_npz(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> Path:
    """Write ``arrays`` and ``meta`` to ``path`` atomically (temp file + fsync + ``os.replace``).

    On any error (including ``KeyboardInterrupt``) the temporary file is removed and an existing
    file at ``path`` is left untouched.
    """
    target = Path(path)
    tmp = make_temp(target)
    try:
        with open(tmp, "wb") as fh:
            payload = {k: np.asarray(v) for k, v in arrays.items()}
            payload["__meta__"] = np.asarray(json.dumps(dict(meta), sort_keys=True, default=str))
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def read_npz(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a cache written by :func:`atomic_write_npz`: ``(arrays, meta)``.

    Raises ``ValueError`` naming the file when it is not a readable cache.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
            meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: unreadable cache file ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: cache file has no metadata")
    return arrays, meta


def cached_arrays(
    cache_dir: str | os.PathLike[str] | None,
    stem: str,
    settings: Mapping[str, Any],
    source_fingerprint: str,
    build: Callable[[], dict[str, np.ndarray]],
) -> tuple[dict[str, np.ndarray], Path | None]:
    """Return the arrays for ``settings``, building and caching them once.

    ``cache_dir=None`` disables caching (always builds). The file is
    ``<cache_dir>/<stem>_<settings_key>.npz``; it is rebuilt when its stored settings or source
    fingerprint differ, or when it is unreadable (with a warning). Temporary files of this cache
    left by a killed build are removed first (see :func:`pointlib.io._atomic.remove_stale_temps`).
    """
    if cache_dir is None:
        return build(), None
    path = Path(cache_dir) / f"{stem}_{settings_key(settings)}.npz"
    remove_stale_temps([path])  # half-written files of a killed earlier build
    expected = {
        "settings": json.loads(json.dumps(dict(settings), default=str)),
        "source": source_fingerprint,
        "version": CACHE_VERSION,
    }
    if path.exists():
        try:
            arrays, meta = read_npz(path)
        except ValueError as exc:
            warnings.warn(f"rebuilding cache: {exc}", RuntimeWarning, stacklevel=3)
        else:
            if all(meta.get(k) == v for k, v in expected.items()):
                return arrays, path
    arrays = build()
    try:
        atomic_write_npz(path, arrays, expected)
    except OSError as exc:  # read-only or full disk: still usable, just uncached
        warnings.warn(f"could not write cache {path}: {exc}", RuntimeWarning, stacklevel=3)
        return arrays, None
    return arrays, path
