"""Helpers for tests, examples and users' own property checks (no pytest import here)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from pointlib.geometry import apply_rotation, random_rotation

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """The real-data minis: ``$POINTLIB_DATA_ROOT``, else ``../shared/data`` beside the checkout."""
    env = os.environ.get("POINTLIB_DATA_ROOT")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def make_cloud(
    B: int,
    N: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Generic random clouds on a bumpy anisotropic ellipsoid with outward unit normals.

    Returns ``xyz (B, N, 3)`` and ``normals (B, N, 3)``. The points are in general position (no
    exact ties in distances or angles), which rotation-invariance tests need.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    d = torch.randn(B, N, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    axes = torch.tensor([1.0, 0.7, 0.45], dtype=torch.float64)
    r = 1 + 0.1 * torch.rand(B, N, 1, generator=g, dtype=torch.float64)
    xyz = d * axes * r
    normals = d / axes  # gradient direction of the ellipsoid (ignores the bumps)
    normals = normals / normals.norm(dim=-1, keepdim=True)
    return xyz.to(dtype=dtype, device=device), normals.to(dtype=dtype, device=device)


def rotation_error(
    fn: Callable[[Tensor, Tensor | None], Tensor],
    xyz: Tensor,
    normals: Tensor | None = None,
    *,
    trials: int = 3,
    generator: torch.Generator | None = None,
) -> float:
    """Max ``|fn(R x, R n) - fn(x, n)|`` over ``trials`` Haar-random rotations (one per sample).

    ``fn`` maps ``xyz (B, N, 3)`` and ``normals (B, N, 3)`` (or None) to a tensor.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(1234)
    ref = fn(xyz, normals)
    worst = 0.0
    for _ in range(trials):
        R = random_rotation(xyz.shape[0], g, dtype=xyz.dtype, device=xyz.device)
        rx, rn = apply_rotation(R, xyz, normals)
        out = fn(rx, rn)
        worst = max(worst, float((out - ref).abs().max()))
    return worst


def assert_rotation_invariant(
    fn: Callable[[Tensor, Tensor | None], Tensor],
    xyz: Tensor,
    normals: Tensor | None = None,
    *,
    atol: float | None = None,
    trials: int = 3,
    generator: torch.Generator | None = None,
) -> float:
    """Assert :func:`rotation_error` is below ``atol`` (default 1e-9 for float64, 1e-4 float32).

    Returns the measured error. Pair it with a negative control (a function that is *not*
    invariant must exceed ``atol``), so the check itself is seen to work.
    """
    __tracebackhide__ = True
    tol = atol if atol is not None else (1e-9 if xyz.dtype == torch.float64 else 1e-4)
    err = rotation_error(fn, xyz, normals, trials=trials, generator=generator)
    if not err <= tol:
        raise AssertionError(f"not rotation invariant: max error {err:.3e} > atol {tol:.1e}")
    return err
