"""Seeded rotation protocols: every model sees the same rotated copy of every sample.

``none`` is the identity, ``z`` a uniform angle about the dataset's up axis, ``so3`` a
Haar-uniform rotation (:func:`pointlib.geometry.random_rotation`). The rotation of sample ``i`` in
copy ``r`` is drawn from a generator seeded by ``(seed, r, i)`` only, so it does not depend on the
batch size, the order of the loader, the number of processes or the model being evaluated.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

from pointlib.geometry import (
    AXES,
    apply_rotation,
    random_rotation,
    random_rotation_about_axis,
    rotation_about_axis,
)

__all__ = ["mix_seed", "rotate_batch", "sample_rotations", "tilted_axis"]


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from a tuple of integers (stable across runs and platforms)."""
    h = hashlib.blake2b(",".join(str(int(v)) for v in values).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 1


def sample_rotations(
    mode: str,
    indices: Tensor | list[int],
    *,
    seed: int,
    copy: int = 0,
    up_axis: str = "z",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Rotations ``(B, 3, 3)`` for dataset indices ``indices`` in rotated copy ``copy``."""
    idx = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
    if mode == "none":
        eye = torch.eye(3, dtype=dtype, device=device)
        return eye.expand(len(idx), 3, 3).clone()
    if mode not in ("z", "so3"):
        raise ValueError(f"rotation mode must be none, z or so3, got {mode!r}")
    mats = []
    for i in idx:
        g = torch.Generator().manual_seed(mix_seed(seed, copy, i))
        if mode == "so3":
            mats.append(random_rotation(1, g, dtype=torch.float64))
        else:
            mats.append(random_rotation_about_axis(1, up_axis, g, dtype=torch.float64))
    return torch.cat(mats).to(dtype=dtype, device=device)


def rotate_batch(
    xyz: Tensor, normals: Tensor | None, rotations: Tensor
) -> tuple[Tensor, Tensor | None]:
    """Apply per-sample rotations ``(B, 3, 3)`` to ``xyz (B, N, 3)`` and ``normals`` together."""
    return apply_rotation(rotations.to(xyz.device), xyz, normals)


def tilted_axis(up_axis: str = "z", tilt_deg: float = 45.0) -> Tensor:
    """The up axis tilted by ``tilt_deg`` towards the next coordinate axis (float64 unit vector).

    Rotations about it mix the up direction with the horizontal plane, which z-only training
    never sees; the angle sweep of the robustness report uses it.
    """
    if up_axis not in AXES:
        raise ValueError(f"up_axis must be x, y or z, got {up_axis!r}")
    u = AXES[up_axis]
    o = (u + 1) % 3
    t = math.radians(tilt_deg)
    axis = torch.zeros(3, dtype=torch.float64)
    axis[u], axis[o] = math.cos(t), math.sin(t)
    return axis


def sweep_rotation(angle_deg: float, up_axis: str = "z", tilt_deg: float = 45.0) -> Tensor:
    """The rotation ``(3, 3)`` (float64) by ``angle_deg`` about :func:`tilted_axis`."""
    return rotation_about_axis(math.radians(angle_deg), tilted_axis(up_axis, tilt_deg))
