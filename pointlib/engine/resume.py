"""Resuming a run: which config entries may change, the compatibility check, the RNG state.

Exact resumption needs the global RNG state at the position a checkpoint was written (or at the
start of the step an interrupt cut short); :func:`rng_state` / :func:`set_rng_state` capture and
restore it, CUDA generators included.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from pointlib.engine.config import Config, config_to_dict

__all__ = ["RESUME_MAY_CHANGE", "check_resume_compatible", "rng_state", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """The global torch (and CUDA) RNG state."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state from :func:`rng_state` (CUDA part only where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
