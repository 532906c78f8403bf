"""Outlook (slot) attention: a softmax over the ordered slots of a neighbourhood, with logits
predicted from the centre token instead of ``q . k`` (VOLO's Outlooker, Yuan et al., TPAMI 2022).

For each group ``g`` (an image window, or a point's angle-ordered ring) with ``K`` ordered slots
holding the tokens ``index[g, 0..K-1]``, a predictor gives logits ``L[g] (K x K)`` (output slot
``s`` by input slot ``t``). The group's outputs are

    ``y[g, s] = sum_t softmax_t(scale * L[g, s, t]) v[index[g, t]]``

and each output slot is folded back onto its token by overlap-add:

    ``out[n] = sum over (g, s) with index[g, s] = n of y[g, s]``.

This is the group mode of the attention core with two differences: the logits come from the
group's centre (no keys), and the group outputs are *summed* back to tokens (VOLO's ``fold``),
not averaged. The slot order must be meaningful (grid offsets, or RISurConv's rotation-invariant
angular order), because the predicted logits address slots by position.

Padding: index value ``N`` (one past the last token) is a zero token. As an input slot it
contributes a zero value but keeps its softmax weight (``nn.Unfold`` zero padding); as an output
slot its result is dropped (``nn.Fold`` cropping). This reproduces VOLO's image borders exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OutlookAttention", "outlook_attention", "outlook_windows"]


def _check(logits: Tensor, v: Tensor, index: Tensor) -> tuple[int, int, int]:
    if logits.dim() != 5 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"logits must be (B, H, G, K, K), got {tuple(logits.shape)}")
    if v.dim() != 4 or v.shape[:2] != logits.shape[:2]:
        raise ValueError(
            f"v must be (B, H, N, D) with the logits' (B, H) = {tuple(logits.shape[:2])}, "
            f"got {tuple(v.shape)}"
        )
    if index.dim() != 3 or index.shape[1:] != logits.shape[2:4]:
        raise ValueError(
            f"index must be (B or 1, G, K) = (*, {logits.shape[2]}, {logits.shape[3]}), "
            f"got {tuple(index.shape)}"
        )
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"index must be int64 (or int32), got {index.dtype}")
    if index.shape[0] not in (1, v.shape[0]):
        raise ValueError(f"index batch {index.shape[0]} is neither 1 nor B={v.shape[0]}")
    return v.shape[0], v.shape[2], index.shape[0]


def outlook_attention(
    logits: Tensor,
    v: Tensor,
    index: Tensor | None,
    *,
    scale: float = 1.0,
    dropout_p: float = 0.0,
    return_groups: bool = False,
) -> Tensor:
    """Outlook attention: softmax over input slots, then overlap-add of the output slots.

    Args:
        logits: ``(B, H, G, K, K)`` slot logits, ``[..., s, t]`` = output slot ``s`` from input
            slot ``t`` (predicted from each group's centre token).
        v: ``(B, H, N, Dv)`` values.
        index: ``(1 or B, G, K)`` token id of every slot, in ``[0, N]``; ``N`` is the zero
            padding token (see the module docstring). ``None``: group ``g`` owns the ``K``
            consecutive tokens ``g*K .. g*K+K-1`` (``N = G*K``, no gather and no overlap:
            point rings whose per-pair features are not shared between rings).
        scale: logit multiplier applied before the softmax (VOLO: ``head_dim ** -0.5``).
        dropout_p: dropout on the slot weights (training only; pass ``0`` in eval).
        return_groups: return the per-group outputs ``(B, H, G, K, Dv)`` instead of folding.

    Returns:
        ``(B, H, N, Dv)``: ``out[n] = sum_{(g, s): index[g, s] = n} y[g, s]``, or the
        unfolded ``y`` with ``return_groups``.
    """
    H, G, K = logits.shape[1], logits.shape[2], logits.shape[3]
    if index is None:
        if v.dim() != 4 or v.shape[:2] != logits.shape[:2] or v.shape[2] != G * K:
            raise ValueError(
                f"with index=None, v must be (B, H, G*K={G * K}, D), got {tuple(v.shape)}"
            )
        B, N, Bi = v.shape[0], v.shape[2], 0
    else:
        B, N, Bi = _check(logits, v, index)
    D = v.shape[-1]
    w = torch.softmax(logits * scale if scale != 1.0 else logits, dim=-1)
    if dropout_p > 0.0:
        w = F.dropout(w, dropout_p)
    if index is None:  # contiguous, disjoint groups: the fold is a reshape
        y = w @ v.view(B, H, G, K, D)
        return y if return_groups else y.reshape(B, H, N, D)
    vp = torch.cat([v, v.new_zeros(B, H, 1, D)], dim=2)  # token N = zero padding
    flat = index.reshape(Bi, G * K).long()
    if Bi == 1:
        vg = vp.index_select(2, flat[0])
    else:
        vg = vp.gather(2, flat[:, None, :, None].expand(B, H, G * K, D))
    y = w @ vg.view(B, H, G, K, D)  # (B, H, G, K, Dv)
    if return_groups:
        return y
    out = vp.new_zeros(B, H, N + 1, D)
    y = y.reshape(B, H, G * K, D)
    if Bi == 1:
        out = out.index_add(2, flat[0], y)
    else:
        out = out.scatter_add(2, flat[:, None, :, None].expand(B, H, G * K, D), y)
    return out[:, :, :N]


def outlook_windows(
    h: int,
    w: int,
    kernel: int = 3,
    stride: int = 1,
    padding: int = 1,
    *,
    device: torch.device | str | None = None,
) -> tuple[Tensor, tuple[int, int]]:
    """The ``nn.Unfold`` windows of an ``h x w`` map as an outlook index.

    Window ``g`` (row-major over the ``oh x ow`` output grid) covers the pixels
    ``(g_y * stride - padding + ky, g_x * stride - padding + kx)`` for ``ky, kx < kernel``, in
    row-major slot order (``nn.Unfold``'s). Pixels outside the map get the padding id ``h * w``.

    Returns:
        ``index (1, oh * ow, kernel**2)`` and ``(oh, ow)``.
    """
    if kernel < 1 or stride < 1 or padding < 0:
        raise ValueError(f"need kernel, stride >= 1, padding >= 0; got {kernel, stride, padding}")
    oh = (h + 2 * padding - kernel) // stride + 1
    ow = (w + 2 * padding - kernel) // stride + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"a {kernel}x{kernel} window with padding {padding} does not fit {h}x{w}")
    ys = torch.arange(oh)[:, None] * stride - padding + torch.arange(kernel)[None]  # (oh, k)
    xs = torch.arange(ow)[:, None] * stride - padding + torch.arange(kernel)[None]  # (ow, k)
    yy = ys[:, None, :, None].expand(oh, ow, kernel, kernel)
    xx = xs[None, :, None, :].expand(oh, ow, kernel, kernel)
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    index = torch.where(inside, yy * w + xx, torch.full_like(yy, h * w))
    index = index.reshape(1, oh * ow, kernel * kernel)
    return (index.to(device) if device is not None else index), (oh, ow)


class OutlookAttention(nn.Module):
    """VOLO's outlook attention on channels-last maps, on :func:`outlook_attention`.

    ``v = Linear(x)``; slot logits ``Linear(avgpool_stride(x))`` per window (``K^2 x K^2`` per
    head, scaled by ``head_dim ** -0.5``); unfold/fold via :func:`outlook_windows`; ``proj``.
    Parameter names follow timm (``v``, ``attn``, ``proj``).

    Shapes:
        input/output ``[B, H, W, C]``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        kernel: int = 3,
        padding: int = 1,
        stride: int = 1,
        *,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.kernel, self.padding, self.stride = kernel, padding, stride
        self.scale = self.head_dim**-0.5
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn = nn.Linear(dim, kernel**4 * heads)
        self.attn_drop = float(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self._cache: dict[tuple[int, int, str], tuple[Tensor, tuple[int, int]]] = {}

    def _windows(self, h: int, w: int, device: torch.device) -> tuple[Tensor, tuple[int, int]]:
        key = (h, w, str(device))
        if key not in self._cache:
            self._cache[key] = outlook_windows(
                h, w, self.kernel, self.stride, self.padding, device=device
            )
        return self._cache[key]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"expected channels-last maps [B, H, W, {self.dim}], got {x.shape}")
        B, h, w, C = x.shape
        index, (oh, ow) = self._windows(h, w, x.device)
        centre = x
        if self.stride > 1:
            centre = F.avg_pool2d(
                x.permute(0, 3, 1, 2), self.stride, self.stride, ceil_mode=True
            ).permute(0, 2, 3, 1)
        if centre.shape[1:3] != (oh, ow):
            raise ValueError(
                f"pooled centres {tuple(centre.shape[1:3])} do not match the {oh}x{ow} windows "
                f"(kernel {self.kernel}, stride {self.stride}, padding {self.padding})"
            )
        K = self.kernel**2
        logits = self.attn(centre).view(B, oh * ow, self.heads, K, K).transpose(1, 2)
        v = self.v(x).view(B, h * w, self.heads, self.head_dim).transpose(1, 2)
        drop = self.attn_drop if self.training else 0.0
        out = outlook_attention(logits, v, index, scale=self.scale, dropout_p=drop)
        out = out.transpose(1, 2).reshape(B, h, w, C)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, kernel={self.kernel}, stride={self.stride}"
