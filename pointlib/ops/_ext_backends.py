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

_OPS = ("knn", "ball_query", "fps")


def _hint(mode: str) -> str:
    text = _ext.BUILD_HINT.format(mode=mode)
    return text[:1].upper() + text[1:] + "."


def _missing(mode: str) -> str:
    if _ext.HAS_EXT:
        return f"pointlib._C was built without {mode.upper()} kernels ({_ext.BUILD_INFO})"
    return f"pointlib._C is not available ({_ext.IMPORT_ERROR!r})"


def _sqdist_grad(points: Tensor, queries: Tensor, idx: Tensor) -> Tensor:
    """``dist2`` recomputed by torch from ``idx`` (same expression) so gradients can flow."""
    B, M, k = idx.shape
    nb = torch.gather(points, 1, idx.reshape(B, M * k, 1).expand(-1, -1, 3)).view(B, M, k, 3)
    d = queries[:, :, None, :] - nb
    return (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) + d[..., 2] * d[..., 2]


def _knn(points: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    idx, dist2 = torch.ops.pointlib.knn(points, queries, k)
    if torch.is_grad_enabled() and (points.requires_grad or queries.requires_grad):
        dist2 = _sqdist_grad(points, queries, idx)
    return idx, dist2


def _ball_query(points: Tensor, queries: Tensor, radius: float, nsample: int) -> Tensor:
    return torch.ops.pointlib.ball_query(points, queries, float(radius), nsample)


def _fps(points: Tensor, npoint: int, start: int, tie_rtol: float = 0.0) -> Tensor:
    return torch.ops.pointlib.fps(points, npoint, start, tie_rtol)


_IMPLS = {"knn": _knn, "ball_query": _ball_query, "fps": _fps}
_DTYPES = (torch.float32, torch.float64)


def _can_run_cpu(op: str, device_type: str, dtype: torch.dtype, params: dict) -> tuple[bool, str]:
    if not _ext.HAS_CPU_EXT:
        return False, _missing("cpu")
    if device_type != "cpu":
        return False, f"the cpu backend runs on CPU tensors, got a {device_type} tensor"
    if dtype not in _DTYPES:
        return False, f"unsupported dtype {dtype}"
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
