"""Input checks shared by every op: each failure names the argument, its shape, dtype or device."""

from __future__ import annotations

import math

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_cloud(x: object, name: str) -> Tensor:
    """Check a ``(B, N, 3)`` float32/float64 finite coordinate tensor with ``B, N >= 1``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, N, 3), got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)} (need B >= 1 and N >= 1)")
    if x.device.type != "meta" and not bool(torch.isfinite(x).all()):  # meta: no data
        bad = (~torch.isfinite(x)).any(-1).nonzero()[0].tolist()
        raise ValueError(
            f"{name} contains NaN or Inf coordinates (first at batch {bad[0]}, point {bad[1]})"
        )
    return x


POINT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_points(x: object, name: str) -> Tensor:
    """Check a ``(B, N, D)`` finite point tensor, any ``D >= 1``, float16/bfloat16/32/64."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in POINT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if x.dim() != 3 or x.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (B, N, D) with D >= 1, got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)} (need B >= 1 and N >= 1)")
    if x.device.type != "meta" and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).any(-1).nonzero()[0].tolist()
        raise ValueError(
            f"{name} contains NaN or Inf coordinates (first at batch {bad[0]}, point {bad[1]})"
        )
    return x


def check_pair(points: Tensor, queries: Tensor) -> None:
    """Check that ``queries`` matches ``points`` in batch size, dtype and device."""
    if queries.device != points.device:
        raise ValueError(f"points are on {points.device} but queries are on {queries.device}")
    if queries.dtype != points.dtype:
        raise TypeError(f"points are {points.dtype} but queries are {queries.dtype}")
    if queries.shape[0] != points.shape[0]:
        raise ValueError(
            f"batch sizes differ: points {tuple(points.shape)} vs queries {tuple(queries.shape)}"
        )
    if queries.shape[-1] != points.shape[-1]:
        raise ValueError(
            f"dimensions differ: points {tuple(points.shape)} vs queries {tuple(queries.shape)}"
        )


def check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    """Check an integer argument in ``[low, high]`` (``high=None``: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < low or (high is not None and value > high):
        rng = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}={value} is out of range: must be {rng}")
    return int(value)


def check_radius(value: object, name: str = "radius") -> float:
    """A finite ``> 0`` radius as a Python float.

    Accepts Python ints and floats, NumPy scalars of any real dtype (``np.float32(0.5)``,
    ``np.int64(1)``) and one-element tensors; rejects ``bool``, strings and other objects.
    """
    import numbers

    import numpy as np

    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(
                f"{name} must be a real scalar, got a tensor of shape "
                f"{tuple(value.shape)} and dtype {value.dtype}"
            )
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    r = float(value)
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f"{name}={value} must be finite and > 0")
    return r


def check_index(idx: object, name: str, n: int, batch: int, device: torch.device) -> Tensor:
    """Check an int64 index tensor of shape ``(B, ...)`` with entries in ``[0, n)``."""
    if not isinstance(idx, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(idx).__name__}")
    if idx.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be int64 (or int32), got {idx.dtype}")
    if idx.dim() < 2 or idx.shape[0] != batch:
        raise ValueError(f"{name} must have shape (B={batch}, ...), got {tuple(idx.shape)}")
    if idx.device != device:
        raise ValueError(f"{name} is on {idx.device} but the features are on {device}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(
            f"{name} has entries outside [0, {n}): min {int(idx.min())}, max {int(idx.max())}"
        )
    return idx.long()
