"""A training run's objects and position: set-up, resumption and checkpoints.

:func:`start_run` builds a :class:`Run` (model, optimiser, scaler, DDP wrapper, TensorBoard writer,
run folder) and its :class:`TrainState` (position, selection, history; restored from ``last.pt``
when resuming); :func:`write_checkpoint` saves both. :mod:`pointlib.engine.trainer` drives them.
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pointlib.engine.checkpoint import load_checkpoint, remove_stale_temps_in, save_checkpoint
from pointlib.engine.config import Config, config_to_dict, save_config
from pointlib.engine.data import DataBundle, build_data
from pointlib.engine.distributed import DistInfo, init_distributed
from pointlib.engine.outputs import atomic_write_text, dumps_json, honour_umask
from pointlib.engine.resume import check_resume_compatible, rng_state, set_rng_state
from pointlib.engine.runinfo import resolve_device, run_info, run_summary, set_deterministic

__all__ = [
    "Run",
    "TrainState",
    "build_run",
    "model_kwargs_for",
    "prepare_run_folder",
    "resume_state",
    "start_run",
    "write_checkpoint",
]

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where a run stands: what ``last.pt`` holds besides weights, optimiser and scaler.

    ``epoch`` / ``step_in_epoch`` are the position training starts from (0, 0 for a new run);
    ``best`` is the best selection score so far (signed so that larger is better) and
    ``best_weights`` the weights that reached it (kept in memory, so every rank tests the same).
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
    meter_state: torch.Tensor | None = None
    rng: dict[str, Any] | None = None
    best_weights: dict[str, torch.Tensor] | None = None


@dataclass
class Run:
    """What a training run works with; built once by :func:`build_run` / :func:`start_run`.

    ``model`` is the bare module, ``net`` the one trained (``model`` or its DDP wrapper).
    """

    cfg: Config
    data: DataBundle
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    dist_info: DistInfo
    out: Path | None
    model_kwargs: dict[str, Any]
    preprocessing: dict[str, Any] | None = None
    use_amp: bool = False
    net: nn.Module | None = None
    writer: Any = None

    def __post_init__(self) -> None:
        if self.net is None:
            self.net = self.model

    @property
    def main(self) -> bool:
        """True on the process that writes files (rank 0, or the only one)."""
        return self.dist_info.is_main

    @property
    def writes(self) -> bool:
        """True when this process writes the run folder."""
        return self.out is not None and self.main

    @property
    def progress(self) -> bool:
        """True when this process shows progress bars."""
        return self.cfg.train.progress and self.main


def model_kwargs_for(cfg: Config, data: DataBundle) -> dict[str, Any]:
    """``cfg.model.kwargs`` with the class / part counts filled in from the data."""
    kw = dict(cfg.model.kwargs)
    if cfg.task == "partseg":
        kw.setdefault("num_parts", data.num_parts)
        kw.setdefault("num_categories", data.num_classes)
    else:
        kw.setdefault("num_classes", data.num_classes)
    return kw


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser of ``cfg.optim`` over the trainable parameters of ``model``."""
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


def build_run(
    cfg: Config, out_dir: str | Path | None = None, data: DataBundle | None = None
) -> Run:
    """Validate ``cfg``, join the process group, seed, build data, model, optimiser and scaler.

    The global RNG is seeded with ``cfg.train.seed`` before the data and the model are built, so
    the initial weights are a function of the seed. Nothing is written and nothing is wrapped in
    DDP yet (see :func:`start_run`).
    """
    cfg.validate()
    dist_info = init_distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout_s)
    device = resolve_device(cfg.train.device, dist_info)
    set_deterministic(cfg.train.deterministic)
    use_amp = cfg.train.amp and device.type in ("cuda", "cpu")
    out = Path(out_dir if out_dir is not None else cfg.out) if (out_dir or cfg.out) else None
    for mod in cfg.model.import_modules:
        importlib.import_module(mod)
    torch.manual_seed(cfg.train.seed)
    data = data if data is not None else build_data(cfg)
    from pointlib.engine.preprocessing import record_preprocessing
    from pointlib.models import create_model

    model_kwargs = model_kwargs_for(cfg, data)
    model = create_model(cfg.model.name, **model_kwargs).to(device)
    preprocessing = record_preprocessing(cfg, data)
    if dist_info.is_main:
        log.info(run_summary(cfg, data, model, device, out, dist_info))
    fp16 = use_amp and device.type == "cuda" and cfg.train.amp_dtype == "float16"
    return Run(
        cfg=cfg,
        data=data,
        model=model,
        optimizer=build_optimizer(cfg, model),
        scaler=torch.amp.GradScaler("cuda", enabled=fp16),
        device=device,
        dist_info=dist_info,
        out=out,
        model_kwargs=model_kwargs,
        preprocessing=preprocessing,
        use_amp=use_amp,
    )


def resume_state(run: Run, path: str | Path) -> TrainState:
    """Load ``path`` (a ``last.pt`` of a run of the same config) into ``run``; return its state.

    Raises ``ValueError`` naming the checkpoint when it was written by another model or another
    training config (:func:`~pointlib.engine.resume.check_resume_compatible`)."""
    state = load_checkpoint(path, map_location=run.device)
    check_resume_compatible(state, run.cfg, run.model_kwargs)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    return TrainState(
        epoch=state["epoch"],
        step_in_epoch=state["step_in_epoch"],
        global_step=state["global_step"],
        best=state["best"],
        history=state["history"],
        meter_state=state.get("meter_state"),
        rng=state["rng"],
    )


def prepare_run_folder(run: Run, resumed_from: str | Path | None = None) -> None:
    """Create the run folder (rank 0 only), remove temporaries a killed earlier start left, and
    write ``config.resolved.yaml`` and ``run_info.json``."""
    if not run.writes:
        return
    assert run.out is not None
    cfg, out, data = run.cfg, run.out, run.data
    out.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temps_in(out):
        log.info("removed stale temporary file %s", stale)
    save_config(cfg, out / "config.resolved.yaml")
    info = run_info(cfg, run.dist_info, run.device)
    info.update(model=cfg.model.name, model_kwargs=run.model_kwargs, resumed_from=str(resumed_from))
    info["num_parameters"] = sum(p.numel() for p in run.model.parameters())
    info["samples"] = {
        "train": len(data.train),
        "val": len(data.val) if data.val is not None else 0,
        "test": len(data.test),
    }
    atomic_write_text(out / "run_info.json", dumps_json(info))


def _open_writer(run: Run) -> Any:
    if not (run.writes and run.cfg.train.tensorboard):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        log.warning("tensorboard is not installed; skipping TensorBoard logs")
        return None
    assert run.out is not None
    return SummaryWriter(str(run.out / "tb"))


def start_run(
    cfg: Config,
    out_dir: str | Path | None = None,
    data: DataBundle | None = None,
    resume: str | Path | None = None,
) -> tuple[Run, TrainState]:
    """Set-up and resume: :func:`build_run`, then the checkpoint's state and RNG when resuming,
    the run folder, the DDP wrapper under ``torchrun`` and the TensorBoard writer."""
    run = build_run(cfg, out_dir, data)
    state = resume_state(run, resume) if resume is not None else TrainState()
    if state.rng is not None:
        set_rng_state(state.rng)
    prepare_run_folder(run, resume)
    if run.dist_info.enabled:
        device = run.device
        run.net = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    run.writer = _open_writer(run)
    return run, state


def write_checkpoint(
    run: Run,
    state: TrainState,
    name: str,
    position: tuple[int, int],
    meter: Any | None = None,
    rng: dict[str, Any] | None = None,
) -> None:
    """Save ``run`` and ``state`` as ``<out>/<name>`` (rank 0 only; nothing without a folder).

    ``position`` is ``(epoch, step_in_epoch)`` to resume from; ``meter`` the partial metrics of
    that epoch; ``rng`` the RNG state to resume with (default: the current one)."""
    if not run.writes:
        return
    assert run.out is not None
    cfg, data = run.cfg, run.data
    epoch, step_in_epoch = position
    save_checkpoint(
        run.out / name,
        {
            "model_name": cfg.model.name,
            "model_kwargs": run.model_kwargs,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": state.global_step,
            "best": state.best,
            "history": state.history,
            "meter_state": meter.state() if meter is not None else None,
            "rng": rng if rng is not None else rng_state(),
            "config": config_to_dict(cfg),
            "classes": data.classes,
            "up_axis": data.up_axis,
            "seg_classes": data.seg_classes,
            "preprocessing": run.preprocessing,
        },
    )
    honour_umask(run.out / name)  # save_checkpoint's temporary file is created 0600
