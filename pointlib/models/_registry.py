"""A light, timm-style model registry: ``register_model``, ``create_model``, ``list_models``."""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a factory function under its ``__name__``."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        warnings.warn(f"model {name!r} is registered twice; the later one wins", stacklevel=2)
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching the shell-style ``pattern``."""
    _load_all()
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    _load_all()
    return name in _MODELS


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model. ``None`` keyword values are dropped (timm convention).

    The model gets ``model_name`` and ``model_kwargs`` attributes, so a checkpoint that stores
    them rebuilds the same architecture with ``create_model(model_name, **model_kwargs)``.
    """
    _load_all()
    if name not in _MODELS:
        close = fnmatch.filter(_MODELS, f"*{name.split('_')[0]}*")[:8]
        hint = f"; similar: {', '.join(sorted(close))}" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}. See pointlib.models.list_models().")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = _MODELS[name](**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


def _load_all() -> None:
    """Import the model modules so their ``@register_model`` decorators run."""
    import pointlib.models  # noqa: F401  (the package imports every model module)
