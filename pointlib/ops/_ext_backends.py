"""Compiled backends: ``cpu``, ``cuda`` (``pointlib._C``) and, where installed, ``torch_cluster``.

The ``cpu`` and ``cuda`` names are always registered so that an explicit ``backend="cpu"`` without
the extension fails with :class:`~pointlib.ops.BackendUnavailableError` naming the build command;
``can_run`` reads the :mod:`pointlib._ext` flags at call time (tests monkeypatch them).

``torch_cluster`` is registered for ``fps`` only, the one op where it provably meets the contract
(``fps(random_start=False)``: start 0, first maximum). Its ``knn`` does not order ties by index
and its ``radius`` neither keeps the first members by index nor fills empty balls, so for those
it is only a benchmark peer (see ``docs/ops.md``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pointlib import _ext
from pointlib.ops._dispatch import Backend, register_backend

#: Largest ``k`` (kNN) the CUDA kernels hold in their per-thread buffers.
CUDA_MAX_K = 256
#: Largest ``nsample`` the CUDA ball-query kernel accepts (no buffer; keeps outputs sane).
CUDA_MAX_NSAMPLE = 1 << 20
#: Largest point dimension D of the CUDA kernels (any-D kNN / ball query / ragged FPS); the C++
#: kernels take any D. ``backend="auto"`` falls back to ``torch`` beyond it.
CUDA_MAX_D = 64

_OPS = ("knn", "ball_query", "fps", "knn_ragged", "ball_query_ragged", "fps_ragged")


def _hint(mode: str) -> str:
    text = _ext.BUILD_HINT.format(mode=mode)
    return text[:1].upper() + text[1:] + "."


def _missing(mode: str) -> str:
    if _ext.HAS_EXT:
        return f"pointlib._C was built without {mode.upper()} kernels ({_ext.BUILD_INFO})"
    return f"pointlib._C is not available ({_ext.IMPORT_ERROR!r})"


def _sum_sq(d: Tensor) -> Tensor:
    """``((d0*d0 + d1*d1) + d2*d2) + ...`` over the last dimension (the contract's order)."""
    acc = d[..., 0] * d[..., 0]
    for c in range(1, d.shape[-1]):
        acc = acc + d[..., c] * d[..., c]
    return acc


def _sqdist_grad(points: Tensor, queries: Tensor, idx: Tensor) -> Tensor:
    """``dist2`` recomputed by torch from ``idx`` (same expression) so gradients can flow."""
    B, M, k = idx.shape
    D = points.shape[-1]
    nb = torch.gather(points, 1, idx.reshape(B, M * k, 1).expand(-1, -1, D)).view(B, M, k, D)
    return _sum_sq(queries[:, :, None, :] - nb)


def _dense_ptr(B: int, N: int, device: torch.device) -> Tensor:
    return torch.arange(B + 1, device=device) * N


def _flat_knn(points: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Dense any-D kNN through the ragged kernel (every cloud a graph of N rows)."""
    B, N, D = points.shape
    M = queries.shape[1]
    dev = points.device
    idx, d2 = torch.ops.pointlib.knn_ragged(
        points.reshape(B * N, D), queries.reshape(B * M, D), _dense_ptr(B, N, dev),
        _dense_ptr(B, M, dev), k,
    )  # fmt: skip
    offsets = (torch.arange(B, device=dev) * N).view(B, 1, 1)
    return idx.view(B, M, k) - offsets, d2.view(B, M, k)


def _knn(points: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    if points.shape[-1] == 3:
        idx, dist2 = torch.ops.pointlib.knn(points, queries, k)
    else:
        idx, dist2 = _flat_knn(points, queries, k)
    if torch.is_grad_enabled() and (points.requires_grad or queries.requires_grad):
        dist2 = _sqdist_grad(points, queries, idx)
    return idx, dist2


def _ball_query(points: Tensor, queries: Tensor, radius: float, nsample: int) -> Tensor:
    if points.shape[-1] == 3:
        return torch.ops.pointlib.ball_query(points, queries, float(radius), nsample)
    # any D: the ragged kernel, then the dense padding rules (first member / nearest point)
    B, N, D = points.shape
    M = queries.shape[1]
    dev = points.device
    flat_p, flat_q = points.reshape(B * N, D), queries.reshape(B * M, D)
    ptr_p, ptr_q = _dense_ptr(B, N, dev), _dense_ptr(B, M, dev)
    idx = torch.ops.pointlib.ball_query_ragged(flat_p, flat_q, ptr_p, ptr_q, float(radius), nsample)
    idx = idx.view(B, M, nsample)
    offsets = (torch.arange(B, device=dev) * N).view(B, 1, 1)
    nearest = torch.ops.pointlib.knn_ragged(flat_p, flat_q, ptr_p, ptr_q, 1)[0].view(B, M, 1)
    first = torch.where(idx[..., :1] >= 0, idx[..., :1], nearest)
    return torch.where(idx >= 0, idx, first) - offsets


def _knn_ragged(
    points: Tensor, queries: Tensor, ptr_x: Tensor, ptr_y: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    idx, dist2 = torch.ops.pointlib.knn_ragged(points, queries, ptr_x, ptr_y, k)
    if torch.is_grad_enabled() and (points.requires_grad or queries.requires_grad):
        nb = points[idx.clamp(min=0)]
        dist2 = torch.where(idx >= 0, _sum_sq(queries[:, None, :] - nb), float("inf"))
    return idx, dist2


def _ball_query_ragged(
    points: Tensor, queries: Tensor, ptr_x: Tensor, ptr_y: Tensor, radius: float, nsample: int
) -> Tensor:
    return torch.ops.pointlib.ball_query_ragged(
        points, queries, ptr_x, ptr_y, float(radius), nsample
    )


def _fps_ragged(points: Tensor, ptr: Tensor, out_ptr: Tensor, start: Tensor) -> Tensor:
    return torch.ops.pointlib.fps_ragged(points, ptr, out_ptr, start)


def _fps(points: Tensor, npoint: int, start: int, tie_rtol: float = 0.0) -> Tensor:
    return torch.ops.pointlib.fps(points, npoint, start, tie_rtol)


_IMPLS = {
    "knn": _knn,
    "ball_query": _ball_query,
    "fps": _fps,
    "knn_ragged": _knn_ragged,
    "ball_query_ragged": _ball_query_ragged,
    "fps_ragged": _fps_ragged,
}
_RAGGED_OPS = ("knn_ragged", "ball_query_ragged", "fps_ragged")


def _has_ragged() -> bool:
    """An extension built before the ragged kernels existed lacks them."""
    return hasattr(torch.ops.pointlib, "knn_ragged")


_DTYPES = (torch.float32, torch.float64)


def _can_run_cpu(op: str, device_type: str, dtype: torch.dtype, params: dict) -> tuple[bool, str]:
    if not _ext.HAS_CPU_EXT:
        return False, _missing("cpu")
    if device_type != "cpu":
        return False, f"the cpu backend runs on CPU tensors, got a {device_type} tensor"
    if dtype not in _DTYPES:
        return False, f"unsupported dtype {dtype}"
    if (op in _RAGGED_OPS or params.get("d", 3) != 3) and not _has_ragged():
        return False, "pointlib._C predates the any-D / ragged kernels; rebuild it"
    return True, ""


def _can_run_cuda(op: str, device_type: str, dtype: torch.dtype, params: dict) -> tuple[bool, str]:
    if not _ext.HAS_CUDA_EXT:
        return False, _missing("cuda")
    if device_type != "cuda":
        return False, f"the cuda backend runs on CUDA tensors, got a {device_type} tensor"
    if dtype not in _DTYPES:
        return False, f"unsupported dtype {dtype}"
    if op == "knn" and params.get("k", 1) > CUDA_MAX_K:
        return False, f"k={params['k']} exceeds the CUDA kernel limit MAX_K={CUDA_MAX_K}"
    if op == "ball_query" and params.get("nsample", 1) > CUDA_MAX_NSAMPLE:
        return False, f"nsample={params['nsample']} exceeds the CUDA limit {CUDA_MAX_NSAMPLE}"
    if op == "knn_ragged" and params.get("k", 1) > CUDA_MAX_K:
        return False, f"k={params['k']} exceeds the CUDA kernel limit MAX_K={CUDA_MAX_K}"
    if params.get("d", 3) > CUDA_MAX_D:
        return False, f"D={params['d']} exceeds the CUDA kernel limit MAX_D={CUDA_MAX_D}"
    if (op in _RAGGED_OPS or params.get("d", 3) != 3) and not _has_ragged():
        return False, "pointlib._C predates the any-D / ragged kernels; rebuild it"
    return True, ""


def _register_fake_impls() -> None:
    """Shape functions so ``torch.compile`` / ``opcheck`` can trace the compiled ops."""

    @torch.library.register_fake("pointlib::knn")
    def _(points: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        B, M = queries.shape[:2]
        return (
            points.new_empty((B, M, k), dtype=torch.long),
            points.new_empty((B, M, k)),
        )

    @torch.library.register_fake("pointlib::ball_query")
    def _(points: Tensor, queries: Tensor, radius: float, nsample: int) -> Tensor:
        B, M = queries.shape[:2]
        return points.new_empty((B, M, nsample), dtype=torch.long)

    @torch.library.register_fake("pointlib::fps")
    def _(points: Tensor, npoint: int, start: int, tie_rtol: float = 0.0) -> Tensor:
        return points.new_empty((points.shape[0], npoint), dtype=torch.long)

    if not _has_ragged():
        return

    @torch.library.register_fake("pointlib::knn_ragged")
    def _(points: Tensor, queries: Tensor, ptr_x: Tensor, ptr_y: Tensor, k: int):
        M = queries.shape[0]
        return points.new_empty((M, k), dtype=torch.long), points.new_empty((M, k))

    @torch.library.register_fake("pointlib::ball_query_ragged")
    def _(points, queries, ptr_x, ptr_y, radius: float, nsample: int) -> Tensor:
        return points.new_empty((queries.shape[0], nsample), dtype=torch.long)


if _ext.HAS_EXT:
    _register_fake_impls()

register_backend(
    Backend("cpu", dict(_IMPLS), _can_run_cpu, auto_devices=("cpu",), hint=_hint("cpu"))
)
register_backend(
    Backend("cuda", dict(_IMPLS), _can_run_cuda, auto_devices=("cuda",), hint=_hint("cuda"))
)


# --- torch_cluster: fps only -------------------------------------------------------------------


def _tc_fps(points: Tensor, npoint: int, start: int, tie_rtol: float = 0.0) -> Tensor:
    import torch_cluster

    if start != 0 or tie_rtol != 0:  # pragma: no cover - refused by can_run
        raise ValueError("the torch_cluster backend only supports start=0, tie_rtol=0")
    B, N, _ = points.shape
    flat = points.reshape(B * N, 3)
    batch = torch.arange(B, device=points.device).repeat_interleave(N)
    # torch_cluster takes ceil(ratio * N) samples per cloud, rounded in its own arithmetic; FPS is
    # greedy, so asking for at least npoint and keeping the first npoint gives the same prefix.
    idx = torch_cluster.fps(flat, batch, ratio=min(1.0, npoint / N), random_start=False)
    per = idx.numel() // B
    if per * B != idx.numel() or per < npoint:  # pragma: no cover - defensive
        raise RuntimeError(f"torch_cluster.fps returned {idx.numel()} indices for B={B}")
    offsets = torch.arange(B, device=points.device)[:, None] * N
    return (idx.view(B, per) - offsets)[:, :npoint].contiguous()


def _tc_available() -> bool:
    try:
        import torch_cluster  # noqa: F401
    except Exception:
        return False
    return True


def _can_run_tc(op: str, device_type: str, dtype: torch.dtype, params: dict) -> tuple[bool, str]:
    if not _tc_available():
        return False, "torch_cluster is not installed"
    if device_type != "cpu":
        return False, "torch_cluster fps is only verified against the contract on CPU"
    if params.get("start", 0) != 0:
        return False, "torch_cluster fps always starts at index 0"
    if params.get("tie_rtol", 0.0) != 0:
        return False, "torch_cluster fps has no tie tolerance"
    if dtype not in _DTYPES:
        return False, f"unsupported dtype {dtype}"
    return True, ""


register_backend(
    Backend(
        "torch_cluster",
        {"fps": _tc_fps},
        _can_run_tc,
        hint="Install it: `pip install --no-build-isolation torch-cluster` (pointlib[cluster]).",
    )
)
