"""Shared helpers for :mod:`pointlib.features`: input checks and small vector kernels.

Everything here is private; the public functions live in the sibling modules.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pointlib.ops._validate import check_cloud, check_index, check_int

__all__ = [
    "EPS_UNIT",
    "check_cloud",
    "check_index",
    "check_int",
    "check_normals",
    "check_same",
    "cross",
    "dot",
    "group",
    "group_planes",
    "norm",
    "planes",
    "sq_norm",
    "triple",
    "unit",
]

#: The ``1e-7`` of spec §1.4: ``û(a) = a / (‖a‖ + 1e-7)`` (a zero vector gives 0, never NaN).
EPS_UNIT = 1e-7


def check_normals(normals: object, xyz: Tensor, name: str, xyz_name: str) -> Tensor:
    """Check ``normals`` has the shape, dtype and device of ``xyz`` and is finite.

    Zero vectors are allowed (they give finite, if meaningless, features).
    """
    if not isinstance(normals, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(normals).__name__}")
    if normals.dtype != xyz.dtype:
        raise TypeError(f"{name} is {normals.dtype} but {xyz_name} is {xyz.dtype}")
    if normals.shape != xyz.shape:
        raise ValueError(
            f"{name} must have the shape of {xyz_name} {tuple(xyz.shape)}, "
            f"got {tuple(normals.shape)}"
        )
    if normals.device != xyz.device:
        raise ValueError(f"{name} is on {normals.device} but {xyz_name} is on {xyz.device}")
    if not bool(torch.isfinite(normals).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return normals


def check_same(x: Tensor, ref: Tensor, name: str, ref_name: str) -> None:
    """Check that ``x`` matches ``ref`` in batch size, dtype and device."""
    if x.dtype != ref.dtype:
        raise TypeError(f"{name} is {x.dtype} but {ref_name} is {ref.dtype}")
    if x.device != ref.device:
        raise ValueError(f"{name} is on {x.device} but {ref_name} is on {ref.device}")
    if x.shape[0] != ref.shape[0]:
        raise ValueError(
            f"batch sizes differ: {name} {tuple(x.shape)} vs {ref_name} {tuple(ref.shape)}"
        )


def group(x: Tensor, idx: Tensor) -> Tensor:
    """Unchecked grouping: ``x (B, N, C)``, ``idx (B, M, K)`` int64 -> ``(B, M, K, C)``."""
    B, M, K = idx.shape
    C = x.shape[-1]
    flat = idx.reshape(B, M * K, 1).expand(B, M * K, C)
    return x.gather(1, flat).reshape(B, M, K, C)


def group_planes(x: Tensor, idx_t: Tensor) -> Tensor:
    """Unchecked grouping into coordinate planes: ``x (B, N, C)``, ``idx_t (B, K, M)`` ->
    ``(B, C, K, M)``.

    The internal layout of :mod:`pointlib.features`: each coordinate is a separate plane and the
    centre axis ``M`` is innermost, so dot products, norms and rolls along ``K`` run on long
    contiguous rows.
    """
    B, K, M = idx_t.shape
    C = x.shape[-1]
    xt = x.transpose(1, 2)
    return xt.gather(2, idx_t.reshape(B, 1, K * M).expand(B, C, K * M)).reshape(B, C, K, M)


def planes(x: Tensor) -> Tensor:
    """``(B, M, 3)`` -> ``(B, 3, 1, M)`` (a centre quantity broadcast against planes)."""
    return x.transpose(1, 2).unsqueeze(2)


def dot(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """Dot product over ``dim`` (broadcasting) -> shape without it."""
    return (a * b).sum(dim)


def norm(a: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """Euclidean norm over ``dim`` (``sqrt(Σ a²)``, exactly 0 for a zero vector).

    Much faster than ``torch.linalg.vector_norm`` over a non-innermost dim of size 3 on CPU, and
    its gradient is finite (zero) at the zero vector.
    """
    s = sq_norm(a, dim, keepdim)
    return torch.where(s > 0, s.clamp_min(torch.finfo(a.dtype).tiny).sqrt(), 0.0)


def sq_norm(a: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """Squared Euclidean norm over ``dim``."""
    return (a * a).sum(dim, keepdim=keepdim)


def unit(a: Tensor, dim: int = -1) -> Tensor:
    """Spec §1.4 ``û(a) = a / (‖a‖ + 1e-7)`` over ``dim``; finite for finite input."""
    return a / (norm(a, dim, keepdim=True) + EPS_UNIT)


def cross(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """Cross product along ``dim`` (default the **last** dimension), written out component-wise.

    Never the reference's "first dimension of size 3" (spec §9 fixes that bug unconditionally).
    Written out so that ``cross(u, u)`` is exactly zero on every platform.
    """
    a0, a1, a2 = a.unbind(dim)
    b0, b1, b2 = b.unbind(dim)
    return torch.stack((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), dim=dim)


def triple(a: Tensor, b: Tensor, c: Tensor, dim: int = -1) -> Tensor:
    """Scalar triple product ``(a × b) · c`` over ``dim`` (exactly 0 when ``a == b``)."""
    a0, a1, a2 = a.unbind(dim)
    b0, b1, b2 = b.unbind(dim)
    c0, c1, c2 = c.unbind(dim)
    return (a1 * b2 - a2 * b1) * c0 + (a2 * b0 - a0 * b2) * c1 + (a0 * b1 - a1 * b0) * c2
