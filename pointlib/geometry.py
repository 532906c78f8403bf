"""Rotations: Haar-uniform sampling, axis-angle, and applying one rotation to points and normals.

Convention: a rotation matrix ``R`` maps a point ``p`` (column vector) to ``R @ p``; for
channels-last clouds ``(B, N, 3)`` that is ``xyz @ R.transpose(-1, -2)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

AXES = {"x": 0, "y": 1, "z": 2}


def random_rotation(
    n: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` independent Haar-uniform rotations in SO(3), shape ``(n, 3, 3)``.

    Samples unit quaternions from a normalised 4-D Gaussian (uniform on S^3, hence Haar on SO(3)),
    not Euler angles (which are not uniform). Deterministic for a seeded ``generator``; drawn in
    float64 on the CPU, then cast, so the same seed gives the same rotations on every device.
    """
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return quaternion_to_matrix(q).to(dtype=dtype, device=device)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Unit quaternions ``(..., 4)`` as ``(w, x, y, z)`` -> rotation matrices ``(..., 3, 3)``."""
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def rotation_about_axis(angle: Tensor | float, axis: str | Tensor = "z") -> Tensor:
    """Rotations by ``angle`` (radians, shape ``(...)``) about ``axis`` -> ``(..., 3, 3)``.

    ``axis`` is ``"x"``, ``"y"``, ``"z"`` or a 3-vector (normalised here); Rodrigues' formula.
    The result has the dtype and device of ``angle`` (float64 for a Python number).
    """
    if not isinstance(angle, Tensor):
        angle = torch.tensor(float(angle), dtype=torch.float64)
    elif not angle.is_floating_point():
        angle = angle.double()
    if isinstance(axis, str):
        if axis not in AXES:
            raise ValueError(f"axis must be one of x, y, z or a 3-vector, got {axis!r}")
        a = torch.zeros(3, dtype=angle.dtype, device=angle.device)
        a[AXES[axis]] = 1
    else:
        a = torch.as_tensor(axis, dtype=angle.dtype, device=angle.device)
        if a.shape != (3,) or float(a.norm()) == 0:
            raise ValueError(f"axis vector must be a non-zero 3-vector, got {tuple(a.shape)}")
        a = a / a.norm()
    c, s = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    K = torch.zeros(3, 3, dtype=angle.dtype, device=angle.device)
    K[0, 1], K[0, 2], K[1, 0], K[1, 2], K[2, 0], K[2, 1] = -a[2], a[1], a[2], -a[0], -a[1], a[0]
    eye = torch.eye(3, dtype=angle.dtype, device=angle.device)
    return eye + s * K + (1 - c) * (K @ K)


def random_rotation_about_axis(
    n: int,
    axis: str | Tensor = "z",
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` rotations about ``axis`` with angles uniform in ``[0, 2*pi)`` -> ``(n, 3, 3)``."""
    angle = torch.rand(n, generator=generator, dtype=torch.float64) * (2 * math.pi)
    return rotation_about_axis(angle, axis).to(dtype=dtype, device=device)


def apply_rotation(
    rotation: Tensor, xyz: Tensor, normals: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Rotate points and their normals together.

    Args:
        rotation: ``(3, 3)`` or ``(B, 3, 3)`` rotation(s).
        xyz: ``(N, 3)`` or ``(B, N, 3)`` points.
        normals: same shape as ``xyz`` or ``None``.

    Returns:
        ``(xyz', normals')`` with ``p' = R p`` for every point and normal.
    """
    if rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must be (3, 3) or (B, 3, 3), got {tuple(rotation.shape)}")
    if xyz.shape[-1] != 3:
        raise ValueError(f"xyz must end in 3 coordinates, got {tuple(xyz.shape)}")
    if normals is not None and normals.shape != xyz.shape:
        raise ValueError(f"normals {tuple(normals.shape)} must match xyz {tuple(xyz.shape)}")
    rt = rotation.to(xyz.dtype).transpose(-1, -2)
    out = xyz @ rt
    return out, (normals @ rt if normals is not None else None)


def random_rotation_euler(
    n: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Legacy, **not** Haar-uniform: ``Rz(c) @ Ry(b) @ Rx(a)`` with ``a, b, c ~ U(0, 2*pi)``.

    This is the official RISurConv ``provider.rotate_point_cloud_with_normal_so3`` sampler
    (there with an unseeded global RNG), kept only to reproduce legacy numbers and as the negative
    control of Haar-uniformity tests. Use :func:`random_rotation` for the SO3 protocol.

    Returns:
        ``(n, 3, 3)`` rotation matrices (column-vector convention, like the rest of this module).
    """
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    a, b, c = (torch.rand(3, n, generator=generator, dtype=torch.float64) * (2 * math.pi)).unbind(0)
    R = rotation_about_axis(c, "z") @ rotation_about_axis(b, "y") @ rotation_about_axis(a, "x")
    return R.to(dtype=dtype, device=device)


def rotation_angle(rotation: Tensor) -> Tensor:
    """Rotation angles in ``[0, pi]`` of rotation matrices ``(..., 3, 3)`` -> ``(...)``.

    Uses ``atan2(|axial vector|, (trace - 1) / 2)``, accurate near 0 and pi alike.
    """
    if rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must be (..., 3, 3), got {tuple(rotation.shape)}")
    R = rotation
    cos = (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1) / 2
    axial = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1
    )
    sin = axial.norm(dim=-1) / 2
    return torch.atan2(sin, cos)
