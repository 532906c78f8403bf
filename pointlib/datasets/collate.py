"""Batching dict items and DataLoader settings that work with worker processes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["collate_points", "make_loader", "seed_worker"]


def collate_points(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of item dicts into a batch dict.

    Tensors of equal shape are stacked (``xyz (N, 3)`` -> ``(B, N, 3)``, ``label ()`` -> ``(B,)``);
    other values (strings, ints) become lists. All items must have the same keys; clouds of
    different sizes raise ``ValueError`` naming the key (resample to a fixed ``num_points``).
    """
    if not batch:
        raise ValueError("collate_points: empty batch")
    keys = list(batch[0])
    for i, it in enumerate(batch):
        if list(it) != keys and set(it) != set(keys):
            raise ValueError(
                f"collate_points: item {i} has keys {sorted(it)}, item 0 has {sorted(keys)}"
            )
    out: dict[str, Any] = {}
    for k in keys:
        vals = [it[k] for it in batch]
        if isinstance(vals[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in vals}
            if len(shapes) > 1:
                raise ValueError(
                    f"collate_points: {k!r} has different shapes in one batch "
                    f"{sorted(shapes)}; use a fixed num_points"
                )
            out[k] = torch.stack(vals)
        elif isinstance(vals[0], np.ndarray):
            out[k] = torch.from_numpy(np.stack(vals))
        else:
            out[k] = vals
    return out


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in each worker from torch's per-worker seed."""
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)  # noqa: NPY002 - legacy global RNG used by user transforms
    random.seed(s)


def make_loader(
    dataset: Dataset,
    batch_size: int = 32,
    *,
    shuffle: bool = False,
    num_workers: int | None = None,
    drop_last: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> DataLoader:
    """A ``DataLoader`` with :func:`collate_points`, seeded shuffling and safe worker settings.

    ``num_workers=None`` picks ``min(4, cpu_count - 1)``; with workers, ``persistent_workers``
    and ``pin_memory`` (if CUDA) are on and each worker seeds numpy via :func:`seed_worker`.
    Items are plain tensors, so both ``fork`` and ``spawn`` start methods work.
    """
    if num_workers is None:
        num_workers = max(0, min(4, (os.cpu_count() or 1) - 1))
    opts: dict[str, Any] = {
        "batch_size": batch_size,
        "shuffle": shuffle,
        "num_workers": num_workers,
        "drop_last": drop_last,
        "collate_fn": collate_points,
        "generator": torch.Generator().manual_seed(seed),
    }
    if num_workers > 0:
        opts.update(
            persistent_workers=True,
            worker_init_fn=seed_worker,
            pin_memory=torch.cuda.is_available(),
        )
    opts.update(kwargs)
    return DataLoader(dataset, **opts)
