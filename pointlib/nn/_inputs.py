"""Input handling shared by the models: PyG batches, validation, missing normals (private)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def from_pyg(data: Any) -> tuple[Tensor, Tensor | None]:
    """``(xyz (B, N, 3), normals (B, N, 3) or None)`` from a torch_geometric ``Data``/``Batch``.

    Uses :func:`pointlib.interop.from_pyg` (``pos`` -> xyz, ``x`` -> normals; equal-size clouds
    only, else ``ValueError``). A single ``Data`` gives ``B = 1``.
    """
    from pointlib.interop import from_pyg as _from_pyg

    item = _from_pyg(data, batched=True)
    normals = item.get("normals")
    if normals is not None and normals.shape != item["xyz"].shape:
        normals = None  # ``x`` holds other features, not normals
    return item["xyz"], normals


def _is_pyg(obj: Any) -> bool:
    return not isinstance(obj, Tensor) and hasattr(obj, "pos") and hasattr(obj, "num_nodes")


def prepare_cloud(
    xyz: Any,
    normals: Tensor | None,
    *,
    name: str,
    min_points: int,
    estimate: bool,
    normals_k: int = 32,
    faithful_normals: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Validate ``xyz``/``normals`` (converting a PyG batch) and estimate missing normals.

    Raises:
        ValueError: wrong shapes, fewer than ``min_points`` points, or non-finite input.
    """
    if _is_pyg(xyz):
        xyz, pyg_normals = from_pyg(xyz)
        normals = normals if normals is not None else pyg_normals
    if not isinstance(xyz, Tensor) or xyz.dim() != 3 or xyz.shape[-1] != 3:
        shape = tuple(xyz.shape) if isinstance(xyz, Tensor) else type(xyz).__name__
        raise ValueError(f"{name}: xyz must have shape (B, N, 3), got {shape}")
    if not xyz.is_floating_point():
        raise TypeError(f"{name}: xyz must be floating point, got {xyz.dtype}")
    if xyz.shape[1] < min_points:
        raise ValueError(
            f"{name} needs at least {min_points} points per cloud, got N={xyz.shape[1]}"
        )
    if not bool(torch.isfinite(xyz).all()):
        raise ValueError(f"{name}: xyz contains NaN or Inf")
    if normals is not None:
        if not isinstance(normals, Tensor) or normals.shape != xyz.shape:
            shape = tuple(normals.shape) if isinstance(normals, Tensor) else type(normals).__name__
            raise ValueError(f"{name}: normals must have shape {tuple(xyz.shape)}, got {shape}")
        if not bool(torch.isfinite(normals).all()):
            raise ValueError(f"{name}: normals contain NaN or Inf")
        normals = normals.to(xyz.dtype)
    elif estimate:
        from pointlib.features import estimate_normals

        k = min(normals_k, xyz.shape[1])
        with torch.no_grad():
            normals = estimate_normals(xyz.detach(), k, faithful=faithful_normals)
    return xyz, normals


def one_hot_category(category: Tensor, num_categories: int, B: int, N: int, like: Tensor) -> Tensor:
    """``category (B,)`` int64 -> one-hot ``(B, N, num_categories)`` in the dtype of ``like``."""
    if not isinstance(category, Tensor):
        category = torch.as_tensor(category)
    if category.dim() == 2 and category.shape == (B, num_categories):  # already one-hot
        return category.to(like.dtype)[:, None, :].expand(B, N, num_categories)
    category = category.reshape(-1)
    if category.shape != (B,) or category.is_floating_point():
        raise ValueError(f"category must be (B,) = ({B},) integers, got {tuple(category.shape)}")
    if bool(((category < 0) | (category >= num_categories)).any()):
        raise ValueError(f"category must be in [0, {num_categories}), got {category.tolist()}")
    oh = torch.nn.functional.one_hot(category.to(like.device).long(), num_categories)
    return oh.to(like.dtype)[:, None, :].expand(B, N, num_categories)
