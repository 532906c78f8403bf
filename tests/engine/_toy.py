"""Test-only tiny models and in-memory datasets for the engine tests (not part of the library).

Importing this module registers ``toy_cls``, ``toy_invariant_cls`` and ``toy_partseg``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from pointlib.engine.config import Config, config_from_dict
from pointlib.engine.data import DataBundle, bundle_from_datasets
from pointlib.models import register_model


class ToyCls(nn.Module):
    """Per-point MLP on xyz (+ normals) -> max pool -> BN -> dropout -> linear (not invariant)."""

    def __init__(self, num_classes: int = 3, width: int = 16) -> None:
        super().__init__()
        self.point = nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, width))
        self.head = nn.Sequential(
            nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.3), nn.Linear(width, num_classes)
        )

    def forward(self, xyz: Tensor, normals: Tensor | None = None) -> Tensor:
        n = normals if normals is not None else torch.zeros_like(xyz)
        return self.head(self.point(torch.cat([xyz, n], -1)).amax(1))


class ToyInvariantCls(nn.Module):
    """Sorted distances to the centroid -> MLP: exactly invariant to rotations about the origin."""

    def __init__(self, num_classes: int = 3, num_points: int = 32) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_points, 16), nn.ReLU(), nn.Linear(16, num_classes))

    def forward(self, xyz: Tensor, normals: Tensor | None = None) -> Tensor:
        d = (xyz - xyz.mean(1, keepdim=True)).norm(dim=-1).sort(dim=-1).values
        return self.mlp(d)


class ToyPartSeg(nn.Module):
    """Per-point MLP on xyz + a category embedding -> part logits ``(B, N, P)``."""

    def __init__(self, num_parts: int = 4, num_categories: int = 2, width: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(num_categories, width)
        self.point = nn.Linear(3, width)
        self.out = nn.Linear(width, num_parts)

    def forward(self, xyz: Tensor, normals: Tensor | None, category: Tensor) -> Tensor:
        return self.out(torch.relu(self.point(xyz) + self.emb(category)[:, None]))


@register_model
def toy_cls(num_classes: int = 3, faithful: bool = False, **kw) -> nn.Module:
    return ToyCls(num_classes, **kw)


@register_model
def toy_invariant_cls(num_classes: int = 3, num_points: int = 32) -> nn.Module:
    return ToyInvariantCls(num_classes, num_points)


@register_model
def toy_partseg(num_parts: int = 4, num_categories: int = 2, **kw) -> nn.Module:
    return ToyPartSeg(num_parts, num_categories, **kw)


class ToyShapes(Dataset):
    """``size`` aligned anisotropic blobs, label = which axis is elongated (3 classes, up = z)."""

    up_axis = "z"
    classes: ClassVar[list[str]] = ["x-long", "y-long", "z-long"]

    def __init__(self, size: int = 48, num_points: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(size) % 3
        scale = torch.full((size, 3), 0.4)
        scale[torch.arange(size), self.labels] = 1.0
        pts = torch.randn(size, num_points, 3, generator=g) * scale[:, None]
        self.xyz = pts
        self.normals = torch.nn.functional.normalize(pts, dim=-1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"xyz": self.xyz[i], "normals": self.normals[i], "label": self.labels[i]}


class ToyParts(Dataset):
    """Two categories (0: parts {0, 1}, 1: parts {2, 3}); part = sign of x."""

    up_axis = "z"
    classes: ClassVar[list[str]] = ["cat0", "cat1"]
    seg_classes: ClassVar[dict[str, list[int]]] = {"cat0": [0, 1], "cat1": [2, 3]}
    num_parts = 4

    def __init__(self, size: int = 16, num_points: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(size) % 2
        self.xyz = torch.randn(size, num_points, 3, generator=g)
        self.parts = (self.xyz[..., 0] > 0).long() + 2 * self.labels[:, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {
            "xyz": self.xyz[i],
            "normals": torch.nn.functional.normalize(self.xyz[i], dim=-1),
            "label": self.labels[i],
            "category": self.labels[i],
            "parts": self.parts[i],
        }


def toy_config(**sections) -> Config:
    base = {
        "model": {"name": "toy_cls"},
        "data": {"batch_size": 8, "val_fraction": 0.25, "num_points": 32},
        "augment": {"rotation": "z", "scale": [0.8, 1.25], "shift": 0.1, "point_dropout": 0.5},
        "train": {"epochs": 2, "progress": False, "tensorboard": False, "seed": 3},
        "eval": {"num_rotations": 2},
        "sched": {"step_size": 1, "gamma": 0.5},
    }
    for k, v in sections.items():
        if isinstance(v, dict):
            base.setdefault(k, {}).update(v)
        else:
            base[k] = v
    return config_from_dict(base)


def toy_bundle(cfg: Config, size: int = 48) -> DataBundle:
    return bundle_from_datasets(cfg, ToyShapes(size, seed=0), ToyShapes(24, seed=1))
