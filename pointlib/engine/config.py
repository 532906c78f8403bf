"""Run configuration: dataclasses, YAML files and dotted ``--set a.b=c`` overrides.

A config is a tree of dataclasses (:class:`Config` at the root). YAML files and overrides are
checked strictly: an unknown key, a value of the wrong type or a malformed override raises
:class:`ConfigError` naming the dotted key, so a typo never silently trains the wrong thing.

>>> cfg = load_config(None, ["train.epochs=3", "model.name=pointnet2_cls_ssg_tiny"])
>>> cfg.train.epochs, cfg.model.name
(3, 'pointnet2_cls_ssg_tiny')
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "AugmentConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RobustnessConfig",
    "SchedConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_override",
    "save_config",
]

ROTATIONS = ("none", "z", "so3")


class ConfigError(ValueError):
    """A config file or override is invalid (the message names the dotted key)."""


@dataclass
class ModelConfig:
    """Which registered model to build (``pointlib.models.create_model(name, **kwargs)``).

    ``num_classes`` / ``num_parts`` / ``num_categories`` are filled in from the dataset when they
    are not given. ``import_modules`` are imported first, so models registered by user code
    (``@register_model``) can be named here.
    """

    name: str = "risurconv_cls_tiny"
    kwargs: dict[str, Any] = field(default_factory=dict)
    import_modules: list[str] = field(default_factory=list)


@dataclass
class DataConfig:
    """Dataset, sampling and loader settings (``pointlib.datasets.get_dataset``)."""

    name: str = "synthetic"
    root: str | None = None
    num_points: int = 1024
    normals: bool = True
    train_split: str = "train"
    test_split: str = "test"
    classes: list[str] | None = None  # keep only these classes (labels remapped in this order)
    val_fraction: float = 0.1  # held out of the training split, seeded by train.seed
    max_train_samples: int | None = None  # seeded subsets, for quick runs
    max_test_samples: int | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra get_dataset keywords


@dataclass
class AugmentConfig:
    """Train-time augmentation, drawn per sample from a generator seeded by (seed, epoch, index)."""

    rotation: str = "none"  # none | z (about the dataset's up axis) | so3 (Haar)
    scale: list[float] | None = None  # [low, high] uniform scale of xyz, e.g. [0.8, 1.25]
    shift: float = 0.0  # uniform shift in [-shift, shift]^3 of xyz
    point_dropout: float = 0.0  # max dropout ratio (recipe: 0.875); dropped points -> point 0
    jitter: float = 0.0  # Gaussian sigma on xyz (clipped at 5 sigma)
    shuffle_points: bool = False


@dataclass
class OptimConfig:
    """Optimiser (``adam`` as in the paper recipes, ``adamw`` or ``sgd``)."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only


@dataclass
class SchedConfig:
    """Per-epoch learning-rate schedule (closed form, so resuming is exact).

    ``step``: ``lr(e) = lr * gamma ** floor((e + offset) / step_size)``, floored at ``min_lr``.
    ``offset=1`` reproduces a ``scheduler.step()`` called at the *start* of each epoch.
    ``restarts`` is a list of ``[epoch, lr]``: from that epoch index on, the schedule restarts at
    ``lr`` and keeps stepping on the same multiples of ``step_size`` (the recipes' warm restart:
    ``[[301, 1.0e-3]]``). ``cosine`` anneals from ``lr`` to ``min_lr`` over ``train.epochs``.
    ``bn_momentum`` (optional ``[base, gamma, step, min]``) sets every BatchNorm momentum to
    ``max(base * gamma ** floor(e / step), min)`` (the ShapeNetPart recipe).
    """

    name: str = "step"  # step | cosine | constant
    step_size: int = 20
    gamma: float = 0.7
    offset: int = 0
    min_lr: float = 0.0
    restarts: list[list[float]] = field(default_factory=list)
    bn_momentum: list[float] | None = None


@dataclass
class TrainConfig:
    """Training loop settings."""

    epochs: int = 1
    max_steps: int | None = None  # stop (and checkpoint) after this many optimiser steps in total
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Autocast for the training step. Off until measured on a GPU (issue 12). On CUDA with
    # amp_dtype float16 a GradScaler is used; bfloat16 needs none and also runs on CPU.
    amp: bool = False
    amp_dtype: str = "bfloat16"  # bfloat16 | float16
    grad_clip: float | None = None  # max global grad norm
    select_metric: str = "auto"  # val metric for best.pt: auto|oa|macc|instance_miou|class_miou
    checkpoint_every_steps: int | None = None  # also write last.pt every N steps (mid-epoch)
    progress: bool = True  # tqdm bars (rank 0)
    tensorboard: bool = True
    log_every: int = 20  # steps between TensorBoard scalars
    # DDP: a rank silent this long stops every rank with an error naming it (None:
    # $POINTLIB_DIST_TIMEOUT, else 300 s)
    dist_timeout_s: float | None = None


@dataclass
class EvalConfig:
    """Final test evaluation: once per test-time rotation, on the best (val-selected) weights."""

    rotations: list[str] = field(default_factory=lambda: ["none", "z", "so3"])
    num_rotations: int = 3  # rotated copies of the test set (mean +- std); 1 for "none"
    seed: int = 2024  # rotations are seeded per (seed, copy, sample index)
    angle_sweep: bool = False
    sweep_steps: int = 12  # angles in [0, 360) about a tilted axis
    sweep_tilt_deg: float = 45.0  # tilt of the sweep axis away from the up axis
    amp: bool = False  # evaluate under autocast (train.amp_dtype); explicit opt-in only


@dataclass
class RobustnessConfig:
    """``pointlib robustness``: train once per train-time rotation, test each under ``tests``."""

    train_rotations: list[str] = field(default_factory=lambda: ["z", "so3"])
    tests: dict[str, list[str]] = field(
        default_factory=lambda: {"none": ["none"], "z": ["z", "so3"], "so3": ["so3"]}
    )


@dataclass
class Config:
    """A whole run. ``task`` is ``cls`` (classification) or ``partseg`` (part segmentation)."""

    task: str = "cls"
    name: str = "run"
    out: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)

    def validate(self) -> Config:
        """Check cross-field constraints; returns ``self``. Raises :class:`ConfigError`.

        Enumerated values are case-insensitive and stored in lower case (``SO3`` -> ``so3``,
        ``Adam`` -> ``adam``), so the spelling of every table ("SO3") is accepted."""
        self.task = _choice("task", self.task, ("cls", "partseg"))
        self.augment.rotation = _choice("augment.rotation", self.augment.rotation, ROTATIONS)
        self.eval.rotations = [
            _choice(f"eval.rotations[{i}]", r, ROTATIONS) for i, r in enumerate(self.eval.rotations)
        ]
        self.robustness.train_rotations = [
            _choice(f"robustness.train_rotations[{i}]", r, ROTATIONS)
            for i, r in enumerate(self.robustness.train_rotations)
        ]
        self.robustness.tests = {
            _choice(f"robustness.tests key {k!r}", k, ROTATIONS): [
                _choice(f"robustness.tests.{k}", r, ROTATIONS) for r in v
            ]
            for k, v in self.robustness.tests.items()
        }
        self.optim.name = _choice("optim.name", self.optim.name, ("adam", "adamw", "sgd"))
        self.train.amp_dtype = _choice(
            "train.amp_dtype", self.train.amp_dtype, ("bfloat16", "float16")
        )
        self.sched.name = _choice("sched.name", self.sched.name, ("step", "cosine", "constant"))
        self.train.select_metric = _choice(
            "train.select_metric",
            self.train.select_metric,
            ("auto", "oa", "macc", "instance_miou", "class_miou", "loss"),
        )
        self.train.device = self.train.device.lower()
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        for key, v in (
            ("train.epochs", self.train.epochs),
            ("data.batch_size", self.data.batch_size),
            ("data.num_points", self.data.num_points),
            ("eval.num_rotations", self.eval.num_rotations),
            ("sched.step_size", self.sched.step_size),
        ):
            if v < 1:
                raise ConfigError(f"{key} must be >= 1, got {v}")
        if self.train.dist_timeout_s is not None and not self.train.dist_timeout_s > 0:
            raise ConfigError(f"train.dist_timeout_s must be > 0, got {self.train.dist_timeout_s}")
        if self.augment.scale is not None and len(self.augment.scale) != 2:
            raise ConfigError(f"augment.scale must be [low, high], got {self.augment.scale}")
        if not 0.0 <= self.augment.point_dropout < 1.0:
            raise ConfigError("augment.point_dropout must be in [0, 1)")
        for i, r in enumerate(self.sched.restarts):
            if len(r) != 2:
                raise ConfigError(f"sched.restarts[{i}] must be [epoch, lr], got {r}")
        if self.sched.bn_momentum is not None and len(self.sched.bn_momentum) != 4:
            raise ConfigError("sched.bn_momentum must be [base, gamma, step, min]")
        return self


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> str:
    """``value`` in lower case when it is one of ``allowed`` (case-insensitive), else an error."""
    low = value.lower() if isinstance(value, str) else value
    if low not in allowed:
        raise ConfigError(
            f"{key}: {value!r} is not one of {', '.join(allowed)} (case does not matter)"
        )
    return low


# --------------------------------------------------------------------------- dict <-> dataclass


def _check_value(key: str, tp: Any, value: Any) -> Any:
    """Check (and lightly coerce: int -> float) ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(key, a, value)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _from_dict(tp, value, key + ".")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (sub,) = typing.get_args(tp) or (Any,)
        return [_check_value(f"{key}[{i}]", sub, v) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, sub = typing.get_args(tp) or (str, Any)
        return {str(k): _check_value(f"{key}.{k}", sub, v) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # pragma: no cover


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s}; allowed under "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(names))}"
        )
    kwargs = {k: _check_value(prefix + k, hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """Build and validate a :class:`Config` from a (possibly partial) nested dict."""
    return _from_dict(Config, dict(data or {})).validate()


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as a plain nested dict (YAML/JSON serialisable)."""
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------- overrides and files


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` -> ``(["a", "b"], value)``; the value is parsed as YAML (``3``, ``[1, 2]``)."""
    if "=" not in text:
        raise ConfigError(f"bad override {text!r}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p or not p.replace("_", "").isalnum() for p in parts):
        raise ConfigError(f"bad override {text!r}: key {key!r} must be dotted names like a.b")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"bad override {text!r}: value is not valid YAML ({e})") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested dict in place (returns it). Keys are checked later
    against the dataclasses, except that free-form mappings (``model.kwargs``) accept new keys."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"bad override {text!r}: {p!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from the defaults when ``path`` is None), apply overrides,
    validate. Raises :class:`ConfigError` (unknown keys, bad types) or ``FileNotFoundError``."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    apply_overrides(data, list(overrides or []))
    try:
        return config_from_dict(data)
    except ConfigError as e:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{e}") from None


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from pointlib.engine.outputs import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
