"""What varies between attention calls besides the tensors: :class:`AttentionSpec`.

The neighbourhood (:class:`~pointlib.attention.Neighborhood`) says *which* keys each query sees;
the spec says *how* they are weighted and computed: the kernel and its normalisation, the logit
scale, dropout, and which implementation (SDPA or the explicit path) may serve the call. Models
build one spec per attention layer and pass it to :func:`~pointlib.attention.attention` with the
per-call tensors (bias, extra tokens, gated positional logits).

>>> spec = AttentionSpec(kernel="linear", feature_map="identity", linear_norm="injective")
>>> spec.replace(dropout_p=0.1).dropout_p
0.1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

__all__ = ["AttentionSpec", "ResolvedSpec"]

Kernel = Literal["softmax", "linear", "offset"]
BackendName = Literal["auto", "sdpa", "explicit"]
LinearNorm = Literal["positive", "injective", "rala"]
L1Axis = Literal["query", "group"]

_CHOICES = {
    "kernel": ("softmax", "linear", "offset"),
    "backend": ("auto", "sdpa", "explicit"),
    "linear_norm": ("positive", "injective", "rala"),
    "l1_axis": ("query", "group"),
    "feature_map": ("elu1", "relu", "identity"),
}


@dataclass(frozen=True)
class AttentionSpec:
    """The kernel, normalisation and implementation choices of one attention call.

    Attributes:
        kernel: ``"softmax"``; ``"linear"`` (``phi(q)^T sum_j phi(k_j) v_j^T`` normalised per
            ``linear_norm``); ``"offset"`` (PCT/RISurConv double normalisation, explicit path:
            ``A = softmax_j(q_i.k_j*scale + bias)``, ``A~ = A / (1e-9 + sum over l1_axis)``,
            ``out_j = sum_i A~_ij v_i``; self-attention only). (default: ``"softmax"``)
        scale: logit scale. ``None``: ``D ** -0.5`` (softmax), ``1.0`` (offset, as PCT); for
            ``linear_norm="injective"`` ``1/N`` (InLine); for ``"rala"`` the routing
            temperature ``D ** -0.5``; unused by ``"positive"``. (default: ``None``)
        feature_map: ``"elu1"``, ``"relu"`` or ``"identity"`` (linear kernel). (default:
            ``"elu1"``)
        linear_norm: ``"positive"`` (divide by ``phi(q_i).sum_j phi(k_j)``), ``"injective"``
            (InLine: ``w_ij = s (phi_i.phi_j - mean_l phi_i.phi_l) + 1/N``, rows sum to 1), or
            ``"rala"`` (RALA key reweighting, then positive normalisation). (default:
            ``"positive"``)
        rope: optional function applied to ``phi(q)``/``phi(k)`` in the numerator only (RALA).
        l1_axis: offset kernel: ``"query"`` normalises each key column over the queries of its
            own group (PCT); ``"group"`` over the groups of the batch element at the same
            (query slot, key slot), as RISurConv's ``SA_Layer_2d``. (default: ``"query"``)
        dropout_p: attention dropout on the weights. (default: ``0.0``)
        backend: ``"auto"`` (SDPA for softmax without ``return_attn``, else explicit),
            ``"sdpa"`` (error if the call needs the explicit path) or ``"explicit"``.
        chunk: queries (query mode) or groups (group mode) per SDPA call; ``None`` keeps the
            gathered K/V under :data:`pointlib.attention.functional.CHUNK_ELEMENTS` elements.

    Raises:
        ValueError: a value outside its vocabulary, or ``dropout_p`` outside ``[0, 1]``, or
            ``chunk < 1``.
    """

    kernel: Kernel = "softmax"
    scale: float | None = None
    feature_map: str = "elu1"
    linear_norm: LinearNorm = "positive"
    rope: Callable[[Tensor], Tensor] | None = None
    l1_axis: L1Axis = "query"
    dropout_p: float = 0.0
    backend: BackendName = "auto"
    chunk: int | None = None

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                opts = ", ".join(repr(a) for a in allowed)
                raise ValueError(f"{name} must be one of {opts}, got {value!r}")
        if not 0.0 <= float(self.dropout_p) <= 1.0:
            raise ValueError(f"dropout_p must lie in [0, 1], got {self.dropout_p!r}")
        if self.chunk is not None and self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The option names (the keyword arguments :func:`attention` forwards to the spec)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: object) -> AttentionSpec:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def resolved_scale(self, head_dim: int) -> float | None:
        """``scale``, or the kernel's default for ``head_dim`` (``None``: the linear kernel
        resolves it from the token count)."""
        if self.scale is not None:
            return self.scale
        if self.kernel == "softmax":
            return head_dim**-0.5
        if self.kernel == "offset":
            return 1.0
        return None

    def resolve(self, head_dim: int, return_attn: bool = False) -> ResolvedSpec:
        """The options of one call: the implementation path and the default scale.

        Raises:
            ValueError: ``backend="sdpa"`` for a call that needs the explicit path
                (``return_attn`` or a non-softmax kernel).
        """
        explicit_needed = return_attn or self.kernel != "softmax"
        if self.backend == "sdpa" and explicit_needed:
            raise ValueError(
                "backend='sdpa' cannot serve this call (return_attn or a non-softmax kernel); "
                "use backend='auto' or 'explicit'"
            )
        return ResolvedSpec(
            scale=self.resolved_scale(head_dim),
            kernel=self.kernel,
            fmap=self.feature_map,
            norm=self.linear_norm,
            rope=self.rope,
            l1_axis=self.l1_axis,
            dropout_p=self.dropout_p,
            use_sdpa=not explicit_needed and self.backend != "explicit",
            chunk=self.chunk,
            return_attn=return_attn,
        )


@dataclass(slots=True)
class ResolvedSpec:
    """An :class:`AttentionSpec` resolved for one call (what the mode implementations read)."""

    scale: float | None
    kernel: str
    fmap: str
    norm: str
    rope: Callable[[Tensor], Tensor] | None
    l1_axis: str
    dropout_p: float
    use_sdpa: bool
    chunk: int | None
    return_attn: bool
