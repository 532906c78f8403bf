"""From a :class:`~pointlib.engine.config.DataConfig` to train / val / test datasets and loaders.

* The validation set is a seeded random subset of the *training* split (``data.val_fraction``);
  the test split is only touched by the final evaluation.
* Every item gains an ``index`` (its index in the underlying dataset), which seeds its
  augmentation (per epoch) and its test-time rotations, so results do not depend on batching,
  worker count or the number of processes.
* ``data.classes`` keeps only the named classes and renumbers their labels in that order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from pointlib.engine.config import AugmentConfig, Config
from pointlib.engine.rotations import mix_seed

__all__ = [
    "DataBundle",
    "IndexedView",
    "build_augmentation",
    "build_data",
    "bundle_from_datasets",
    "collate",
    "make_loader",
    "resolve_root",
]


@dataclass
class DataBundle:
    """Datasets plus the facts the engine needs about them."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    classes: list[str]
    up_axis: str = "z"
    seg_classes: list[list[int]] | None = None  # partseg: global part ids of every category
    num_parts: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def build_augmentation(cfg: AugmentConfig, up_axis: str = "z") -> Callable[..., dict[str, Any]]:
    """The train-time augmentation of ``cfg`` as a :class:`pointlib.transforms.Compose`: rotation
    first (points and normals together), then point dropout, scale, shift, jitter (xyz only) and
    point shuffling. Call it as ``aug(item, generator=g)``."""
    import pointlib.transforms as T

    steps: list[Any] = []
    if cfg.rotation != "none":
        steps.append(T.RandomRotation(cfg.rotation, up_axis))  # type: ignore[arg-type]
    if cfg.point_dropout > 0:
        steps.append(T.RandomPointDropout(cfg.point_dropout))
    if cfg.scale is not None:
        steps.append(T.RandomScale(cfg.scale[0], cfg.scale[1]))
    if cfg.shift > 0:
        steps.append(T.RandomShift(cfg.shift))
    if cfg.jitter > 0:
        steps.append(T.Jitter(cfg.jitter, clip=5 * cfg.jitter))
    if cfg.shuffle_points:
        steps.append(T.RandomPermutation())
    return T.Compose(steps)


class IndexedView(Dataset):
    """``base[indices[i]]`` with an ``index`` key, optional label remapping and augmentation.

    The augmentation of item ``i`` in epoch ``e`` draws from a generator seeded by
    ``(seed, e, base index)``; call :meth:`set_epoch` before building each epoch's loader.
    """

    def __init__(
        self,
        base: Dataset,
        indices: Sequence[int],
        *,
        label_map: dict[int, int] | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        up_axis: str = "z",
    ) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        self.label_map = label_map
        self.augment = augment  # settable: the transform is rebuilt from it on every item
        self.seed = seed
        self.up_axis = up_axis
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.indices[i]
        item = dict(self.base[j])
        if self.label_map is not None:
            new = torch.tensor(self.label_map[int(item["label"])], dtype=torch.int64)
            item["label"] = new
            if "category" in item:
                item["category"] = new.clone()
        if self.augment is not None:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, j))
            item = build_augmentation(self.augment, self.up_axis)(item, generator=g)
        item["index"] = j
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack item dicts (:func:`pointlib.datasets.collate_points`); ``index`` becomes int64."""
    from pointlib.datasets.collate import collate_points

    batch = collate_points(items)
    for key in ("index", "label", "category"):
        if key in batch and isinstance(batch[key], list):
            batch[key] = torch.tensor([int(v) for v in batch[key]], dtype=torch.int64)
    return batch


def make_loader(
    dataset: Dataset,
    batches: list[list[int]],
    *,
    num_workers: int = 0,
    seed: int = 0,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate,
) -> DataLoader:
    """A loader over precomputed index batches. It owns its generator, so creating it never
    consumes the global RNG (needed for exact mid-epoch resumption)."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


def _labels(ds: Dataset) -> list[int]:
    for attr in ("labels", "targets"):
        v = getattr(ds, attr, None)
        if v is not None and len(v) == len(ds):
            return [int(x) for x in (v.tolist() if isinstance(v, Tensor) else v)]
    return [int(ds[i]["label"]) for i in range(len(ds))]


def _seeded_subset(n: int, k: int | None, seed: int) -> list[int]:
    if k is None or k >= n:
        return list(range(n))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=g)[:k].tolist())


def _seg_classes(ds: Dataset) -> tuple[list[list[int]], int]:
    for attr in ("seg_classes", "category_parts", "SEG_CLASSES"):
        v = getattr(ds, attr, None)
        if v is None:
            continue
        parts = [list(p) for p in (v.values() if isinstance(v, dict) else v)]
        num_parts = int(getattr(ds, "num_parts", 1 + max(max(p) for p in parts)))
        return parts, num_parts
    raise ValueError(
        f"{type(ds).__name__} does not describe its part layout (seg_classes); "
        "part segmentation needs the category -> parts table"
    )


def resolve_root(root: str | None) -> str | None:
    """Expand ``~`` and environment variables in a dataset root. ``${POINTLIB_DATA_ROOT}`` falls
    back to :func:`pointlib.testing.data_root` (the test machines' data folder) when the variable
    is unset."""
    if root is None:
        return None
    for token in ("${POINTLIB_DATA_ROOT}", "$POINTLIB_DATA_ROOT"):
        if token in root and "POINTLIB_DATA_ROOT" not in os.environ:
            from pointlib.testing import data_root

            base = data_root()
            if base is None:
                raise FileNotFoundError(
                    f"data.root {root!r} uses $POINTLIB_DATA_ROOT, which is not set; set it to "
                    "the folder that holds your datasets (docs/reproduce.md) or pass "
                    "--set data.root=PATH"
                )
            root = root.replace(token, str(base))
    return os.path.expanduser(os.path.expandvars(root))


def build_data(cfg: Config, *, seed: int | None = None) -> DataBundle:
    """Load the configured dataset splits (``pointlib.datasets.get_dataset``) and wrap them with
    :func:`bundle_from_datasets`."""
    from pointlib.datasets import get_dataset

    d = cfg.data
    kw = dict(d.kwargs, num_points=d.num_points, normals=d.normals)
    root = resolve_root(d.root)
    train_base = get_dataset(d.name, root, d.train_split, **kw)
    test_base = get_dataset(d.name, root, d.test_split, **kw)
    return bundle_from_datasets(cfg, train_base, test_base, seed=seed)


def bundle_from_datasets(
    cfg: Config, train_base: Dataset, test_base: Dataset, *, seed: int | None = None
) -> DataBundle:
    """Wrap any datasets following the item-dict contract (with ``classes`` and optionally
    ``up_axis``, ``labels``, ``seg_classes``): class subset, seeded subsets, seeded val split
    drawn from ``train_base``, train-time augmentation."""
    d = cfg.data
    seed = cfg.train.seed if seed is None else seed
    classes = list(getattr(train_base, "classes", []))
    up_axis = str(getattr(train_base, "up_axis", "z"))
    train_idx = list(range(len(train_base)))
    test_idx = list(range(len(test_base)))
    label_map = None
    if d.classes:
        unknown = [c for c in d.classes if c not in classes]
        if unknown:
            raise ValueError(f"data.classes: {unknown} not in the dataset's classes {classes}")
        keep = {classes.index(c): i for i, c in enumerate(d.classes)}
        label_map = keep
        train_idx = [i for i, y in zip(train_idx, _labels(train_base)) if y in keep]
        test_idx = [i for i, y in zip(test_idx, _labels(test_base)) if y in keep]
        classes = list(d.classes)
    train_idx = [train_idx[i] for i in _seeded_subset(len(train_idx), d.max_train_samples, seed)]
    test_idx = [test_idx[i] for i in _seeded_subset(len(test_idx), d.max_test_samples, seed + 1)]
    g = torch.Generator().manual_seed(mix_seed(seed, 7919))
    perm = torch.randperm(len(train_idx), generator=g).tolist()
    n_val = round(d.val_fraction * len(train_idx))
    if d.val_fraction > 0 and len(train_idx) > 1:
        n_val = min(max(n_val, 1), len(train_idx) - 1)
    val_idx = sorted(train_idx[i] for i in perm[:n_val])
    fit_idx = sorted(train_idx[i] for i in perm[n_val:])
    if not fit_idx or not test_idx:
        raise ValueError(f"empty split: {len(fit_idx)} training / {len(test_idx)} test samples")
    seg_classes, num_parts = (None, None)
    if cfg.task == "partseg":
        seg_classes, num_parts = _seg_classes(train_base)
    return DataBundle(
        train=IndexedView(
            train_base,
            fit_idx,
            label_map=label_map,
            augment=cfg.augment,
            seed=seed,
            up_axis=up_axis,
        ),
        val=IndexedView(train_base, val_idx, label_map=label_map) if val_idx else None,
        test=IndexedView(test_base, test_idx, label_map=label_map),
        classes=classes,
        up_axis=up_axis,
        seg_classes=seg_classes,
        num_parts=num_parts,
    )
