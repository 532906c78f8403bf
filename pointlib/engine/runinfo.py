"""Run metadata and set-up: the device a run uses, what ``run_info.json`` records, the summary line.

Split out of :mod:`pointlib.engine.trainer`; the trainer, ``pointlib predict`` and
``pointlib evaluate`` resolve their device here.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pointlib.engine.config import Config, ConfigError
from pointlib.engine.data import DataBundle
from pointlib.engine.distributed import DistInfo

__all__ = ["resolve_device", "run_info", "run_summary", "set_deterministic"]


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


def resolve_device(name: str, dist_info: DistInfo, *, flag: str = "train.device") -> torch.device:
    """``auto`` -> CUDA (this rank's GPU under DDP) when available, else CPU.

    ``flag`` is how the user chose the device (``--device``, ``train.device``); a CUDA request
    that cannot be served raises :class:`~pointlib.engine.config.ConfigError` naming it and
    saying whether the installed torch is a CPU-only build."""
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


def set_deterministic(on: bool) -> None:
    """Deterministic kernels (cuBLAS workspace, cuDNN) when ``on``; nothing otherwise."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
