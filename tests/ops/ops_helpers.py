"""Shared helpers for the op tests (backend lists, seeded clouds)."""

from __future__ import annotations

import torch

import pointlib.ops as ops


def cpu_backends(op: str) -> list[str]:
    """Backends that can run ``op`` on CPU here, the reference excluded."""
    return [b for b in ops.available_backends(op, "cpu") if b != "torch"]


def lattice(B: int, N: int, seed: int, *, side: int = 4, dtype=torch.float32) -> torch.Tensor:
    """Integer-lattice points in ``[0, side)^3``: exact squared distances, many exact ties."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, side, (B, N, 3), generator=g).to(dtype)


def gaussian(B: int, N: int, seed: int, *, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, 3, generator=g, dtype=torch.float64).to(dtype)
