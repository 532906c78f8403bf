"""Mesh files -> sampled points with face normals (via :mod:`pointlib.io`)."""

from __future__ import annotations

import os

import numpy as np

from pointlib.datasets.base import DatasetError


def mesh_points(
    path: str | os.PathLike[str], num_points: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted surface sample of the mesh at ``path``: ``(xyz, normals)`` ``(N, 3)`` float32.

    Read/sampling failures (missing, truncated or corrupt file, zero area) raise
    :class:`DatasetError` naming the file.
    """
    from pointlib.io import read_mesh, sample_mesh

    try:
        mesh = read_mesh(path)
        xyz, normals = sample_mesh(mesh, num_points, seed=seed)
    except FileNotFoundError:
        raise DatasetError(f"{path}: mesh file listed in the split is missing") from None
    except (ValueError, OSError, IndexError) as exc:
        msg = str(exc)
        raise DatasetError(msg if str(path) in msg else f"{path}: {msg}") from exc
    return xyz.numpy().astype(np.float32), normals.numpy().astype(np.float32)
