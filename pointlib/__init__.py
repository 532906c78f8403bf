"""pointlib: rotation-invariant point-cloud deep learning.

Importing ``pointlib`` never needs the compiled extension, a GPU, torch-geometric, h5py, trimesh or
open3d: optional pieces are imported when first used, and a missing one raises an error that says
how to install it. Subpackages load lazily: ``pointlib.models``, ``pointlib.datasets``, ... work
after a bare ``import pointlib``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from pointlib import geometry, ops  # light, always available

_LAZY = (
    "attention",
    "datasets",
    "engine",
    "features",
    "interop",
    "io",
    "models",
    "nn",
    "testing",
    "transforms",
)

__all__ = ["__version__", "geometry", "ops", "predict", *_LAZY]


def predict(checkpoint: Any, inputs: Any, **kwargs: Any) -> Any:
    """Classify (or part-segment) point-cloud / mesh files with a trained checkpoint, applying the
    preprocessing recorded in it; see :func:`pointlib.engine.predict.predict` for the arguments.

    >>> preds = pointlib.predict("runs/syn/best.pt", ["chair.ply"], rotations=8)  # doctest: +SKIP
    >>> preds[0].top_k  # [(class, probability), ...], best first  # doctest: +SKIP
    """
    from pointlib.engine.predict import predict as _predict

    return _predict(checkpoint, inputs, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"pointlib.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'pointlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
