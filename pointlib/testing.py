"""Helpers for tests, examples and users' own property checks (no pytest import here)."""

from __future__ import annotations

import math
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


#: The adversarial cloud kinds of :func:`adversarial_cloud`.
ADVERSARIAL_KINDS = ("lattice", "planar_grid", "duplicates", "collinear_rings", "cube")


def adversarial_cloud(
    kind: str, N: int, *, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """A cloud full of exact ties, the worst case for rotation-invariant decisions.

    Real CAD data holds exactly tied distances, angles and FPS steps; these clouds push that to
    the limit (every point tied with several others), for invariance tests:

    * ``"lattice"``: an integer lattice in a box, normals of the nearest box face;
    * ``"planar_grid"``: a square grid in a plane (all neighbourhoods coplanar), normal ``+z``;
    * ``"duplicates"``: a generic cloud with every point present twice;
    * ``"collinear_rings"``: a cylinder sampled on a regular (angle, height) grid: vertical
      lines of collinear points and rings of equidistant ones, outward normals;
    * ``"cube"``: the surface of a cube on a regular grid (octahedral symmetry: the global
      covariance is isotropic), face normals.

    Args:
        kind: one of :data:`ADVERSARIAL_KINDS`.
        N: number of points (the grid is the smallest that holds ``N`` points, truncated in
            index order).
        dtype: output dtype.

    Returns:
        ``xyz (1, N, 3)`` scaled into the unit ball, ``normals (1, N, 3)`` unit vectors.
    """
    f64 = torch.float64
    if kind == "lattice":
        side = math.ceil(N ** (1 / 3))
        r = torch.arange(side, dtype=f64)
        g = torch.cartesian_prod(r, r, r)[:N] - (side - 1) / 2
        xyz = g + 0.5 * (side % 2 == 1)  # no point at the centre (its face would be undefined)
        face = xyz.abs().argmax(-1)
        nrm = torch.nn.functional.one_hot(face, 3).to(f64) * torch.sign(
            xyz.gather(1, face[:, None])
        )
    elif kind == "planar_grid":
        side = math.ceil(math.sqrt(N))
        r = torch.arange(side, dtype=f64) - (side - 1) / 2
        g = torch.cartesian_prod(r, r)[:N]
        xyz = torch.cat([g, torch.zeros(N, 1, dtype=f64)], 1)
        nrm = torch.tensor([0.0, 0.0, 1.0], dtype=f64).expand(N, 3)
    elif kind == "duplicates":
        half = (N + 1) // 2
        x, n = make_cloud(1, half, dtype=f64)
        xyz, nrm = x[0].repeat(2, 1)[:N], n[0].repeat(2, 1)[:N]
    elif kind == "collinear_rings":
        rings = max(2, math.ceil(math.sqrt(N / 2)))
        per = math.ceil(N / rings)
        ang = torch.arange(per, dtype=f64) * (2 * math.pi / per)
        z = torch.arange(rings, dtype=f64) * (2 * math.pi / per) - 0.5 * (rings - 1) * (
            2 * math.pi / per
        )
        a, h = torch.cartesian_prod(ang, z)[:N].unbind(-1)
        xyz = torch.stack([torch.cos(a), torch.sin(a), h], -1)
        nrm = torch.stack([torch.cos(a), torch.sin(a), torch.zeros_like(a)], -1)
    elif kind == "cube":
        side = max(2, math.ceil(math.sqrt(N / 6)) + 1)
        r = torch.linspace(-1.0, 1.0, side, dtype=f64)
        g = torch.cartesian_prod(r, r, r)
        on = g.abs().amax(-1) == 1.0
        g = g[on][:N]
        if g.shape[0] < N:  # pragma: no cover - the grid always holds N points
            raise AssertionError("cube grid too small")
        face = g.abs().argmax(-1)
        nrm = torch.nn.functional.one_hot(face, 3).to(f64) * torch.sign(g.gather(1, face[:, None]))
        xyz = g
    else:
        raise ValueError(f"kind must be one of {ADVERSARIAL_KINDS}, got {kind!r}")
    xyz = xyz - xyz.mean(0, keepdim=True)
    xyz = xyz / xyz.norm(dim=-1).amax()
    nrm = nrm / nrm.norm(dim=-1, keepdim=True)
    return xyz[None].to(dtype), nrm[None].to(dtype)


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
