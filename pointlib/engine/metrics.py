"""Metrics: accuracy / mean class accuracy / confusion matrix, and ShapeNetPart-style mIoU.

All accumulators keep their state in tensors of sums, so distributed evaluation reduces them
exactly with one ``all_reduce(SUM)`` (:meth:`ClassificationMeter.state` / ``load_state``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "ClassificationMeter",
    "PartSegMeter",
    "confusion_matrix",
    "mean_class_accuracy",
    "overall_accuracy",
    "restrict_to_category",
    "shape_iou",
]


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``cm[t, p]`` = count of samples of true class ``t`` predicted as ``p``, int64 ``(C, C)``."""
    pred, target = pred.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if target.numel() and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"target labels must be in [0, {num_classes}), got {target.max()}")
    idx = target * num_classes + pred
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, -1)


def overall_accuracy(cm: Tensor) -> float:
    """Fraction of correct predictions (NaN for an empty matrix)."""
    total = cm.sum()
    return float(cm.diagonal().sum() / total) if total > 0 else float("nan")


def mean_class_accuracy(cm: Tensor) -> float:
    """Mean per-class recall over the classes that occur in the targets (balanced accuracy)."""
    support = cm.sum(1)
    present = support > 0
    if not present.any():
        return float("nan")
    recall = cm.diagonal()[present].double() / support[present].double()
    return float(recall.mean())


class ClassificationMeter:
    """Accumulates a confusion matrix and the summed loss."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.loss_sum = 0.0
        self.count = 0

    def update(self, logits: Tensor, target: Tensor, loss: float | None = None) -> None:
        """Add a batch: ``logits (B, C)``, ``target (B,)``; ``loss`` is the batch-mean loss."""
        self.cm += confusion_matrix(logits.argmax(-1), target, self.num_classes)
        if loss is not None:
            self.loss_sum += float(loss) * target.shape[0]
        self.count += int(target.shape[0])

    def state(self) -> Tensor:
        """All sums as one float64 vector (for ``all_reduce``)."""
        sums = torch.tensor([self.loss_sum, self.count], dtype=torch.float64)
        return torch.cat([self.cm.reshape(-1).double(), sums])

    def load_state(self, v: Tensor) -> None:
        c2 = self.num_classes**2
        self.cm = v[:c2].round().long().reshape(self.num_classes, self.num_classes)
        self.loss_sum, self.count = float(v[c2]), round(float(v[c2 + 1]))

    def compute(self) -> dict[str, float]:
        """``oa``, ``macc`` and ``loss`` (mean over samples; NaN when no loss was given)."""
        loss = self.loss_sum / self.count if self.count and self.loss_sum else float("nan")
        return {"oa": overall_accuracy(self.cm), "macc": mean_class_accuracy(self.cm), "loss": loss}


def restrict_to_category(
    logits: Tensor, category: Tensor, seg_classes: Sequence[Sequence[int]]
) -> Tensor:
    """Per-point argmax over the parts of each shape's category only.

    Args:
        logits: ``(B, N, P)`` part scores.
        category: ``(B,)`` int64 category index into ``seg_classes``.
        seg_classes: for each category the list of its global part ids.

    Returns:
        ``(B, N)`` int64 predicted global part ids.
    """
    P = logits.shape[-1]
    allowed = torch.zeros(len(seg_classes), P, dtype=torch.bool, device=logits.device)
    for c, parts in enumerate(seg_classes):
        allowed[c, list(parts)] = True
    mask = allowed[category.long()]  # (B, P)
    masked = logits.masked_fill(~mask[:, None, :], float("-inf"))
    return masked.argmax(-1)


def shape_iou(pred: Tensor, target: Tensor, parts: Sequence[int]) -> float:
    """Mean IoU over a category's ``parts`` for one shape; a part absent from both the target and
    the prediction counts as IoU 1 (ShapeNetPart convention). ``pred``/``target`` are ``(N,)``."""
    ious = []
    for p in parts:
        t, q = target == p, pred == p
        union = int((t | q).sum())
        ious.append(1.0 if union == 0 else int((t & q).sum()) / union)
    return sum(ious) / len(ious)


class PartSegMeter:
    """Class mIoU (mean over categories of their mean shape IoU), instance mIoU (mean over
    shapes) and point accuracy, with predictions restricted to each shape's category parts."""

    def __init__(self, seg_classes: Sequence[Sequence[int]], num_parts: int) -> None:
        self.seg_classes = [list(p) for p in seg_classes]
        self.num_parts = num_parts
        C = len(self.seg_classes)
        self.iou_sum = torch.zeros(C, dtype=torch.float64)
        self.shape_count = torch.zeros(C, dtype=torch.float64)
        self.correct = 0.0
        self.points = 0.0
        self.loss_sum = 0.0

    def update(
        self, logits: Tensor, target: Tensor, category: Tensor, loss: float | None = None
    ) -> None:
        """``logits (B, N, P)``, ``target (B, N)`` global part ids, ``category (B,)``."""
        pred = restrict_to_category(logits.detach(), category, self.seg_classes).cpu()
        target, category = target.cpu().long(), category.cpu().long()
        for b in range(pred.shape[0]):
            c = int(category[b])
            self.iou_sum[c] += shape_iou(pred[b], target[b], self.seg_classes[c])
            self.shape_count[c] += 1
        self.correct += float((pred == target).sum())
        self.points += target.numel()
        if loss is not None:
            self.loss_sum += float(loss) * pred.shape[0]

    def state(self) -> Tensor:
        extra = torch.tensor([self.correct, self.points, self.loss_sum], dtype=torch.float64)
        return torch.cat([self.iou_sum, self.shape_count, extra])

    def load_state(self, v: Tensor) -> None:
        C = len(self.seg_classes)
        self.iou_sum, self.shape_count = v[:C].clone(), v[C : 2 * C].clone()
        self.correct, self.points, self.loss_sum = (float(x) for x in v[2 * C :])

    def compute(self) -> dict[str, float]:
        """``instance_miou``, ``class_miou``, ``point_acc``, ``loss`` and ``iou/<category idx>``."""
        n = float(self.shape_count.sum())
        present = self.shape_count > 0
        per_cat = self.iou_sum[present] / self.shape_count[present]
        out = {
            "instance_miou": float(self.iou_sum.sum() / n) if n else float("nan"),
            "class_miou": float(per_cat.mean()) if present.any() else float("nan"),
            "point_acc": self.correct / self.points if self.points else float("nan"),
            "loss": self.loss_sum / n if n and self.loss_sum else float("nan"),
        }
        for c in torch.nonzero(present).reshape(-1).tolist():
            out[f"iou/{c}"] = float(self.iou_sum[c] / self.shape_count[c])
        return out
