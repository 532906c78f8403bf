"""Prediction heads: the MLP classifier head and RISurConv's global transformer (spec §3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from pointlib.nn.blocks import BatchNormLast


class ClassifierHead(nn.Sequential):
    """``[Linear -> BN -> ReLU -> Dropout] * len(hidden) -> Linear`` returning logits.

    The reference head is ``512 -> 256 -> 128 -> num_classes`` with dropout 0.4 followed by a
    ``log_softmax``; this head stops at the logits (same argmax; use ``F.cross_entropy``).

    Args:
        in_channels: input width ``C``.
        num_classes: output width.
        hidden: hidden widths (default: ``(256, 128)``).
        dropout: dropout probability after each hidden block (default: ``0.4``).

    Shapes:
        - input: ``(B, C)`` (or ``(*, C)``; BatchNorm statistics over every leading axis)
        - output: ``(B, num_classes)``
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.4,
    ) -> None:
        layers: list[nn.Module] = []
        last = in_channels
        for h in hidden:
            layers += [nn.Linear(last, h), BatchNormLast(h), nn.ReLU(), nn.Dropout(dropout)]
            last = h
        layers.append(nn.Linear(last, num_classes))
        super().__init__(*layers)


class GlobalTransformer(nn.Module):
    r"""The classifier's ``TransformerEncoder`` over the global feature (spec §3.1, §9).

    ``num_layers`` post-norm :class:`torch.nn.TransformerEncoderLayer` blocks (``d_model``,
    ``nhead``, ``dim_feedforward``, ReLU, ``dropout``), stored in ``self.encoder`` (a
    :class:`torch.nn.TransformerEncoder`; the reference model additionally keeps the template
    layer it deep-copies, 3,152,384 never-used parameters, which is not kept here).

    Args:
        d_model: width ``C`` of the global feature (default: ``512``).
        nhead: attention heads (default: ``8``).
        num_layers: encoder layers (default: ``3``).
        dim_feedforward: FFN width (default: ``2048``).
        dropout: dropout (default: ``0.05``).
        over_batch: ``True`` reproduces the reference bug (default: ``False``).

            - ``True`` (faithful): the ``(B, 1, C)`` tensor is read with ``batch_first=False``,
              i.e. as **one sequence of B tokens**: self-attention mixes the samples of the
              mini-batch, so a sample's output depends on the other samples (also in ``eval()``).
            - ``False`` (fixed): each sample is its own sequence of length 1. Softmax over one key
              is 1, so self-attention reduces to ``out_proj(v_proj(x))``; this is computed
              directly (the query/key rows of ``in_proj_weight`` are kept, for identical
              parameter counts and checkpoints, but get zero gradient). Equal to running
              ``self.encoder`` on ``x[None]`` (tested).

    Shapes:
        - input: ``(B, C)``
        - output: ``(B, C)``
    """

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_layers: int = 3,
        dim_feedforward: int = 2048,
        dropout: float = 0.05,
        *,
        over_batch: bool = False,
    ) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward=dim_feedforward, dropout=dropout
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.over_batch = over_batch
        self.nhead = nhead

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"expected (B, C), got {tuple(x.shape)}")
        if self.over_batch:
            return self.encoder(x[:, None, :])[:, 0]  # (seq=B, batch=1, C)
        for layer in self.encoder.layers:
            x = self._single_token_layer(layer, x)
        return x

    def _single_token_layer(self, layer: nn.TransformerEncoderLayer, x: Tensor) -> Tensor:
        attn = layer.self_attn
        C = x.shape[-1]
        w, b = attn.in_proj_weight, attn.in_proj_bias
        v = F.linear(x, w[2 * C :], None if b is None else b[2 * C :])
        if self.training and attn.dropout > 0:
            # dropout of the (single, = 1) attention weight of each head, as in the module
            keep = F.dropout(v.new_ones(x.shape[0], self.nhead, 1), attn.dropout, True)
            v = (v.view(x.shape[0], self.nhead, -1) * keep).view_as(v)
        a = attn.out_proj(v)
        x = layer.norm1(x + layer.dropout1(a))  # post-norm (norm_first=False)
        ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))
        return layer.norm2(x + layer.dropout2(ff))

    def extra_repr(self) -> str:
        return f"over_batch={self.over_batch}"
