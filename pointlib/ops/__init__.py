"""Point ops with one contract and several backends.

=================  =====================================================================
``knn``            k nearest neighbours, ascending ``dist2``, ties to the lower index
``ball_query``     first ``nsample`` points with ``dist2 < r2`` by index; padded; empty -> nearest
``fps``            farthest point sampling from ``start``, ties to the lowest index
``fps_pointops``   farthest point sampling with the pointops CUDA kernel's tie rule
``knn_tolerant``   ``knn`` with distances within a tolerance of the k-th treated as tied
``gather``         ``(B, N, C)``, ``(B, M)`` -> ``(B, M, C)`` (autograd)
``group``          ``(B, N, C)``, ``(B, M, K)`` -> ``(B, M, K, C)`` (autograd)
``three_nn_interpolate``  inverse-distance interpolation for decoders
``knn_ragged``     kNN on flat ``(N, D)`` rows split into graphs by ``batch`` / ``ptr``
``ball_query_ragged``  ball query on ragged rows (``-1`` padding)
``fps_ragged``     farthest point sampling per graph (``ratio`` / ``npoint``)
=================  =====================================================================

``knn`` and ``ball_query`` accept any point dimension ``D >= 1`` and float16/bfloat16 inputs
(computed in float32, ``dist2`` returned as float32); see :mod:`pointlib.ops.ragged`.

Backends: ``torch`` (reference, always available), ``cpu`` / ``cuda`` (compiled ``pointlib._C``),
and ``torch_cluster`` where installed. ``backend="auto"`` (overridable with ``POINTLIB_BACKEND``)
prefers the compiled kernels of the tensor's device and falls back to ``torch``; an explicit
backend never falls back. See :mod:`pointlib.ops.reference` for the exact semantics.
"""

from __future__ import annotations

from pointlib.ops import reference as _reference
from pointlib.ops._dispatch import (
    Backend,
    BackendUnavailableError,
    available_backends,
    register_backend,
)
from pointlib.ops.grouping import gather, group, three_nn_interpolate
from pointlib.ops.neighbors import ball_query, knn
from pointlib.ops.ragged import ball_query_ragged, fps_ragged, knn_ragged
from pointlib.ops.sampling import fps, fps_pointops
from pointlib.ops.ties import knn_tolerant

register_backend(
    Backend(
        "torch",
        {
            "knn": _reference.knn,
            "ball_query": _reference.ball_query,
            "fps": _reference.fps,
            "knn_ragged": _reference.knn_ragged,
            "ball_query_ragged": _reference.ball_query_ragged,
            "fps_ragged": _reference.fps_ragged,
        },
    )
)

try:  # compiled backends register themselves; never fail import
    from pointlib.ops import _ext_backends  # noqa: F401
except ImportError:  # pragma: no cover - module added with the extension
    pass

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "available_backends",
    "ball_query",
    "ball_query_ragged",
    "fps",
    "fps_pointops",
    "fps_ragged",
    "gather",
    "group",
    "knn",
    "knn_ragged",
    "knn_tolerant",
    "register_backend",
    "three_nn_interpolate",
]
