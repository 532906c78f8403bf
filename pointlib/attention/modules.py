"""Attention modules on top of :func:`pointlib.attention.attention`."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.attention.functional import attention, channel_attention
from pointlib.attention.neighborhood import Neighborhood
from pointlib.attention.position import GatedPositional
from pointlib.attention.spec import AttentionSpec

__all__ = ["ChannelAttention", "NeighborhoodAttention"]


class NeighborhoodAttention(nn.Module):
    r"""Multi-head attention over a :class:`Neighborhood` (global, per-query index or groups).

    ``x -> qkv -> attention(q, k, v, nbr, ...) -> proj``. One module type serves NAT (grid),
    Swin/DaViT windows, HaloNet blocks, BiFormer routing, kNN point attention, ConViT GPSA,
    CrossViT cross-attention (``kv=``), TransNeXt extras (``extra=``) and linear attention.

    Args:
        dim: input channels ``C``.
        heads: number of heads ``H`` (default: ``8``).
        head_dim: per-head width ``D`` (default: ``dim // heads``).
        kv_dim: channels of a separate key/value source; when set the projections are ``q`` and
            ``kv`` (cross-attention), otherwise one fused ``qkv`` (default: ``None``).
        dim_out: output channels (default: ``dim``).
        qkv_bias: bias in the q/k/v projections (default: ``True``).
        qk_norm: ``None``, ``"l2"`` (unit-norm q and k, cosine logits; combine with ``scale``)
            or ``"layernorm"`` (per-head LayerNorm) (default: ``None``).
        scale: logit scale; ``None`` uses the kernel's default (see :func:`attention`).
        kernel: ``"softmax"``, ``"linear"`` or ``"offset"`` (default: ``"softmax"``).
        feature_map, linear_norm: linear-kernel options (see :func:`attention`).
        l1_axis: offset-kernel normalisation axis (see :func:`attention`).
        bias: positional module producing additive logits: ``RelPosTable``/``RelPosMLP`` are
            called as ``bias(nbr)``, modules with ``needs_query = True`` (``ContentRelPos``) as
            ``bias(q, nbr)`` (default: ``None``).
        gate_pos: a :class:`GatedPositional` (ConViT GPSA) (default: ``None``).
        out_gate: multiply the attention output by ``SiLU(Linear(x))`` before ``proj`` (RALA's
            output gate, timm's ``gated``) (default: ``False``).
        attn_drop, proj_drop: dropout rates (default: ``0.0``).
        backend: ``"auto"``, ``"sdpa"`` or ``"explicit"`` (default: ``"auto"``).

    Shapes:
        ``forward(x (B, Nq, C), nbr, kv=(B, Nk, Ckv), extra=(B, M, Ckv))`` -> ``(B, Nq, dim_out)``;
        with ``return_attn`` also the weights (logit shape, see :func:`attention`).
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        *,
        head_dim: int | None = None,
        kv_dim: int | None = None,
        dim_out: int | None = None,
        qkv_bias: bool = True,
        qk_norm: Literal["l2", "layernorm"] | None = None,
        scale: float | None = None,
        kernel: Literal["softmax", "linear", "offset"] = "softmax",
        feature_map: Literal["elu1", "relu", "identity"] = "elu1",
        linear_norm: Literal["positive", "injective", "rala"] = "positive",
        l1_axis: Literal["query", "group"] = "query",
        bias: nn.Module | None = None,
        gate_pos: GatedPositional | None = None,
        out_gate: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: Literal["auto", "sdpa", "explicit"] = "auto",
    ) -> None:
        super().__init__()
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"dim={dim} is not divisible by heads={heads}; set head_dim")
            head_dim = dim // heads
        if qk_norm not in (None, "l2", "layernorm"):
            raise ValueError(f"qk_norm must be None, 'l2' or 'layernorm', got {qk_norm!r}")
        self.dim, self.heads, self.head_dim = dim, heads, head_dim
        inner = heads * head_dim
        self.scale, self.kernel, self.feature_map = scale, kernel, feature_map
        self.linear_norm, self.l1_axis, self.backend = linear_norm, l1_axis, backend
        self.qk_norm = qk_norm
        if kv_dim is None:
            self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        else:
            self.q = nn.Linear(dim, inner, bias=qkv_bias)
            self.kv = nn.Linear(kv_dim, 2 * inner, bias=qkv_bias)
        self.kv_dim = kv_dim
        if qk_norm == "layernorm":
            self.q_norm, self.k_norm = nn.LayerNorm(head_dim), nn.LayerNorm(head_dim)
        self.bias = bias
        self.gate_pos = gate_pos
        self.gate = nn.Linear(dim, inner) if out_gate else None
        self.attn_drop = float(attn_drop)
        self.proj = nn.Linear(inner, dim if dim_out is None else dim_out)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split(self, t: Tensor) -> Tensor:
        B, N, _ = t.shape
        return t.view(B, N, self.heads, self.head_dim).transpose(1, 2)

    def _project(
        self, x: Tensor, kv: Tensor | None, extra: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        inner = self.heads * self.head_dim
        if self.kv_dim is None:
            w, b = self.qkv.weight, self.qkv.bias
            if kv is None:
                q, k, v = self.qkv(x).split(inner, -1)
            else:
                q = F.linear(x, w[:inner], None if b is None else b[:inner])
                k, v = F.linear(kv, w[inner:], None if b is None else b[inner:]).split(inner, -1)
            ek = ev = None
            if extra is not None:
                ek, ev = F.linear(extra, w[inner:], None if b is None else b[inner:]).split(
                    inner, -1
                )
        else:
            q = self.q(x)
            k, v = self.kv(x if kv is None else kv).split(inner, -1)
            ek = ev = None
            if extra is not None:
                ek, ev = self.kv(extra).split(inner, -1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if ek is not None:
            ek, ev = self._split(ek), self._split(ev)
        return q, k, v, ek, ev

    def forward(
        self,
        x: Tensor,
        nbr: Neighborhood | None = None,
        *,
        kv: Tensor | None = None,
        extra: Tensor | None = None,
        return_attn: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, N, {self.dim}), got {tuple(x.shape)}")
        q, k, v, ek, ev = self._project(x, kv, extra)
        if self.qk_norm == "l2":
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
            if ek is not None:
                ek = F.normalize(ek, dim=-1)
        elif self.qk_norm == "layernorm":
            q, k = self.q_norm(q), self.k_norm(k)
            if ek is not None:
                ek = self.k_norm(ek)
        bias = None
        if self.bias is not None:
            needs_q = getattr(self.bias, "needs_query", False)
            bias = self.bias(q, nbr) if needs_q else self.bias(nbr)
        pos_logits = pos_gate = None
        if self.gate_pos is not None:
            pos_logits, pos_gate = self.gate_pos(nbr)
        res = attention(
            q,
            k,
            v,
            nbr,
            self.attention_spec(),
            bias=bias,
            extra_k=ek,
            extra_v=ev,
            pos_logits=pos_logits,
            pos_gate=pos_gate,
            return_attn=return_attn,
        )
        out, attn = res if return_attn else (res, None)
        if out.dim() != 4:
            raise ValueError("NeighborhoodAttention needs reduce='mean' for group neighbourhoods")
        B, H, N, Dv = out.shape
        out = out.transpose(1, 2).reshape(B, N, H * Dv)
        if self.gate is not None:
            out = out * F.silu(self.gate(x))
        out = self.proj_drop(self.proj(out))
        return (out, attn) if return_attn else out

    def attention_spec(self) -> AttentionSpec:
        """The :class:`AttentionSpec` of this layer's attention call (dropout only in training)."""
        return AttentionSpec(
            kernel=self.kernel,
            scale=self.scale,
            feature_map=self.feature_map,
            linear_norm=self.linear_norm,
            l1_axis=self.l1_axis,
            dropout_p=self.attn_drop if self.training else 0.0,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, heads={self.heads}, head_dim={self.head_dim}, "
            f"kernel={self.kernel!r}, backend={self.backend!r}"
        )


class ChannelAttention(nn.Module):
    r"""DaViT channel-group attention: tokens are channels, global over all positions.

    Attribute names follow timm's ``davit.ChannelAttention`` (``qkv``, ``proj``, ``num_heads``)
    so its weights load by name. Index-free, so it applies unchanged to point clouds
    (permutation-equivariant over points).

    Args:
        dim: channels ``C``.
        heads: channel groups (default: ``8``).
        qkv_bias: bias in ``qkv`` (default: ``False``, as DaViT).

    Shapes:
        ``(B, N, C) -> (B, N, C)``.
    """

    def __init__(self, dim: int, heads: int = 8, *, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.num_heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = channel_attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))
