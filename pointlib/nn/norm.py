"""``BatchNormLast``: BatchNorm over the last (channel) axis of channels-last tensors."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["BatchNormLast"]


class BatchNormLast(nn.BatchNorm1d):
    """Batch normalisation over the last (channel) axis of a tensor of any rank >= 2.

    Statistics are taken over every leading axis, which is what ``BatchNorm1d`` on ``(B, C, N)``
    and ``BatchNorm2d`` on ``(B, C, K, S)`` do. Parameters and buffers are those of
    :class:`torch.nn.BatchNorm1d`.

    Shapes:
        - input: ``(*, C)``
        - output: ``(*, C)``
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.num_features:
            raise ValueError(f"expected {self.num_features} channels last, got {tuple(x.shape)}")
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).view(shape)
