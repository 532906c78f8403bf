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
import importlib
import io
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from pointlib.engine.checkpoint import load_checkpoint, remove_stale_temps_in, save_checkpoint
from pointlib.engine.config import Config, SchedConfig, config_to_dict, save_config
from pointlib.engine.data import DataBundle, build_data, make_loader
from pointlib.engine.distributed import (
    DistInfo,
    all_reduce,
    barrier,
    broadcast_buffers,
    init_distributed,
)
from pointlib.engine.evaluate import (
    ProtocolResult,
    _autocast,
    evaluate_protocol,
    forward_batch,
)
from pointlib.engine.metrics import ClassificationMeter, PartSegMeter
from pointlib.engine.outputs import atomic_write_text, dumps_json, honour_umask

__all__ = [
    "TrainResult",
    "bn_momentum_at",
    "check_resume_compatible",
    "evaluate_test",
    "lr_at",
    "run_info",
    "run_summary",
    "train",
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


# --------------------------------------------------------------------------- schedules


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


# --------------------------------------------------------------------------- run metadata


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_info(cfg: Config, dist_info: DistInfo, device: torch.device) -> dict[str, Any]:
    """Seeds, library versions, git revision, host and command line of this run."""
    import numpy

    import pointlib

    return {
        "seed": cfg.train.seed,
        "eval_seed": cfg.eval.seed,
        "versions": {
            "pointlib": pointlib.__version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
            "cuda": torch.version.cuda,
        },
        "git_revision": _git_revision(),
        "host": platform.node(),
        "platform": platform.platform(),
        "argv": sys.argv,
        "device": str(device),
        "world_size": dist_info.world_size,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------- helpers


def resolve_device(name: str, dist_info: DistInfo, *, flag: str = "train.device") -> torch.device:
    """``auto`` -> CUDA (this rank's GPU under DDP) when available, else CPU.

    ``flag`` is how the user chose the device (``--device``, ``train.device``); a CUDA request
    that cannot be served raises :class:`~pointlib.engine.config.ConfigError` naming it and
    saying whether the installed torch is a CPU-only build."""
    from pointlib.engine.config import ConfigError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist_info.enabled:
        name = f"cuda:{dist_info.local_rank}"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"{flag}: {name!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{flag}: {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        if torch.version.cuda is None:
            why = f"the installed torch {torch.__version__} is a CPU-only build"
        else:
            why = (
                f"no CUDA device is visible (torch {torch.__version__}, CUDA {torch.version.cuda})"
            )
        raise ConfigError(
            f"{_flag(flag, name)} asks for CUDA, but {why}; use {_flag(flag, 'cpu')} (or auto)"
        )
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{_flag(flag, name)}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return device


def run_summary(
    cfg: Config,
    data: DataBundle,
    model: nn.Module,
    device: torch.device,
    out: Path | None,
    dist_info: DistInfo | None = None,
) -> str:
    """The one line ``pointlib train`` starts with: model, parameters, data sizes, device."""
    world = dist_info.world_size if dist_info is not None else 1
    n_val = len(data.val) if data.val is not None else 0
    steps = len(data.train) // (cfg.data.batch_size * world)
    params = sum(p.numel() for p in model.parameters())
    where = f" -> {out}" if out is not None else ""
    procs = f" x {world} processes" if world > 1 else ""
    return (
        f"train {cfg.model.name} ({params:,} parameters) on {cfg.data.name}: "
        f"{len(data.train)} train / {n_val} val / {len(data.test)} test samples, "
        f"{cfg.data.num_points} points, {data.num_classes} classes; {cfg.train.epochs} epochs "
        f"x {steps} steps of {cfg.data.batch_size}{procs}, augment {cfg.augment.rotation}, "
        f"device {device}{where}"
    )


def _flag(flag: str, value: str) -> str:
    """``--device cuda`` for an option, ``train.device=cuda`` for a config key."""
    return f"{flag} {value}" if flag.startswith("-") else f"{flag}={value}"


def _set_deterministic(on: bool) -> None:
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def model_kwargs_for(cfg: Config, data: DataBundle) -> dict[str, Any]:
    """``cfg.model.kwargs`` with the class / part counts filled in from the data."""
    kw = dict(cfg.model.kwargs)
    if cfg.task == "partseg":
        kw.setdefault("num_parts", data.num_parts)
        kw.setdefault("num_categories", data.num_classes)
    else:
        kw.setdefault("num_classes", data.num_classes)
    return kw


def _build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "adam":
        return torch.optim.Adam(
            params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
        )
    if o.name == "adamw":
        return torch.optim.AdamW(
            params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
        )
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


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


def _eval_batches(n: int, batch_size: int, dist_info: DistInfo) -> list[list[int]]:
    """This rank's share of ``range(n)``, sequential, nothing padded or dropped."""
    mine = list(range(dist_info.rank, n, dist_info.world_size))
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


def _meter(cfg: Config, data: DataBundle) -> ClassificationMeter | PartSegMeter:
    if cfg.task == "partseg":
        assert data.seg_classes is not None and data.num_parts is not None
        return PartSegMeter(data.seg_classes, data.num_parts)
    return ClassificationMeter(data.num_classes)


def _select_key(cfg: Config) -> str:
    key = cfg.train.select_metric
    if key == "auto":
        return "instance_miou" if cfg.task == "partseg" else "oa"
    return key


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- resuming

#: Config entries that may differ between a run and its resumption (where it runs, how long,
#: how it logs and how it is evaluated); every other entry must match the checkpoint's config.
RESUME_MAY_CHANGE: tuple[str, ...] = (
    "name",
    "out",
    "data.root",
    "data.num_workers",
    "data.eval_batch_size",
    "train.epochs",
    "train.max_steps",
    "train.device",
    "train.amp",
    "train.progress",
    "train.tensorboard",
    "train.log_every",
    "train.checkpoint_every_steps",
    "train.dist_timeout_s",
    "eval",
    "robustness",
)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and (d or not prefix):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def _may_change(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in RESUME_MAY_CHANGE)


def check_resume_compatible(
    state: dict[str, Any], cfg: Config, model_kwargs: dict[str, Any]
) -> None:
    """Raise ``ValueError`` when checkpoint ``state`` was not written by a run of ``cfg``.

    The model name and the resolved model keywords (``faithful`` and the other quirk switches
    included) must be equal, and so must every config entry outside :data:`RESUME_MAY_CHANGE`
    (task, data, augmentation, optimiser, schedule, seed ...). The message names the checkpoint
    and each differing dotted key with both values.
    """
    where = state.get("path", "checkpoint")
    if state["model_name"] != cfg.model.name:
        raise ValueError(
            f"cannot resume {where}: it holds {state['model_name']!r}, "
            f"the config builds {cfg.model.name!r}"
        )
    saved_kw = _with_defaults(cfg.model.name, dict(state.get("model_kwargs") or {}))
    model_kwargs = _with_defaults(cfg.model.name, model_kwargs)
    diffs = [
        f"model.kwargs.{k}: checkpoint {saved_kw.get(k, '<unset>')!r}, "
        f"config {model_kwargs.get(k, '<unset>')!r}"
        for k in sorted(set(saved_kw) | set(model_kwargs), key=str)
        if saved_kw.get(k, _MISSING) != model_kwargs.get(k, _MISSING)
    ]
    saved_cfg = state.get("config")
    if isinstance(saved_cfg, dict):
        old = _flatten(json.loads(json.dumps(saved_cfg, default=str)))
        new = _flatten(json.loads(json.dumps(config_to_dict(cfg), default=str)))
        for key in sorted(set(old) & set(new)):  # keys of other pointlib versions: not compared
            if key.startswith("model.kwargs") or _may_change(key):
                continue
            if old[key] != new[key]:
                diffs.append(f"{key}: checkpoint {old[key]!r}, config {new[key]!r}")
    if diffs:
        shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        raise ValueError(
            f"cannot resume {where}: the config differs from the run that wrote it ({shown}). "
            "Resume with the original settings, or start a new run folder"
        )


_MISSING = object()


def _with_defaults(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus the defaults of the registered factory's other keyword parameters, so an
    explicit default (``faithful=False``) equals an omitted one."""
    import inspect

    from pointlib.models._registry import _MODELS

    fn = _MODELS.get(name)
    if fn is None:
        return dict(kwargs)
    out = {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    out.update(kwargs)
    return out


# --------------------------------------------------------------------------- evaluation


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
        data.test, _eval_batches(len(data.test), bs, dist_info), num_workers=cfg.data.num_workers
    )
    out: dict[str, ProtocolResult] = {}
    for rot in rotations if rotations is not None else cfg.eval.rotations:
        out[rot] = evaluate_protocol(
            model,
            loader,
            task=cfg.task,
            rotation=rot,
            num_rotations=num_rotations or cfg.eval.num_rotations,
            seed=cfg.eval.seed,
            up_axis=data.up_axis,
            num_classes=data.num_classes,
            seg_classes=data.seg_classes,
            num_parts=data.num_parts,
            device=device,
            use_normals=cfg.data.normals,
            amp=cfg.eval.amp,
            amp_dtype=cfg.train.amp_dtype,
            fixed_rotation=fixed_rotation,
            progress=progress and dist_info.is_main,
            desc=f"test {rot}",
        )
    return out


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
    writes files, and all ranks return the same (reduced) metrics.
    """
    cfg.validate()
    dist_info = init_distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout_s)
    device = resolve_device(cfg.train.device, dist_info)
    _set_deterministic(cfg.train.deterministic)
    use_amp = cfg.train.amp and device.type in ("cuda", "cpu")
    main = dist_info.is_main
    out = Path(out_dir if out_dir is not None else cfg.out) if (out_dir or cfg.out) else None
    progress = cfg.train.progress and main

    for mod in cfg.model.import_modules:
        importlib.import_module(mod)
    torch.manual_seed(cfg.train.seed)
    data = data if data is not None else build_data(cfg)
    from pointlib.models import create_model

    model_kwargs = model_kwargs_for(cfg, data)
    model = create_model(cfg.model.name, **model_kwargs).to(device)
    from pointlib.engine.preprocessing import record_preprocessing

    preprocessing = record_preprocessing(cfg, data)
    if main:
        log.info(run_summary(cfg, data, model, device, out, dist_info))
    optimizer = _build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=use_amp and device.type == "cuda" and cfg.train.amp_dtype == "float16"
    )
    select_key = _select_key(cfg)
    sign = -1.0 if select_key == "loss" else 1.0

    start_epoch, start_step, global_step = 0, 0, 0
    best = -math.inf
    history: list[dict[str, Any]] = []
    meter_state: torch.Tensor | None = None
    best_weights: dict[str, torch.Tensor] | None = None  # in memory: every rank tests the same
    rng: dict[str, Any] | None = None
    if resume is not None:
        state = load_checkpoint(resume, map_location=device)
        check_resume_compatible(state, cfg, model_kwargs)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, start_step = state["epoch"], state["step_in_epoch"]
        global_step, best, history = state["global_step"], state["best"], state["history"]
        meter_state, rng = state.get("meter_state"), state["rng"]
    if rng is not None:
        _set_rng_state(rng)

    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_temps_in(out):  # left by a killed earlier start of this run
            log.info("removed stale temporary file %s", stale)
        save_config(cfg, out / "config.resolved.yaml")
        info = run_info(cfg, dist_info, device)
        info.update(model=cfg.model.name, model_kwargs=model_kwargs, resumed_from=str(resume))
        info["num_parameters"] = sum(p.numel() for p in model.parameters())
        info["samples"] = {
            "train": len(data.train),
            "val": len(data.val) if data.val is not None else 0,
            "test": len(data.test),
        }
        atomic_write_text(out / "run_info.json", dumps_json(info))

    net: nn.Module = model
    if dist_info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    writer = None
    if out is not None and main and cfg.train.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"))
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            log.warning("tensorboard is not installed; skipping TensorBoard logs")

    def checkpoint(
        name: str,
        epoch: int,
        step_in_epoch: int,
        meter: Any | None,
        rng: dict[str, Any] | None = None,
    ) -> None:
        if out is None or not main:
            return
        save_checkpoint(
            out / name,
            {
                "model_name": cfg.model.name,
                "model_kwargs": model_kwargs,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": global_step,
                "best": best,
                "history": history,
                "meter_state": meter.state() if meter is not None else None,
                "rng": rng if rng is not None else _rng_state(),
                "config": config_to_dict(cfg),
                "classes": data.classes,
                "up_axis": data.up_axis,
                "seg_classes": data.seg_classes,
                "preprocessing": preprocessing,
            },
        )
        honour_umask(out / name)  # save_checkpoint's temporary file is created 0600

    from pointlib.engine.progress import progress as progress_bar
    from pointlib.engine.progress import progress_write

    loss_fn = nn.CrossEntropyLoss()
    completed, stopped = True, False
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.time()
        lr = lr_at(cfg.sched, cfg.optim.lr, epoch, cfg.train.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        mom = bn_momentum_at(cfg.sched, epoch)
        if mom is not None:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = mom
        skip = start_step if epoch == start_epoch else 0
        batches = _train_batches(data.train, cfg.data.batch_size, cfg.train.seed, epoch, dist_info)
        if hasattr(data.train, "set_epoch"):
            data.train.set_epoch(epoch)
        loader = make_loader(
            data.train, batches[skip:], num_workers=cfg.data.num_workers, seed=cfg.train.seed
        )
        meter = _meter(cfg, data)
        if skip and meter_state is not None:
            meter.load_state(meter_state)
        net.train()
        bar = progress_bar(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not progress,
            initial=skip,
            total=len(batches),
            leave=False,
        )
        done = skip  # steps of this epoch whose update is complete
        rng_at_step: dict[str, Any] | None = None  # RNG at the start of an unfinished step
        try:
            for step_i, batch in enumerate(bar, start=skip):
                rng_at_step = _rng_state()
                batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
                normals = batch.get("normals") if cfg.data.normals else None
                with _autocast(device, use_amp, cfg.train.amp_dtype):
                    logits = forward_batch(net, batch, cfg.task, batch["xyz"], normals)
                    target = batch["parts"] if cfg.task == "partseg" else batch["label"]
                    loss = loss_fn(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss {float(loss)} at epoch {epoch}, step {step_i}"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.train.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                global_step += 1
                loss_value = float(loss.detach())
                if cfg.task == "partseg":
                    meter.update(logits.detach().float(), target, batch["category"], loss_value)
                else:
                    meter.update(logits.detach().float(), target, loss_value)
                done, rng_at_step = step_i + 1, None
                if progress:
                    bar.set_postfix(loss=f"{loss_value:.3f}")
                if writer is not None and global_step % cfg.train.log_every == 0:
                    writer.add_scalar("train/loss_step", loss_value, global_step)
                every = cfg.train.checkpoint_every_steps
                if cfg.train.max_steps is not None and global_step >= cfg.train.max_steps:
                    stopped = True
                if stopped or (every and global_step % every == 0):
                    checkpoint("last.pt", epoch, step_i + 1, meter)
                if stopped:
                    break
        except KeyboardInterrupt:
            # resume at the first unfinished step, with the RNG state it started from (exact
            # unless the interrupt lands inside the optimiser update itself)
            log.warning("interrupted at epoch %d after step %d; writing last.pt", epoch, done)
            checkpoint("last.pt", epoch, done, meter, rng=rng_at_step)
            raise
        finally:
            bar.close()
        if stopped:
            completed = False
            break
        broadcast_buffers(model)
        meter.load_state(all_reduce(meter.state()))
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
        row.update({f"train_{k}": v for k, v in meter.compute().items() if "/" not in k})
        if data.val is not None:
            val = evaluate_test(
                cfg,
                model,
                DataBundle(
                    train=data.train,
                    val=None,
                    test=data.val,
                    classes=data.classes,
                    up_axis=data.up_axis,
                    seg_classes=data.seg_classes,
                    num_parts=data.num_parts,
                ),
                rotations=[cfg.augment.rotation],
                num_rotations=1,
                device=device,
                dist_info=dist_info,
            )[cfg.augment.rotation]
            row.update({f"val_{k}": v for k, v in val.copies[0].items() if "/" not in k})
            score = sign * row[f"val_{select_key}"]
        else:
            score = float(epoch)  # no validation split: the last epoch is "best"
        row["time_s"] = round(time.time() - t0, 3)
        history.append(row)
        improved = score > best
        if improved:
            best = score
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, float) and math.isfinite(v):
                    writer.add_scalar(k.replace("_", "/", 1), v, epoch + 1)
        if out is not None and main:
            _write_csv(out / "metrics.csv", history)
            if improved:
                checkpoint("best.pt", epoch + 1, 0, None)
            checkpoint("last.pt", epoch + 1, 0, None)
        if progress:
            msg = " ".join(
                f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "lr"
            )
            progress_write(f"epoch {epoch + 1}/{cfg.train.epochs}: {msg}")
        barrier()
    else:
        epoch = cfg.train.epochs
    if writer is not None:
        writer.close()

    result = TrainResult(
        out_dir=out,
        completed=completed,
        epochs_done=epoch,
        global_step=global_step,
        best_metric=sign * best if math.isfinite(best) else float("nan"),
        history=history,
        model=model,
    )
    if not (completed and run_test):
        return result
    barrier()
    best_model = model
    if best_weights is None and out is not None and (out / "best.pt").is_file():
        best_weights = load_checkpoint(out / "best.pt", map_location=device)["model"]
    if best_weights is not None:  # else: no epoch ran in this call and no best.pt on disk
        best_model = create_model(cfg.model.name, **model_kwargs).to(device)
        best_model.load_state_dict(best_weights)
    result.best_model = best_model
    result.test = evaluate_test(
        cfg, best_model, data, device=device, dist_info=dist_info, progress=progress
    )
    if out is not None and main:
        write_results(out, cfg, result.test, data.classes)
    return result


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
