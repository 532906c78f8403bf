"""Mixin wiring a dataset to the on-disk cache."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pointlib.datasets.cache import cached_arrays, default_cache_dir, fingerprint


def resolve_cache_dir(
    root: Path | None, name: str, cache_dir: str | os.PathLike[str] | None, cache: bool
) -> Path | None:
    """``None`` when caching is off, else ``cache_dir`` or :func:`default_cache_dir`."""
    if not cache:
        return None
    return Path(cache_dir) if cache_dir is not None else default_cache_dir(root, name)


def load_cached(
    cache_dir: Path | None,
    stem: str,
    settings: dict[str, Any],
    sources: Iterable[str | os.PathLike[str]],
    build: Callable[[], dict[str, np.ndarray]],
) -> tuple[dict[str, np.ndarray], Path | None]:
    """Arrays for ``settings`` from the cache, or built (and cached) now."""
    fp = fingerprint(sources)
    return cached_arrays(cache_dir, stem, settings, fp, build)
