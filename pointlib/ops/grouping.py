"""Index-based gathering in pure torch (autograd flows through ``torch.gather``)."""

from __future__ import annotations

import torch
from torch import Tensor

from pointlib.ops._validate import check_cloud, check_index, check_int


def _check_features(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (B, N, C), got {tuple(x.shape)}")
    return x


def gather(x: Tensor, idx: Tensor) -> Tensor:
    """Select points by index, channels-last.

    Args:
        x: ``(B, N, C)`` features (any dtype).
        idx: ``(B, M)`` int64 indices into ``N``.

    Returns:
        ``(B, M, C)`` with ``out[b, m] = x[b, idx[b, m]]``. Gradients flow to ``x``.
    """
    _check_features(x, "x")
    B, N, C = x.shape
    idx = check_index(idx, "idx", N, B, x.device)
    if idx.dim() != 2:
        raise ValueError(f"idx must have shape (B, M), got {tuple(idx.shape)}; use group()")
    return torch.gather(x, 1, idx[:, :, None].expand(-1, -1, C))


def group(x: Tensor, idx: Tensor) -> Tensor:
    """Gather neighbourhoods by index, channels-last.

    Args:
        x: ``(B, N, C)`` features (any dtype).
        idx: ``(B, M, K)`` int64 indices into ``N`` (e.g. from :func:`knn`).

    Returns:
        ``(B, M, K, C)`` with ``out[b, m, k] = x[b, idx[b, m, k]]``. Gradients flow to ``x``.
    """
    _check_features(x, "x")
    B, N, C = x.shape
    idx = check_index(idx, "idx", N, B, x.device)
    if idx.dim() != 3:
        raise ValueError(f"idx must have shape (B, M, K), got {tuple(idx.shape)}")
    _, M, K = idx.shape
    flat = idx.reshape(B, M * K, 1).expand(-1, -1, C)
    return torch.gather(x, 1, flat).view(B, M, K, C)


def three_nn_interpolate(
    unknown: Tensor,
    known: Tensor,
    known_feats: Tensor,
    *,
    k: int = 3,
    eps: float = 1e-8,
    backend: str = "auto",
) -> Tensor:
    """Inverse-distance interpolation from the ``k`` nearest known points (PointNet++ decoders).

    Args:
        unknown: ``(B, N, 3)`` coordinates to interpolate at.
        known: ``(B, M, 3)`` coordinates with features.
        known_feats: ``(B, M, C)`` features of ``known``.
        k: neighbours used (default 3, reduced to ``M`` when ``M < k``).
        eps: added to squared distances so a coincident point gets a large, finite weight.
        backend: kNN backend, as for :func:`pointlib.ops.knn`.

    Returns:
        ``(B, N, C)``: ``sum_j w_j f_j`` with ``w_j = (1 / (d2_j + eps)) / sum_l 1 / (d2_l + eps)``
        over the ``k`` nearest known points (inverse squared distance, as in PointNet++).
    """
    from pointlib.ops.neighbors import knn

    check_cloud(unknown, "unknown")
    check_cloud(known, "known")
    _check_features(known_feats, "known_feats")
    if known_feats.shape[:2] != known.shape[:2]:
        raise ValueError(
            f"known_feats {tuple(known_feats.shape)} must be (B, M, C) matching known "
            f"{tuple(known.shape)}"
        )
    k = check_int(k, "k", 1)
    k = min(k, known.shape[1])
    idx, d2 = knn(known, k, unknown, backend=backend)
    if bool(torch.isfinite(d2).all()):
        w = 1.0 / (d2 + eps)
        w = w / w.sum(-1, keepdim=True)
    else:  # squared distances overflowed (|x| ~ 1e19 in float32): redo them at a safe scale
        idx, w = _scaled_weights(unknown, known, k, eps, backend)
    return (group(known_feats, idx) * w[..., None].to(known_feats.dtype)).sum(2)


def _scaled_weights(
    unknown: Tensor, known: Tensor, k: int, eps: float, backend: str
) -> tuple[Tensor, Tensor]:
    """kNN indices ``(B, N, k)`` and normalised weights of :func:`three_nn_interpolate` for
    coordinates whose squared distances overflow the dtype.

    Each batch is divided by ``s``, a power of two at least its largest ``|coordinate|``: exact
    in binary floating point, so the neighbours are those of the unscaled clouds, and every
    scaled squared distance is at most 12. The weights are written as ratios to the nearest
    neighbour's, ``(d2_0 + e) / (d2_j + e)`` with ``e = eps / s**2``, which equals the usual
    ``1 / (d2_j + eps)`` normalisation and stays finite even when ``e`` underflows to 0.
    """
    from pointlib.ops.neighbors import knn

    B = known.shape[0]
    big = torch.maximum(
        known.detach().abs().reshape(B, -1).amax(1), unknown.detach().abs().reshape(B, -1).amax(1)
    )
    _, exponent = torch.frexp(big.clamp_min(torch.finfo(known.dtype).tiny))
    scale = torch.ldexp(torch.ones_like(big), exponent)[:, None, None]  # (B, 1, 1) >= big
    idx, d2 = knn(known / scale, k, unknown / scale, backend=backend)
    e = eps / scale.double() ** 2
    e = e.to(d2.dtype)
    num, den = d2[..., :1] + e, d2 + e
    w = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 1.0)
    return idx, w / w.sum(-1, keepdim=True)
