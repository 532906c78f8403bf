"""Learning-rate and BatchNorm-momentum schedules as pure functions of the epoch.

Being functions of the epoch (not stateful schedulers), they need nothing saved to resume.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pointlib.engine.config import SchedConfig

__all__ = ["apply_schedule", "bn_momentum_at", "lr_at"]


def lr_at(s: SchedConfig, base_lr: float, epoch: int, total_epochs: int) -> float:
    """Learning rate of ``epoch`` (0-based) under the schedule ``s`` (see :class:`SchedConfig`)."""
    if s.name == "constant":
        return base_lr
    if s.name == "cosine":
        t = epoch / max(total_epochs, 1)
        return s.min_lr + (base_lr - s.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
    start_lr, start_e = base_lr, 0
    for r_epoch, r_lr in sorted(s.restarts):
        if epoch >= r_epoch:
            start_lr, start_e = float(r_lr), int(r_epoch)
    k = (epoch + s.offset) // s.step_size - (start_e + s.offset) // s.step_size
    return max(start_lr * s.gamma**k, s.min_lr)


def bn_momentum_at(s: SchedConfig, epoch: int) -> float | None:
    """BatchNorm momentum of ``epoch`` when ``s.bn_momentum`` is set, else None."""
    if s.bn_momentum is None:
        return None
    base, gamma, step, floor = s.bn_momentum
    return max(base * gamma ** (epoch // int(step)), floor)


def apply_schedule(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    s: SchedConfig,
    base_lr: float,
    epoch: int,
    total_epochs: int,
) -> float:
    """Set the learning rate (and BatchNorm momentum, when scheduled) of ``epoch``; return the
    learning rate."""
    lr = lr_at(s, base_lr, epoch, total_epochs)
    for group in optimizer.param_groups:
        group["lr"] = lr
    mom = bn_momentum_at(s, epoch)
    if mom is not None:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = mom
    return lr
