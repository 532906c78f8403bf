"""Evaluation under rotation protocols: accuracy (or mIoU) mean +- std over R rotated copies and
the invariance error (max |logits_r - logits_0| over the copies of a sample)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from pointlib.engine.distributed import all_reduce
from pointlib.engine.metrics import ClassificationMeter, PartSegMeter
from pointlib.engine.rotations import rotate_batch, sample_rotations

__all__ = ["ProtocolResult", "evaluate_protocol", "forward_batch", "summarise"]


@dataclass
class ProtocolResult:
    """Metrics of one test-time rotation mode over ``copies`` rotated copies of the data."""

    rotation: str
    copies: list[dict[str, float]]
    invariance_error: float  # max |logits_r - logits_0| over samples, copies, entries (NaN if R=1)
    confusion: Tensor | None = None  # cls: summed over copies
    extra: dict[str, Any] = field(default_factory=dict)
    #: test samples whose predicted label is not the same on every rotated copy (part
    #: segmentation: samples with any point whose label changes); 0 when R = 1
    prediction_changes: int = 0
    #: part segmentation: points whose label is not the same on every copy (cls: = samples)
    point_changes: int = 0
    num_samples: int = 0

    def mean_std(self, key: str) -> tuple[float, float]:
        vals = [c[key] for c in self.copies]
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        return m, sd

    def as_dict(self) -> dict[str, Any]:
        keys = [k for k in self.copies[0] if not k.startswith("iou/")]
        out: dict[str, Any] = {"rotation": self.rotation, "num_rotations": len(self.copies)}
        for k in keys:
            out[f"{k}_mean"], out[f"{k}_std"] = self.mean_std(k)
        out["invariance_error"] = self.invariance_error
        out["prediction_changes"] = self.prediction_changes
        out["point_changes"] = self.point_changes
        out["num_samples"] = self.num_samples
        out["copies"] = self.copies
        return out


def forward_batch(
    model: nn.Module, batch: dict[str, Tensor], task: str, xyz: Tensor, normals: Tensor | None
) -> Tensor:
    """Call a classification (``model(xyz, normals)``) or part-seg model on a batch."""
    if task == "partseg":
        return model(xyz, normals, batch["category"])
    return model(xyz, normals)


AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _autocast(device: torch.device, amp: bool, dtype: str = "bfloat16"):
    """``torch.autocast`` on CUDA (bfloat16/float16) and CPU (bfloat16); else a no-op."""
    if not amp:
        return nullcontext()
    if dtype not in AMP_DTYPES:
        raise ValueError(f"amp dtype {dtype!r} is not one of {', '.join(AMP_DTYPES)}")
    if device.type == "cuda" or (device.type == "cpu" and dtype == "bfloat16"):
        return torch.autocast(device.type, dtype=AMP_DTYPES[dtype])
    return nullcontext()


@torch.no_grad()
def evaluate_protocol(
    model: nn.Module,
    loader: DataLoader,
    *,
    task: str,
    rotation: str,
    num_rotations: int,
    seed: int,
    up_axis: str,
    num_classes: int,
    seg_classes: list[list[int]] | None = None,
    num_parts: int | None = None,
    device: torch.device | str = "cpu",
    use_normals: bool = True,
    amp: bool = False,
    amp_dtype: str = "bfloat16",
    fixed_rotation: Tensor | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> ProtocolResult:
    """Evaluate ``model`` (put in eval mode) on ``loader`` under one rotation protocol.

    Copy ``r`` rotates sample ``i`` by ``sample_rotations(rotation, [i], seed=seed, copy=r)``;
    ``fixed_rotation`` (3, 3) instead applies one rotation to every sample (angle sweeps).
    Under ``torch.distributed`` the metric sums are reduced over ranks, so every rank returns the
    global result.
    """
    from pointlib.engine.progress import progress as progress_bar

    device = torch.device(device)
    copies = 1 if rotation == "none" or fixed_rotation is not None else num_rotations
    model.eval()
    if task == "partseg":
        assert seg_classes is not None and num_parts is not None
        meters: list[Any] = [PartSegMeter(seg_classes, num_parts) for _ in range(copies)]
    else:
        meters = [ClassificationMeter(num_classes) for _ in range(copies)]
    inv_err = torch.zeros((), dtype=torch.float64)
    # changed samples, changed points (partseg), samples
    changes = torch.zeros(3, dtype=torch.float64)
    loss_fn = nn.CrossEntropyLoss()
    for batch in progress_bar(loader, desc=desc, disable=not progress, leave=False):
        batch = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in batch.items()}
        xyz = batch["xyz"]
        normals = batch.get("normals") if use_normals else None
        first: Tensor | None = None
        changed: Tensor | None = None
        for r in range(copies):
            if fixed_rotation is not None:
                R = fixed_rotation.to(xyz.dtype).expand(xyz.shape[0], 3, 3)
            else:
                R = sample_rotations(
                    rotation, batch["index"], seed=seed, copy=r, up_axis=up_axis, dtype=xyz.dtype
                )
            rx, rn = rotate_batch(xyz, normals, R)
            with _autocast(device, amp, amp_dtype):
                logits = forward_batch(model, batch, task, rx, rn)
            logits = logits.float()
            if task == "partseg":
                target = batch["parts"]
                loss = loss_fn(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
                meters[r].update(logits, target, batch["category"], float(loss))
            else:
                target = batch["label"]
                meters[r].update(logits, target, float(loss_fn(logits, target)))
            if first is None:
                first = logits
                changed = torch.zeros_like(logits.argmax(-1), dtype=torch.bool)
            else:
                inv_err = torch.maximum(inv_err, (logits - first).abs().max().double().cpu())
                changed = changed | (logits.argmax(-1) != first.argmax(-1))
        assert changed is not None
        per_sample = changed if changed.dim() == 1 else changed.any(-1)
        changes += torch.tensor(
            [float(per_sample.sum()), float(changed.sum()), float(per_sample.numel())],
            dtype=torch.float64,
        )
    for m in meters:
        m.load_state(all_reduce(m.state()))
    inv_err = all_reduce(inv_err, "max")
    changes = all_reduce(changes)
    return ProtocolResult(
        rotation=rotation if fixed_rotation is None else "fixed",
        copies=[m.compute() for m in meters],
        invariance_error=float(inv_err) if copies > 1 else float("nan"),
        confusion=sum(m.cm for m in meters) if task != "partseg" else None,
        prediction_changes=int(changes[0]),
        point_changes=int(changes[1]),
        num_samples=int(changes[2]),
    )


def summarise(result: ProtocolResult, task: str) -> str:
    """One line: ``OA 91.2 +- 0.4 | mAcc ... | inv.err 1.2e-06``."""
    if task == "partseg":
        parts = [("inst.mIoU", "instance_miou"), ("cls.mIoU", "class_miou")]
    else:
        parts = [("OA", "oa"), ("mAcc", "macc")]
    txt = " | ".join(
        "{} {:.2f} ± {:.2f}".format(name, *(100 * x for x in result.mean_std(k)))
        for name, k in parts
    )
    err = result.invariance_error
    if not math.isfinite(err):
        return f"{txt} | inv.err – (one copy)"
    return (
        f"{txt} | inv.err {err:.2e} | pred. changes "
        f"{result.prediction_changes}/{result.num_samples}"
    )
