"""The training loop: seeded, resumable mid-epoch, DDP-aware, with val-based model selection.

A run folder receives ``config.resolved.yaml``, ``run_info.json`` (seeds, versions, git revision),
``metrics.csv``, TensorBoard events under ``tb/``, ``last.pt`` (resumable), ``best.pt`` (the
weights with the best validation metric) and, after the last epoch, ``results.json`` with the test
set evaluated once per test-time rotation on the best weights.

Exact resumption: the epoch's sample order and every augmentation are functions of
``(seed, epoch, index)``, loaders own their generators, and checkpoints hold the global RNG state,
optimiser, scaler and partial epoch metrics; a run stopped after any step and resumed therefore
ends with bit-identical weights on CPU.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from pointlib.engine.checkpoint import load_checkpoint
from pointlib.engine.config import Config
from pointlib.engine.data import DataBundle, make_loader
from pointlib.engine.distributed import DistInfo, all_reduce, barrier, broadcast_buffers
from pointlib.engine.evaluate import (
    ProtocolResult,
    _autocast,
    evaluate_test,
    forward_batch,
    write_results,
)
from pointlib.engine.metrics import ClassificationMeter, PartSegMeter
from pointlib.engine.outputs import atomic_write_text
from pointlib.engine.resume import RESUME_MAY_CHANGE, check_resume_compatible, rng_state
from pointlib.engine.run_state import (
    Run,
    TrainState,
    model_kwargs_for,
    start_run,
    write_checkpoint,
)
from pointlib.engine.runinfo import resolve_device, run_info, run_summary
from pointlib.engine.schedules import apply_schedule, bn_momentum_at, lr_at

__all__ = [
    "RESUME_MAY_CHANGE",
    "EpochOutcome",
    "Run",
    "TrainResult",
    "TrainState",
    "bn_momentum_at",
    "check_resume_compatible",
    "evaluate_best",
    "evaluate_test",
    "lr_at",
    "model_kwargs_for",
    "record_epoch",
    "resolve_device",
    "run_info",
    "run_summary",
    "start_run",
    "train",
    "train_epoch",
    "train_step",
    "validate_and_select",
    "write_checkpoint",
    "write_results",
]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` produced (every rank returns the same metrics)."""

    out_dir: Path | None
    completed: bool  # False when stopped early by ``train.max_steps`` or an interrupt
    epochs_done: int
    global_step: int
    best_metric: float
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, ProtocolResult] = field(default_factory=dict)
    model: nn.Module | None = None  # the final (last-step) weights, unwrapped from DDP
    best_model: nn.Module | None = None  # the val-selected weights the test set was run on


@dataclass
class EpochOutcome:
    """What :func:`train_epoch` leaves for :func:`validate_and_select`."""

    meter: ClassificationMeter | PartSegMeter  # this rank's training metrics of the epoch
    lr: float
    started: float  # time.time() at the start of the epoch
    stopped: bool  # ``train.max_steps`` reached: last.pt written, the run ends here


# --------------------------------------------------------------------------- helpers


def _train_batches(
    dataset: Dataset, batch_size: int, seed: int, epoch: int, dist_info: DistInfo
) -> list[list[int]]:
    """This rank's training batches of ``epoch`` (shuffled by ``(seed, epoch)``, last partial
    batch dropped; under DDP a ``DistributedSampler`` gives every rank the same batch count)."""
    sampler = DistributedSampler(
        dataset, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    order = list(sampler)
    n = len(order) // batch_size
    if n == 0:
        raise ValueError(
            f"training set of {len(dataset)} samples is smaller than one batch of {batch_size} "
            f"per process ({dist_info.world_size} processes); lower data.batch_size"
        )
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(n)]


def _meter(cfg: Config, data: DataBundle) -> ClassificationMeter | PartSegMeter:
    if cfg.task == "partseg":
        assert data.seg_classes is not None and data.num_parts is not None
        return PartSegMeter(data.seg_classes, data.num_parts)
    return ClassificationMeter(data.num_classes)


def _selection(cfg: Config) -> tuple[str, float]:
    """The metric that selects ``best.pt`` and its sign (larger signed score is better)."""
    key = cfg.train.select_metric
    if key == "auto":
        key = "instance_miou" if cfg.task == "partseg" else "oa"
    return key, (-1.0 if key == "loss" else 1.0)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# --------------------------------------------------------------------------- the steps


def train_step(run: Run, batch: dict[str, Any], meter: Any, where: tuple[int, int]) -> float:
    """One optimiser update on ``batch``; adds it to ``meter`` and returns the loss.

    ``where`` is ``(epoch, step)``, named when the loss is not finite (``FloatingPointError``).
    """
    cfg, device = run.cfg, run.device
    batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    normals = batch.get("normals") if cfg.data.normals else None
    with _autocast(device, run.use_amp, cfg.train.amp_dtype):
        logits = forward_batch(run.net, batch, cfg.task, batch["xyz"], normals)
        target = batch["parts"] if cfg.task == "partseg" else batch["label"]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"non-finite loss {float(loss.detach())} at epoch {where[0]}, step {where[1]}"
        )
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if cfg.train.grad_clip is not None:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), cfg.train.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    loss_value = float(loss.detach())
    if cfg.task == "partseg":
        meter.update(logits.detach().float(), target, batch["category"], loss_value)
    else:
        meter.update(logits.detach().float(), target, loss_value)
    return loss_value


def train_epoch(run: Run, state: TrainState, epoch: int, skip: int = 0) -> EpochOutcome:
    """Train ``epoch`` from its step ``skip`` on (a resumed run's first epoch skips the steps
    done), writing ``last.pt`` every ``train.checkpoint_every_steps`` and at ``train.max_steps``.

    On ``KeyboardInterrupt`` ``last.pt`` is written to resume at the first unfinished step, with
    the RNG state that step started from (exact unless the interrupt lands inside the optimiser
    update itself), and the interrupt is re-raised.
    """
    from pointlib.engine.progress import progress as progress_bar

    cfg, data = run.cfg, run.data
    started = time.time()
    lr = apply_schedule(run.optimizer, run.model, cfg.sched, cfg.optim.lr, epoch, cfg.train.epochs)
    batches = _train_batches(data.train, cfg.data.batch_size, cfg.train.seed, epoch, run.dist_info)
    if hasattr(data.train, "set_epoch"):
        data.train.set_epoch(epoch)
    loader = make_loader(
        data.train, batches[skip:], num_workers=cfg.data.num_workers, seed=cfg.train.seed
    )
    meter = _meter(cfg, data)
    if skip and state.meter_state is not None:
        meter.load_state(state.meter_state)
    run.net.train()
    desc = f"epoch {epoch + 1}/{cfg.train.epochs}"
    bar = progress_bar(
        loader, desc=desc, disable=not run.progress, initial=skip, total=len(batches), leave=False
    )
    done = skip  # steps of this epoch whose update is complete
    rng_at_step: dict[str, Any] | None = None  # RNG at the start of an unfinished step
    stopped, every = False, cfg.train.checkpoint_every_steps
    try:
        for step_i, batch in enumerate(bar, start=skip):
            rng_at_step = rng_state()
            loss_value = train_step(run, batch, meter, (epoch, step_i))
            state.global_step += 1
            done, rng_at_step = step_i + 1, None
            if run.progress:
                bar.set_postfix(loss=f"{loss_value:.3f}")
            if run.writer is not None and state.global_step % cfg.train.log_every == 0:
                run.writer.add_scalar("train/loss_step", loss_value, state.global_step)
            stopped = cfg.train.max_steps is not None and state.global_step >= cfg.train.max_steps
            if stopped or (every and state.global_step % every == 0):
                write_checkpoint(run, state, "last.pt", (epoch, step_i + 1), meter)
            if stopped:
                break
    except KeyboardInterrupt:
        log.warning("interrupted at epoch %d after step %d; writing last.pt", epoch, done)
        write_checkpoint(run, state, "last.pt", (epoch, done), meter, rng=rng_at_step)
        raise
    finally:
        bar.close()
    return EpochOutcome(meter=meter, lr=lr, started=started, stopped=stopped)


def validate(run: Run) -> ProtocolResult:
    """The validation split under the training rotation (one copy per sample)."""
    cfg, data = run.cfg, run.data
    assert data.val is not None
    as_test = DataBundle(
        train=data.train,
        val=None,
        test=data.val,
        classes=data.classes,
        up_axis=data.up_axis,
        seg_classes=data.seg_classes,
        num_parts=data.num_parts,
    )
    rot = cfg.augment.rotation
    return evaluate_test(
        cfg,
        run.model,
        as_test,
        rotations=[rot],
        num_rotations=1,
        device=run.device,
        dist_info=run.dist_info,
    )[rot]


def validate_and_select(
    run: Run, state: TrainState, epoch: int, outcome: EpochOutcome
) -> tuple[dict[str, Any], bool]:
    """Reduce the epoch's training metrics over ranks, validate, append the epoch's row to
    ``state.history`` and keep the weights when they beat ``state.best``.

    Returns the row and whether it improved. Without a validation split every epoch improves on
    the one before (the last epoch is "best")."""
    broadcast_buffers(run.model)
    meter = outcome.meter
    meter.load_state(all_reduce(meter.state()))
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": outcome.lr}
    row.update({f"train_{k}": v for k, v in meter.compute().items() if "/" not in k})
    key, sign = _selection(run.cfg)
    if run.data.val is not None:
        val = validate(run)
        row.update({f"val_{k}": v for k, v in val.copies[0].items() if "/" not in k})
        score = sign * row[f"val_{key}"]
    else:
        score = float(epoch)
    row["time_s"] = round(time.time() - outcome.started, 3)
    state.history.append(row)
    improved = score > state.best
    if improved:
        state.best = score
        state.best_weights = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    return row, improved


def record_epoch(
    run: Run, state: TrainState, epoch: int, row: dict[str, Any], improved: bool
) -> None:
    """Log a finished epoch: TensorBoard scalars, ``metrics.csv``, ``best.pt`` when it improved,
    ``last.pt`` (positioned at the next epoch) and the progress line."""
    from pointlib.engine.progress import progress_write

    if run.writer is not None:
        for k, v in row.items():
            if k != "epoch" and isinstance(v, float) and math.isfinite(v):
                run.writer.add_scalar(k.replace("_", "/", 1), v, epoch + 1)
    if run.writes:
        assert run.out is not None
        _write_csv(run.out / "metrics.csv", state.history)
        if improved:
            write_checkpoint(run, state, "best.pt", (epoch + 1, 0))
        write_checkpoint(run, state, "last.pt", (epoch + 1, 0))
    if run.progress:
        msg = " ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "lr")
        progress_write(f"epoch {epoch + 1}/{run.cfg.train.epochs}: {msg}")


def evaluate_best(run: Run, state: TrainState) -> tuple[nn.Module, dict[str, ProtocolResult]]:
    """Evaluate the selected weights on the test set once per ``cfg.eval.rotations`` and write
    ``results.json`` (and confusion plots). Returns the model tested and its results.

    The selected weights are the in-memory ones of this call, else ``best.pt`` of the run folder,
    else (no epoch ran and nothing on disk) the current model."""
    from pointlib.models import create_model

    barrier()
    best_model, weights = run.model, state.best_weights
    if weights is None and run.out is not None and (run.out / "best.pt").is_file():
        weights = load_checkpoint(run.out / "best.pt", map_location=run.device)["model"]
    if weights is not None:
        best_model = create_model(run.cfg.model.name, **run.model_kwargs).to(run.device)
        best_model.load_state_dict(weights)
    results = evaluate_test(
        run.cfg,
        best_model,
        run.data,
        device=run.device,
        dist_info=run.dist_info,
        progress=run.progress,
    )
    if run.writes:
        assert run.out is not None
        write_results(run.out, run.cfg, results, run.data.classes)
    return best_model, results


# --------------------------------------------------------------------------- training


def train(
    cfg: Config,
    out_dir: str | Path | None = None,
    *,
    data: DataBundle | None = None,
    resume: str | Path | None = None,
    run_test: bool = True,
) -> TrainResult:
    """Train ``cfg`` (optionally resuming from a ``last.pt``), then test the best weights.

    Args:
        cfg: the run configuration.
        out_dir: run folder (``cfg.out`` when None); None and no ``cfg.out`` writes nothing.
        data: prebuilt datasets (default: :func:`~pointlib.engine.data.build_data`).
        resume: a checkpoint written by this function; training continues from its position.
        run_test: evaluate the test set (once per ``cfg.eval.rotations``) after the last epoch.

    Under ``torchrun`` the model is wrapped in DDP, every rank trains on its shard, only rank 0
    writes files, and all ranks return the same (reduced) metrics. The steps are
    :func:`~pointlib.engine.run_state.start_run`, :func:`train_epoch`,
    :func:`validate_and_select`, :func:`record_epoch` and :func:`evaluate_best`.
    """
    run, state = start_run(cfg, out_dir, data, resume)
    start_epoch, start_step = state.epoch, state.step_in_epoch
    completed, epoch = True, start_epoch
    for epoch in range(start_epoch, cfg.train.epochs):
        outcome = train_epoch(run, state, epoch, skip=start_step if epoch == start_epoch else 0)
        if outcome.stopped:
            completed = False
            break
        row, improved = validate_and_select(run, state, epoch, outcome)
        record_epoch(run, state, epoch, row, improved)
        barrier()
    else:
        epoch = cfg.train.epochs
    if run.writer is not None:
        run.writer.close()
    _, sign = _selection(cfg)
    result = TrainResult(
        out_dir=run.out,
        completed=completed,
        epochs_done=epoch,
        global_step=state.global_step,
        best_metric=sign * state.best if math.isfinite(state.best) else float("nan"),
        history=state.history,
        model=run.model,
    )
    if completed and run_test:
        result.best_model, result.test = evaluate_best(run, state)
    return result
