"""Training and evaluation engine: configs, the training loop, metrics, checkpoints, rotation
protocols and the robustness report. The ``pointlib`` command line is a thin layer over it.

>>> from pointlib.engine import load_config, train
>>> cfg = load_config("configs/risurconv_tiny_synthetic.yaml", ["train.epochs=2"])  # doctest: +SKIP
>>> result = train(cfg, "runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

from pointlib.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from pointlib.engine.config import Config, ConfigError, load_config
from pointlib.engine.metrics import ClassificationMeter, PartSegMeter
from pointlib.engine.trainer import TrainResult, evaluate_test, train

__all__ = [
    "CheckpointError",
    "ClassificationMeter",
    "Config",
    "ConfigError",
    "PartSegMeter",
    "TrainResult",
    "evaluate_test",
    "load_checkpoint",
    "load_config",
    "model_from_checkpoint",
    "save_checkpoint",
    "train",
]
