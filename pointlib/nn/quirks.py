"""The quirk switches of spec §9 and their ``faithful`` / fixed presets.

============================  ==========================  =================================
switch                        faithful (reference code)   fixed (default)
============================  ==========================  =================================
``knn_order``                 ``"unsorted"``              ``"sorted"``
``ring_shift``                ``"dynamic"``               ``"static"``
``sa2d_norm_axis``            ``"group"``                 ``"query"``
``transformer_over_batch``    ``True``                    ``False``
``lra_sign``                  ``"raw"``                   ``"invariant"``
``global_center``             ``"origin"``                ``"centroid"``
``fps_ties``                  ``"index"`` (opt-in         ``"index"``
                              ``"pointops"``)
============================  ==========================  =================================

- ``knn_order``: ``"unsorted"`` groups with ``topk(sorted=False)`` on ``|a|²+|b|²-2a·b``
  distances and orders each ring with the reference rules (slot 0's sign forced to +1, the
  reference neighbour and the centre at the ``ψ ≈ π`` slot); ``"sorted"`` uses
  :func:`pointlib.ops.knn` (ascending, ties to the lower index) and the fixed ordering of
  :mod:`pointlib.features.ordering` (reference first, centre last).
- ``ring_shift``: ``"dynamic"`` applies the reference rule *at call time* (``s = 2`` when a layer
  has ``>= 1024`` centres), so behaviour changes with the input size; ``"static"`` evaluates the
  same rule once, on the layer's nominal centre count (so the paper configurations get the same
  shifts) and keeps it constant.
- ``sa2d_norm_axis``: see :class:`pointlib.nn.GroupOffsetAttention`.
- ``transformer_over_batch``: see :class:`pointlib.nn.GlobalTransformer` (classifier only).
- ``lra_sign``: sign of the global reference axis and of estimated normals (eigensolver sign vs
  a rotation-invariant rule, :mod:`pointlib.features.lra`).
- ``global_center``: feature origin ``p`` of the global layer (the world origin as in the
  reference, or the centroid; the ordering is centred at the centroid in both).
- ``fps_ties``: how FPS breaks exactly tied distances. ``"index"``: the lowest index (the fixed
  mode adds its tie tolerance, see :func:`pointlib.ops.fps`); ``"pointops"``: the reference
  code's CUDA kernel (pointops ``furthestsampling``), the smallest bit-reversed thread id, see
  :func:`pointlib.ops.fps_pointops`. Both presets use ``"index"``; pass ``fps_ties="pointops"``
  with ``faithful=True`` to pick the centres the reference GPU code picks on tied inputs
  (real shapes hold many tied FPS steps). RISurConv models only.

Cross products always use ``dim=-1`` (spec §9 ``cross_dim``: fixed unconditionally).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

KNN_ORDER = ("sorted", "unsorted")
RING_SHIFT = ("static", "dynamic")
NORM_AXIS = ("query", "group")
LRA_SIGN = ("invariant", "raw")
GLOBAL_CENTER = ("centroid", "origin")
FPS_TIES = ("index", "pointops")


@dataclass(frozen=True)
class Quirks:
    """Resolved quirk switches (see the module docstring)."""

    knn_order: Literal["sorted", "unsorted"] = "sorted"
    ring_shift: Literal["static", "dynamic"] = "static"
    sa2d_norm_axis: Literal["query", "group"] = "query"
    transformer_over_batch: bool = False
    lra_sign: Literal["invariant", "raw"] = "invariant"
    global_center: Literal["centroid", "origin"] = "centroid"
    fps_ties: Literal["index", "pointops"] = "index"

    @classmethod
    def resolve(cls, faithful: bool = False, **overrides: Any) -> Quirks:
        """The ``faithful`` (or fixed) preset with every non-``None`` override applied."""
        base = FAITHFUL if faithful else FIXED
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown quirk switch(es): {sorted(unknown)}")
        q = dataclasses.replace(base, **given)
        q.validate()
        return q

    def validate(self) -> None:
        for name, allowed in (
            ("knn_order", KNN_ORDER),
            ("ring_shift", RING_SHIFT),
            ("sa2d_norm_axis", NORM_AXIS),
            ("lra_sign", LRA_SIGN),
            ("global_center", GLOBAL_CENTER),
            ("fps_ties", FPS_TIES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not isinstance(self.transformer_over_batch, bool):
            raise TypeError("transformer_over_batch must be a bool")

    def layer_shift(self, nominal_centers: int) -> int | None:
        """Ring shift for a layer: a constant (static) or ``None`` (decided at call time)."""
        if self.ring_shift == "dynamic":
            return None
        return 2 if nominal_centers >= 1024 else 1


FIXED = Quirks()
FAITHFUL = Quirks(
    knn_order="unsorted",
    ring_shift="dynamic",
    sa2d_norm_axis="group",
    transformer_over_batch=True,
    lra_sign="raw",
    global_center="origin",
)
