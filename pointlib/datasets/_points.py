"""Point-level helpers shared by the loaders: parsing, subsampling, normalising, normals."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from pointlib.datasets.base import DatasetError

SAMPLING_METHODS = ("fps", "first", "random")


def read_text(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of a list file (split list, class names ...).

    ``FileNotFoundError`` passes through (callers name the missing file); undecodable bytes or
    another read error raise :class:`DatasetError` naming the file.
    """
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{p}: not a UTF-8 text file ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read ({exc})") from exc


def read_txt_points(
    path: str | os.PathLike[str], ncols: int, *, delimiter: str | None = None
) -> np.ndarray:
    """Read a text point file with ``ncols`` numbers per row as ``(n, ncols)`` float32.

    ``delimiter=None`` accepts commas and/or whitespace. Rows with a non-finite value (NaN/inf)
    are **dropped with a warning** (documented fallback); a missing file, an empty file, a
    non-numeric token or a row with the wrong number of columns (a truncated file) raises
    :class:`DatasetError` naming the file.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{p}: file listed in the split is missing") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{p}: not a UTF-8 text point file ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read point file ({exc})") from exc
    if delimiter is None or delimiter == ",":
        text = text.replace(",", " ")
    lines = [(n, r.split()) for n, r in enumerate(text.splitlines(), start=1)]
    lines = [(n, r) for n, r in lines if r]
    if not lines:
        raise DatasetError(f"{p}: empty point file")
    # each row on its own: one short row next to a long one must not shift the columns between
    bad = next(((n, r) for n, r in lines if len(r) != ncols), None)
    if bad is not None:
        raise DatasetError(
            f"{p}: line {bad[0]} has {len(bad[1])} values, expected {ncols} "
            "(truncated or corrupt file?)"
        )
    rows = [r for _, r in lines]
    try:
        arr = np.array(rows, dtype=np.float32)
    except ValueError as exc:
        raise DatasetError(f"{p}: non-numeric value in point file ({exc})") from exc
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        n_bad = int((~finite).sum())
        if n_bad == len(arr):
            raise DatasetError(f"{p}: every row contains NaN/inf")
        warnings.warn(
            f"{p}: dropped {n_bad} row(s) with NaN/inf values", RuntimeWarning, stacklevel=2
        )
        arr = arr[finite]
    return arr


def _fps_batched(clouds: list[np.ndarray], num_points: int, chunk: int = 128) -> list[np.ndarray]:
    """FPS (start index 0, :func:`pointlib.ops.fps`) on clouds of any sizes ``>= num_points``.

    Clouds are processed in chunks of similar size, padded with copies of their point 0: a copy
    sits at distance 0 from the (already selected) point 0 and is never chosen while real points
    remain, so padding does not change the result.
    """
    from pointlib.ops import fps

    out: list[np.ndarray] = [np.empty(0, np.int64)] * len(clouds)
    order = np.argsort([len(c) for c in clouds], kind="stable")
    for s in range(0, len(order), chunk):
        ids = order[s : s + chunk]
        nmax = max(len(clouds[i]) for i in ids)
        batch = np.empty((len(ids), nmax, 3), np.float32)
        for j, i in enumerate(ids):
            c = clouds[i][:, :3]
            batch[j, : len(c)] = c
            batch[j, len(c) :] = c[0]
        idx = fps(torch.from_numpy(batch), num_points, start=0).numpy()
        for j, i in enumerate(ids):
            out[i] = idx[j].astype(np.int64)
    return out


def sample_indices(
    clouds: Sequence[np.ndarray],
    num_points: int,
    method: str,
    seed: int,
    names: Sequence[str] | None = None,
    *,
    offset: int = 0,
) -> np.ndarray:
    """Indices ``(M, num_points)`` int64 choosing ``num_points`` rows of each cloud.

    ``method``: ``"fps"`` (farthest point sampling from index 0, deterministic), ``"first"``
    (the first ``num_points`` rows) or ``"random"`` (a seeded choice without replacement, kept in
    file order). A cloud with **fewer** rows than ``num_points`` keeps all its rows followed by a
    seeded choice of repeated rows (``numpy.random.default_rng([seed, i])``) and a warning.
    ``offset`` is added to ``i`` (the item's global index when called chunk by chunk).
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"sampling must be one of {SAMPLING_METHODS}, got {method!r}")
    out = np.empty((len(clouds), num_points), np.int64)
    short = [i for i, c in enumerate(clouds) if len(c) < num_points]
    for i in short:
        n = len(clouds[i])
        extra = np.random.default_rng([seed, offset + i]).choice(n, num_points - n, replace=True)
        out[i] = np.concatenate([np.arange(n), extra])
    if short:
        who = names[short[0]] if names is not None else f"item {short[0]}"
        warnings.warn(
            f"{len(short)} shape(s) have fewer than {num_points} points (e.g. {who}); "
            "their points are repeated by a seeded random choice",
            RuntimeWarning,
            stacklevel=2,
        )
    full = [i for i in range(len(clouds)) if len(clouds[i]) >= num_points]
    if method == "first":
        out[full] = np.arange(num_points)
    elif method == "random":
        for i in full:
            rng = np.random.default_rng([seed, offset + i])
            out[i] = np.sort(rng.choice(len(clouds[i]), num_points, replace=False))
    elif full:
        for i, idx in zip(full, _fps_batched([clouds[i] for i in full], num_points)):
            out[i] = idx
    return out


def estimate_normals(
    xyz: np.ndarray, k: int = 32, chunk: int = 64, *, sign: str = "invariant"
) -> np.ndarray:
    """Unit normals ``(M, N, 3)`` float32 for clouds ``xyz (M, N, 3)``.

    :func:`pointlib.features.estimate_normals`: the LRA of spec §1.6 (``k`` nearest neighbours
    including the point, weights ``d_max - d_j``, eigenvector of the smallest eigenvalue).
    ``sign="invariant"`` (default) orients it **away from the cloud centroid**
    (``n · (x - c) >= 0``); both the axis and ``x - c`` rotate with the cloud, so the sign
    commutes with any rotation. ``sign="raw"`` keeps the eigensolver's sign, as the reference
    code's LRA normals (``faithful=True``; not rotation invariant). Runs in chunks of ``chunk``
    clouds to bound memory.
    """
    from pointlib.features import estimate_normals as lra_normals

    if sign not in NORMAL_SIGNS:
        raise ValueError(f"sign must be one of {NORMAL_SIGNS}, got {sign!r}")
    out = np.empty(xyz.shape, dtype=np.float32)
    for s in range(0, len(xyz), chunk):
        pts = torch.from_numpy(np.ascontiguousarray(xyz[s : s + chunk], dtype=np.float32))
        n = lra_normals(pts, k=min(k, pts.shape[1]), faithful=sign == "raw")
        out[s : s + chunk] = n.numpy()
    return out


#: Sign rules of :func:`estimate_normals`.
NORMAL_SIGNS = ("invariant", "raw")


def check_sampling(method: str) -> str:
    """Validate a ``sampling=`` argument early (before any file is read)."""
    if method not in SAMPLING_METHODS:
        raise ValueError(f"sampling must be one of {SAMPLING_METHODS}, got {method!r}")
    return method


def load_sampled(
    load: Callable[[int], np.ndarray],
    count: int,
    num_points: int,
    method: str,
    seed: int,
    names: Sequence[str],
    chunk: int = 256,
) -> np.ndarray:
    """Read ``count`` clouds with ``load(i) -> (n_i, C)`` and subsample each to ``num_points``.

    Works chunk by chunk (``chunk`` clouds at a time), so only the sampled points of the whole
    dataset are held in memory. Returns ``(count, num_points, C)`` float32.
    """
    out: np.ndarray | None = None
    for s in range(0, count, chunk):
        clouds = [load(i) for i in range(s, min(count, s + chunk))]
        idx = sample_indices(clouds, num_points, method, seed, names[s : s + chunk], offset=s)
        pts = np.stack([c[i] for c, i in zip(clouds, idx)]).astype(np.float32)
        if out is None:
            out = np.empty((count, num_points, pts.shape[-1]), np.float32)
        out[s : s + len(pts)] = pts
    if out is None:
        raise ValueError("load_sampled: no items")
    return out
