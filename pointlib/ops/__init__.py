"""Point ops with one contract and several backends.

=================  =====================================================================
``knn``            k nearest neighbours, ascending ``dist2``, ties to the lower index
``ball_query``     first ``nsample`` points with ``dist2 < r2`` by index; padded; empty -> nearest
``fps``            farthest point sampling from ``start``, ties to the lowest index
``knn_tolerant``   ``knn`` with distances within a tolerance of the k-th treated as tied
``gather``         ``(B, N, C)``, ``(B, M)`` -> ``(B, M, C)`` (autograd)
``group``          ``(B, N, C)``, ``(B, M, K)`` -> ``(B, M, K, C)`` (autograd)
``three_nn_interpolate``  inverse-distance interpolation for decoders
=================  =====================================================================

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
from pointlib.ops.sampling import fps
from pointlib.ops.ties import knn_tolerant

register_backend(
    Backend(
        "torch",
        {"knn": _reference.knn, "ball_query": _reference.ball_query, "fps": _reference.fps},
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
    "fps",
    "gather",
    "group",
    "knn",
    "knn_tolerant",
    "register_backend",
    "three_nn_interpolate",
]
