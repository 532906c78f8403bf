"""Input handling shared by the models: PyG batches, validation, missing normals (private)."""

from __future__ import annotations

import sys
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


def max_abs_coordinate(dtype: torch.dtype) -> float:
    """Largest ``|coordinate|`` a model accepts in ``dtype``: ``finfo.max ** (1/3) / 100``.

    About ``7e10`` in float32 and ``5.6e100`` in float64. Below it every quantity the models
    form from coordinates (squared distances, the covariances of the LRA and its third-moment
    sign scores, which grow like ``|x|**3``) stays finite; above it float32 gives NaN logits or
    an ``eigh`` failure, so such input is rejected up front.
    """
    return float(torch.finfo(dtype).max) ** (1.0 / 3.0) / 100.0


def _module_dtype(module: Any) -> torch.dtype | None:
    if not isinstance(module, torch.nn.Module):
        return None
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _caller_module() -> torch.nn.Module | None:
    """The ``nn.Module`` whose method called :func:`prepare_cloud` (``forward`` or a helper of
    it), found as ``self`` in the two frames above; ``None`` when called from elsewhere."""
    try:
        frame = sys._getframe(2)
    except ValueError:  # called from the top of the stack
        return None
    for _ in range(2):
        if frame is None:
            break
        module = frame.f_locals.get("self")
        if isinstance(module, torch.nn.Module):
            return module
        frame = frame.f_back
    return None


def prepare_cloud(
    xyz: Any,
    normals: Tensor | None,
    *,
    name: str,
    min_points: int,
    estimate: bool,
    normals_k: int = 32,
    faithful_normals: bool = False,
    param_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Validate ``xyz (B, N, 3)`` / ``normals (B, N, 3)`` (converting a PyG batch) and estimate
    missing normals.

    ``param_dtype`` is the floating dtype of the model's parameters; when ``None`` it is read from
    the calling module (the ``self`` of the ``forward`` that called this). ``xyz`` must have that
    dtype (a float64 cloud into a float32 model, or the reverse, is an error that says how to
    convert), and ``|xyz| <= max_abs_coordinate(dtype)``.

    Raises:
        ValueError: wrong shapes, fewer than ``min_points`` points, non-finite input, or
            coordinates too large for the dtype.
        TypeError: ``xyz`` is not floating point or its dtype differs from the model's.
    """
    if param_dtype is None:
        param_dtype = _module_dtype(_caller_module())
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
    if param_dtype is not None and xyz.dtype != param_dtype:
        fix = {torch.float32: "xyz.float()", torch.float64: "xyz.double()"}.get(
            param_dtype, f"xyz.to({param_dtype})"
        )
        raise TypeError(
            f"{name}: xyz is {xyz.dtype} but the model's parameters are {param_dtype}; "
            f"pass {fix} (or convert the model, e.g. model.to({xyz.dtype}))"
        )
    if not bool(torch.isfinite(xyz).all()):
        raise ValueError(f"{name}: xyz contains NaN or Inf")
    limit = max_abs_coordinate(xyz.dtype)
    biggest = float(xyz.detach().abs().amax()) if xyz.numel() else 0.0
    if biggest > limit:
        raise ValueError(
            f"{name}: |xyz| reaches {biggest:.3g}, beyond the {limit:.3g} that {xyz.dtype} "
            "supports here (distances and covariances would overflow); rescale the cloud, "
            "e.g. pointlib.transforms.normalize_unit_sphere"
        )
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
    """``category (B,)`` int64 -> one-hot ``(B, N, num_categories)`` in the dtype of ``like``.

    Also accepts an already one-hot ``(B, num_categories)`` tensor, and a list of ints.

    Raises:
        TypeError: ``category`` is missing (``None``), not numeric, or not integer-valued.
        ValueError: wrong shape or a category outside ``[0, num_categories)``.
    """
    if category is None:
        raise TypeError(
            f"category is required for part segmentation: a (B,) = ({B},) int64 tensor of "
            f"object category indices in [0, {num_categories})"
        )
    if not isinstance(category, Tensor):
        try:
            category = torch.as_tensor(category)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"category must be a (B,) = ({B},) int64 tensor, got {type(category).__name__} "
                f"({exc})"
            ) from None
    if category.dtype == torch.bool or category.is_complex():
        raise TypeError(f"category must hold integers, got dtype {category.dtype}")
    if category.dim() == 2 and category.shape == (B, num_categories):  # already one-hot
        return category.to(like.dtype)[:, None, :].expand(B, N, num_categories)
    if category.is_floating_point():
        if not bool(torch.isfinite(category).all()) or bool((category != category.round()).any()):
            raise TypeError(
                f"category must hold integer category indices, got {category.dtype} values "
                f"{category.reshape(-1)[:8].tolist()}"
            )
        category = category.long()  # integer-valued floats, e.g. labels stored as float
    shape = tuple(category.shape)
    category = category.reshape(-1)
    if category.shape != (B,):
        raise ValueError(f"category must be (B,) = ({B},) integers, got shape {shape}")
    if bool(((category < 0) | (category >= num_categories)).any()):
        raise ValueError(f"category must be in [0, {num_categories}), got {category.tolist()}")
    oh = torch.nn.functional.one_hot(category.to(like.device).long(), num_categories)
    return oh.to(like.dtype)[:, None, :].expand(B, N, num_categories)
