"""Evaluation under rotation protocols: accuracy (or mIoU) mean +- std over R rotated copies and
the invariance error (max |logits_r - logits_0| over the copies of a sample)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from pointlib.engine.config import Config
from pointlib.engine.data import DataBundle, make_loader
from pointlib.engine.distributed import DistInfo, all_reduce
from pointlib.engine.metrics import ClassificationMeter, PartSegMeter
from pointlib.engine.outputs import atomic_write_text, dumps_json
from pointlib.engine.rotations import rotate_batch, sample_rotations

__all__ = [
    "ProtocolOptions",
    "ProtocolResult",
    "eval_batches",
    "evaluate_protocol",
    "evaluate_test",
    "forward_batch",
    "summarise",
    "write_results",
]


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


@dataclass(frozen=True)
class ProtocolOptions:
    """What one evaluation protocol needs to know about the task, the data and the run.

    ``task`` is ``"cls"`` or ``"partseg"``; ``rotation`` a protocol of
    :func:`~pointlib.engine.rotations.sample_rotations` (``none``, ``z``, ``so3`` ...) applied
    ``num_rotations`` times per sample, seeded by ``seed``; ``up_axis`` the data's up axis.
    ``seg_classes`` / ``num_parts`` are required for part segmentation. ``use_normals=False``
    feeds the model no normals; ``amp`` runs the forward under autocast with ``amp_dtype``.
    """

    task: str
    rotation: str
    num_rotations: int
    seed: int
    up_axis: str
    num_classes: int
    seg_classes: list[list[int]] | None = None
    num_parts: int | None = None
    use_normals: bool = True
    amp: bool = False
    amp_dtype: str = "bfloat16"

    def meters(self, copies: int) -> list[Any]:
        """One empty metric meter per rotated copy."""
        if self.task == "partseg":
            if self.seg_classes is None or self.num_parts is None:
                raise ValueError("part segmentation needs seg_classes and num_parts")
            return [PartSegMeter(self.seg_classes, self.num_parts) for _ in range(copies)]
        return [ClassificationMeter(self.num_classes) for _ in range(copies)]


class _Changes:
    """Invariance error and prediction changes accumulated over batches (float64 sums)."""

    def __init__(self) -> None:
        self.inv_err = torch.zeros((), dtype=torch.float64)
        # changed samples, changed points (partseg), samples
        self.counts = torch.zeros(3, dtype=torch.float64)

    def add_batch(self, logits: list[Tensor]) -> None:
        first = logits[0]
        changed = torch.zeros_like(first.argmax(-1), dtype=torch.bool)
        for other in logits[1:]:
            self.inv_err = torch.maximum(self.inv_err, (other - first).abs().max().double().cpu())
            changed = changed | (other.argmax(-1) != first.argmax(-1))
        per_sample = changed if changed.dim() == 1 else changed.any(-1)
        self.counts += torch.tensor(
            [float(per_sample.sum()), float(changed.sum()), float(per_sample.numel())],
            dtype=torch.float64,
        )


def _copy_rotation(
    opts: ProtocolOptions, batch: dict[str, Any], r: int, fixed: Tensor | None, xyz: Tensor
) -> Tensor:
    """The (B, 3, 3) rotations of copy ``r`` of a batch."""
    if fixed is not None:
        return fixed.to(xyz.dtype).expand(xyz.shape[0], 3, 3)
    return sample_rotations(
        opts.rotation, batch["index"], seed=opts.seed, copy=r, up_axis=opts.up_axis, dtype=xyz.dtype
    )


def _evaluate_batch(
    model: nn.Module,
    batch: dict[str, Any],
    opts: ProtocolOptions,
    meters: list[Any],
    device: torch.device,
    fixed_rotation: Tensor | None,
) -> list[Tensor]:
    """Forward every rotated copy of one batch, update its meter; return the float logits."""
    loss_fn = nn.CrossEntropyLoss()
    xyz = batch["xyz"]
    normals = batch.get("normals") if opts.use_normals else None
    out = []
    for r, meter in enumerate(meters):
        rx, rn = rotate_batch(xyz, normals, _copy_rotation(opts, batch, r, fixed_rotation, xyz))
        with _autocast(device, opts.amp, opts.amp_dtype):
            logits = forward_batch(model, batch, opts.task, rx, rn)
        logits = logits.float()
        if opts.task == "partseg":
            target = batch["parts"]
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
            meter.update(logits, target, batch["category"], float(loss))
        else:
            target = batch["label"]
            meter.update(logits, target, float(loss_fn(logits, target)))
        out.append(logits)
    return out


@torch.no_grad()
def evaluate_protocol(
    model: nn.Module,
    loader: DataLoader,
    options: ProtocolOptions,
    *,
    device: torch.device | str = "cpu",
    fixed_rotation: Tensor | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> ProtocolResult:
    """Evaluate ``model`` (put in eval mode) on ``loader`` under one rotation protocol.

    Copy ``r`` rotates sample ``i`` by ``sample_rotations(options.rotation, [i], seed=options.seed,
    copy=r)``; ``fixed_rotation`` (3, 3) instead applies one rotation to every sample (angle
    sweeps). Under ``torch.distributed`` the metric sums are reduced over ranks, so every rank
    returns the global result.
    """
    from pointlib.engine.progress import progress as progress_bar

    device = torch.device(device)
    copies = (
        1 if options.rotation == "none" or fixed_rotation is not None else options.num_rotations
    )
    model.eval()
    meters = options.meters(copies)
    changes = _Changes()
    for batch in progress_bar(loader, desc=desc, disable=not progress, leave=False):
        batch = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in batch.items()}
        changes.add_batch(_evaluate_batch(model, batch, options, meters, device, fixed_rotation))
    for m in meters:
        m.load_state(all_reduce(m.state()))
    inv_err = all_reduce(changes.inv_err, "max")
    counts = all_reduce(changes.counts)
    return ProtocolResult(
        rotation=options.rotation if fixed_rotation is None else "fixed",
        copies=[m.compute() for m in meters],
        invariance_error=float(inv_err) if copies > 1 else float("nan"),
        confusion=sum(m.cm for m in meters) if options.task != "partseg" else None,
        prediction_changes=int(counts[0]),
        point_changes=int(counts[1]),
        num_samples=int(counts[2]),
    )


# --------------------------------------------------------------------------- a run's test set


def eval_batches(n: int, batch_size: int, dist_info: DistInfo) -> list[list[int]]:
    """This rank's share of ``range(n)``, sequential, nothing padded or dropped."""
    mine = list(range(dist_info.rank, n, dist_info.world_size))
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


def evaluate_test(
    cfg: Config,
    model: nn.Module,
    data: DataBundle,
    *,
    rotations: list[str] | None = None,
    num_rotations: int | None = None,
    device: torch.device | str = "cpu",
    dist_info: DistInfo | None = None,
    fixed_rotation: torch.Tensor | None = None,
    progress: bool = False,
) -> dict[str, ProtocolResult]:
    """Evaluate ``model`` on ``data.test`` once per test-time rotation (seeded per sample)."""
    dist_info = dist_info or DistInfo()
    bs = cfg.data.eval_batch_size or cfg.data.batch_size
    loader = make_loader(
        data.test, eval_batches(len(data.test), bs, dist_info), num_workers=cfg.data.num_workers
    )
    out: dict[str, ProtocolResult] = {}
    for rot in rotations if rotations is not None else cfg.eval.rotations:
        options = ProtocolOptions(
            task=cfg.task,
            rotation=rot,
            num_rotations=num_rotations or cfg.eval.num_rotations,
            seed=cfg.eval.seed,
            up_axis=data.up_axis,
            num_classes=data.num_classes,
            seg_classes=data.seg_classes,
            num_parts=data.num_parts,
            use_normals=cfg.data.normals,
            amp=cfg.eval.amp,
            amp_dtype=cfg.train.amp_dtype,
        )
        out[rot] = evaluate_protocol(
            model,
            loader,
            options,
            device=device,
            fixed_rotation=fixed_rotation,
            progress=progress and dist_info.is_main,
            desc=f"test {rot}",
        )
    return out


def write_results(
    out: Path, cfg: Config, results: dict[str, ProtocolResult], classes: list[str]
) -> None:
    """``results.json`` and, for classification, ``confusion_<rotation>.png`` per protocol."""
    payload = {
        "train_rotation": cfg.augment.rotation,
        "protocols": {k: v.as_dict() for k, v in results.items()},
    }
    atomic_write_text(out / "results.json", dumps_json(payload))
    if cfg.task == "cls":
        from pointlib.engine.plots import plot_confusion

        for rot, res in results.items():
            if res.confusion is not None:
                plot_confusion(
                    res.confusion,
                    classes,
                    out / f"confusion_{rot}.png",
                    title=f"{cfg.model.name}  {cfg.augment.rotation}/{rot}",
                    copies=len(res.copies),
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
