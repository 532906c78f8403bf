r"""Outlook attention on the angle-ordered rings of a point network (issue 17).

RISurConv sorts the ``K`` neighbours of every centre by their angle about the centre's normal,
starting from a rotation-invariant reference neighbour (:mod:`pointlib.features.ordering`). That
gives every neighbourhood an ordered set of *slots* that does not depend on the pose of the
cloud — exactly what VOLO's outlook attention needs: slot weights predicted from the
neighbourhood's centre token, no keys.

:class:`RingOutlook` applies it inside each ring, on the per-(centre, neighbour) features of a
RISurConv layer ``h (B, S, K, C)``:

.. math::
    c = \frac1K \sum_k \mathrm{LN}(h)_k, \qquad
    y_s = \sum_t \operatorname{softmax}_t\big(L(c)_{s,t}\, d^{-1/2}\big)\, W_v \mathrm{LN}(h)_t,
    \qquad h' = h + W_o\, y

with one ``K x K`` logit matrix per head (``kernel="full"``, VOLO), or a **circulant** one,
``L_{s,t} = \ell_{(t - s) \bmod K}`` (``kernel="cyclic"``): a softmax-normalised dynamic kernel
over angular offsets, predicted per centre (the dynamic-kernel family of OverLoCK's ContMix and
LSNet, on a ring instead of a 3x3 grid). Both run through
:func:`pointlib.attention.outlook.outlook_attention` (``return_groups``: the per-pair features of
one ring are not shared with other rings, so there is nothing to fold).

Rotation invariance: the inputs are rotation-invariant features in a rotation-invariant slot
order, the centre token is a mean over slots, and every operation is per-slot or a fixed
function of slot positions, so the layer keeps the network's invariance (tested on real shapes
in ``tests/models/test_ring_outlook.py``). The cyclic kernel only needs the *cyclic* order: it
commutes with a rotation of the ring's starting slot.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from pointlib.attention.outlook import outlook_attention

__all__ = ["RingKernel", "RingOutlook", "circulant"]

RingKernel = Literal["full", "cyclic"]


def circulant(ell: Tensor) -> Tensor:
    """``(..., K)`` offset logits -> ``(..., K, K)`` with ``[s, t] = ell[(t - s) mod K]``."""
    K = ell.shape[-1]
    s = torch.arange(K, device=ell.device)
    return ell[..., (s[None, :] - s[:, None]) % K]


class RingOutlook(nn.Module):
    """Outlook attention among the ``K`` ring-ordered slots of every centre (pre-norm residual).

    Args:
        channels: feature channels ``C`` of ``h``.
        num_slots: ring size ``K`` (the layer's ``nsample``); the logits address slots by
            position, so the input must have exactly this many.
        heads: number of heads (``C`` divisible by it) (default: ``1``).
        kernel: ``"full"`` (VOLO: ``K x K`` logits per head) or ``"cyclic"`` (``K`` offset
            logits per head, circulant) (default: ``"full"``).

    Shapes:
        - input: ``(B, S, K, C)`` channels-last (``S`` centres, ``K`` ring slots)
        - output: ``(B, S, K, C)``
    """

    def __init__(
        self, channels: int, num_slots: int, heads: int = 1, *, kernel: RingKernel = "full"
    ) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels={channels} is not divisible by heads={heads}")
        if kernel not in ("full", "cyclic"):
            raise ValueError(f"kernel must be 'full' or 'cyclic', got {kernel!r}")
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        self.channels, self.num_slots, self.heads, self.kernel = channels, num_slots, heads, kernel
        self.head_dim = channels // heads
        self.norm = nn.LayerNorm(channels)
        per_head = num_slots * num_slots if kernel == "full" else num_slots
        self.attn = nn.Linear(channels, heads * per_head)
        self.v = nn.Linear(channels, channels, bias=False)
        self.proj = nn.Linear(channels, channels)

    def forward(self, h: Tensor) -> Tensor:
        if h.dim() != 4 or h.shape[-1] != self.channels:
            raise ValueError(f"expected (B, S, K, {self.channels}), got {tuple(h.shape)}")
        B, S, K, C = h.shape
        if K != self.num_slots:
            raise ValueError(
                f"RingOutlook was built for rings of {self.num_slots} slots, got {K} "
                "(does the cloud have fewer points than the layer's nsample?)"
            )
        x = self.norm(h)
        logits = self.attn(x.mean(dim=2))  # (B, S, H * per_head), from the ring's centre token
        if self.kernel == "full":
            logits = logits.view(B, S, self.heads, K, K)
        else:
            logits = circulant(logits.view(B, S, self.heads, K))
        logits = logits.transpose(1, 2)  # (B, H, S, K, K)
        v = self.v(x).view(B, S * K, self.heads, self.head_dim).transpose(1, 2)
        # index=None: each ring owns its K slots (pair features are not shared between rings)
        y = outlook_attention(logits, v, None, scale=self.head_dim**-0.5, return_groups=True)
        y = y.permute(0, 2, 3, 1, 4).reshape(B, S, K, C)
        return h + self.proj(y)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_slots={self.num_slots}, heads={self.heads}, "
            f"kernel={self.kernel!r}"
        )
