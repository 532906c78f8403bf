"""Point-cloud transforms and augmentations (the RISurConv training recipes, spec §4), seeded.

Every transform works on

* an **item dict** ``{"xyz": (N, 3), "normals": (N, 3)?, ...}``,
* a **batch dict** with ``xyz (B, N, 3)`` (random parameters are then drawn per cloud), or
* a bare ``xyz`` tensor ``(N, 3)`` / ``(B, N, 3)`` (returned as a tensor).

Inputs are never modified in place; dicts are shallow-copied and untouched keys are passed through.
**Per-point keys** are the tensors whose shape starts with ``xyz.shape[:-1]`` (``normals``,
``colors``, segmentation ``parts`` ...): transforms that reorder or drop points treat them all
alike. Geometric transforms move ``xyz`` only, except rotations, which rotate ``xyz`` and
``normals`` together.

Randomness comes from a ``torch.Generator``: pass one at construction (a reproducible stream for
that transform) or per call, ``t(item, generator=g)`` (wins over the constructor's; :class:`Compose`
forwards it). With neither, the global torch RNG is used, which ``DataLoader`` seeds per worker;
note that a generator stored in a transform is *copied* into each worker process with the same
state, so for multi-worker loading prefer per-call generators seeded from the item index and epoch.
Random numbers are drawn on the CPU in float64, so a seed gives the same result on every device.

=============================  ==================================================================
:class:`NormalizeUnitSphere`   centre on the centroid, scale by the max radius (normals untouched)
:class:`RandomScale`           ``xyz *= s``, ``s ~ U(0.8, 1.25)`` per cloud
:class:`RandomShift`           ``xyz += t``, ``t ~ U(-0.1, 0.1)^3`` per cloud
:class:`Jitter`                ``xyz += clip(sigma * N(0, 1), -clip, clip)`` per point
:class:`RandomPointDropout`    ratio ``~ U(0, 0.875)`` per cloud; dropped points become point 0
:class:`RandomRotation`        ``"z"`` about the up axis, ``"so3"`` Haar, ``"euler"`` legacy
:class:`RandomPermutation`     shuffle the point order (all per-point keys alike)
:class:`Compose`               apply a list of transforms in order
=============================  ==================================================================

Example::

    from pointlib import transforms as T
    train_tf = T.Compose([T.NormalizeUnitSphere(), T.RandomPointDropout(), T.RandomScale(),
                          T.RandomShift()])
    item = train_tf({"xyz": xyz, "normals": normals}, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, overload

import torch
from torch import Tensor

from pointlib.geometry import (
    AXES,
    apply_rotation,
    random_rotation,
    random_rotation_about_axis,
    random_rotation_euler,
)

__all__ = [
    "Compose",
    "Jitter",
    "NormalizeUnitSphere",
    "RandomPermutation",
    "RandomPointDropout",
    "RandomRotation",
    "RandomScale",
    "RandomShift",
    "Transform",
    "normalize_unit_sphere",
    "point_keys",
]

Item = dict[str, Any]


def _check_xyz(xyz: Any, where: str) -> Tensor:
    if not isinstance(xyz, Tensor):
        raise TypeError(f"{where}: 'xyz' must be a torch.Tensor, got {type(xyz).__name__}")
    if xyz.dim() not in (2, 3) or xyz.shape[-1] != 3:
        raise ValueError(f"{where}: 'xyz' must be (N, 3) or (B, N, 3), got {tuple(xyz.shape)}")
    if not xyz.is_floating_point():
        raise TypeError(f"{where}: 'xyz' must be floating point, got {xyz.dtype}")
    return xyz


def point_keys(item: Mapping[str, Any]) -> list[str]:
    """Keys of ``item`` holding per-point tensors: shape starting with ``xyz.shape[:-1]``."""
    lead = tuple(item["xyz"].shape[:-1])
    return [
        k
        for k, v in item.items()
        if isinstance(v, Tensor) and v.dim() >= len(lead) and tuple(v.shape[: len(lead)]) == lead
    ]


def normalize_unit_sphere(xyz: Tensor) -> Tensor:
    """Centre ``xyz`` ``(N, 3)`` or ``(B, N, 3)`` on its centroid and scale it by the max radius.

    Per cloud, as the official ``pc_normalize``. A cloud with all points equal is only centred.
    """
    _check_xyz(xyz, "normalize_unit_sphere")
    centred = xyz - xyz.mean(dim=-2, keepdim=True)
    radius = centred.norm(dim=-1).amax(dim=-1, keepdim=True)[..., None]
    return centred / torch.where(radius > 0, radius, torch.ones_like(radius))


class Transform:
    """Base class: dispatches tensors / dicts to :meth:`forward` on a shallow-copied dict.

    Subclasses implement ``forward(item, generator) -> item`` for ``xyz`` of shape ``(N, 3)`` or
    ``(B, N, 3)``; they must not modify tensors in place.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    @overload
    def __call__(self, data: Tensor, *, generator: torch.Generator | None = None) -> Tensor: ...
    @overload
    def __call__(self, data: Item, *, generator: torch.Generator | None = None) -> Item: ...
    def __call__(self, data: Tensor | Item, *, generator: torch.Generator | None = None):
        g = generator if generator is not None else self.generator
        name = type(self).__name__
        if isinstance(data, Tensor):
            _check_xyz(data, name)
            return self.forward({"xyz": data}, g)["xyz"]
        if not isinstance(data, Mapping):
            raise TypeError(f"{name}: expected a tensor or an item dict, got {type(data).__name__}")
        if "xyz" not in data:
            raise KeyError(f"{name}: item has no 'xyz' key (keys: {sorted(data)})")
        _check_xyz(data["xyz"], name)
        normals = data.get("normals")
        if normals is not None and (
            not isinstance(normals, Tensor) or normals.shape != data["xyz"].shape
        ):
            shape = tuple(normals.shape) if isinstance(normals, Tensor) else type(normals).__name__
            raise ValueError(
                f"{name}: 'normals' {shape} must match 'xyz' {tuple(data['xyz'].shape)}"
            )
        return self.forward(dict(data), g)

    def forward(self, item: Item, generator: torch.Generator | None) -> Item:
        raise NotImplementedError

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra_repr()})"


def _batch_shape(xyz: Tensor) -> tuple[int, ...]:
    """``()`` for a single cloud ``(N, 3)``, ``(B,)`` for a batch ``(B, N, 3)``."""
    return tuple(xyz.shape[:-2])


def _uniform(
    shape: tuple[int, ...], low: float, high: float, g: torch.Generator | None, like: Tensor
) -> Tensor:
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    return (low + (high - low) * u).to(dtype=like.dtype, device=like.device)


class Compose(Transform):
    """Apply ``transforms`` in order, forwarding the call's ``generator`` to each."""

    def __init__(self, transforms: Iterable[Callable[..., Any]]) -> None:
        super().__init__(None)
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable")

    def __call__(self, data, *, generator=None):  # type: ignore[override]
        for t in self.transforms:
            data = t(data, generator=generator) if isinstance(t, Transform) else t(data)
        return data

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = "".join(f"\n  {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class NormalizeUnitSphere(Transform):
    """Centre ``xyz`` on its centroid and scale by the max radius; normals untouched."""

    def __init__(self) -> None:
        super().__init__(None)

    def forward(self, item: Item, generator: torch.Generator | None) -> Item:
        item["xyz"] = normalize_unit_sphere(item["xyz"])
        return item


class RandomScale(Transform):
    """``xyz *= s`` with one ``s ~ U(low, high)`` per cloud (official: 0.8, 1.25); xyz only."""

    def __init__(
        self, low: float = 0.8, high: float = 1.25, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(generator)
        if not 0 < low <= high:
            raise ValueError(f"RandomScale needs 0 < low <= high, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)

    def forward(self, item: Item, generator: torch.Generator | None) -> Item:
        xyz = item["xyz"]
        s = _uniform(_batch_shape(xyz), self.low, self.high, generator, xyz)
        item["xyz"] = xyz * s[..., None, None]
        return item

    def _extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class RandomShift(Transform):
    """``xyz += t`` with one ``t ~ U(-shift, shift)^3`` per cloud (official: 0.1); xyz only."""

    def __init__(self, shift: float = 0.1, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        if shift < 0:
            raise ValueError(f"RandomShift needs shift >= 0, got {shift}")
        self.shift = float(shift)

    def forward(self, item: Item, generator: torch.Generator | None) -> Item:
        xyz = item["xyz"]
        t = _uniform((*_batch_shape(xyz), 3), -self.shift, self.shift, generator, xyz)
        item["xyz"] = xyz + t[..., None, :]
        return item

    def _extra_repr(self) -> str:
        return f"shift={self.shift}"


class Jitter(Transform):
    """``xyz += clip(sigma * N(0, 1), -clip, clip)`` independently per coordinate; xyz only."""

    def __init__(
        self, sigma: float = 0.01, clip: float = 0.05, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(generator)
        if sigma < 0 or clip <= 0:
            raise ValueError(f"Jitter needs sigma >= 0 and clip > 0, got {sigma}, {clip}")
        self.sigma, self.clip = float(sigma), float(clip)

    def forward(self, item: Item, generator: torch.Generator | None) -> Item:
        xyz = item["xyz"]
        noise = torch.randn(tuple(xyz.shape), generator=generator, dtype=torch.float64)
        noise = (self.sigma * noise).clamp(-self.clip, self.clip)
        item["xyz"] = xyz + noise.to(dtype=xyz.dtype, device=xyz.device)
        return item

    def _extra_repr(self) -> str:
        return f"sigma={self.sigma}, clip={self.clip}"


class RandomPointDropout(Transform):
    """Official ``random_point_dropout``: per cloud a ratio ``r ~ U(0, max_ratio)``; each point
    is dropped with probability ``r`` (``u <= r``) and replaced by point 0 of its cloud, in every
    per-point key (xyz, normals, parts, ...). The number of points is unchanged."""

    def __init__(self, max_ratio: float = 0.875, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        if not 0 <= max_ratio < 1:
            raise ValueError(f"RandomPointDropout needs 0 <= max_ratio < 1, got {max_ratio}")
        self.max_ratio = float(max_ratio)

    def forward(self, item: Item, generator: torch.Generator | None) -> Item:
        xyz = item["xyz"]
        lead = tuple(xyz.shape[:-1])
        ratio = torch.rand(lead[:-1], generator=generator, dtype=torch.float64) * self.max_ratio
        drop = torch.rand(lead, generator=generator, dtype=torch.float64) <= ratio[..., None]
        drop[..., 0] = False  # point 0 replacing itself is a no-op; keep it explicit
        drop = drop.to(xyz.device)
        for key in point_keys(item):
            v = item[key]
            first = v.narrow(len(lead) - 1, 0, 1)  # point 0, broadcastable over N
            mask = drop.reshape(*lead, *([1] * (v.dim() - len(lead))))
            item[key] = torch.where(mask, first, v)
        return item

    def _extra_repr(self) -> str:
        return f"max_ratio={self.max_ratio}"


RotationProtocol = Literal["z", "so3", "euler", "none"]


class RandomRotation(Transform):
    """Rotate ``xyz`` and ``normals`` together by one random rotation per cloud.

    Args:
        protocol: ``"z"``: uniform angle about ``up_axis`` (the spec's "z" protocol, named after
            the up axis whatever it is); ``"so3"``: Haar-uniform
            (:func:`pointlib.geometry.random_rotation`); ``"euler"``: the official non-Haar
            ``Rz Ry Rx`` sampler (legacy reproductions only); ``"none"``: identity.
            (default: ``"so3"``)
        up_axis: ``"x"``, ``"y"`` or ``"z"``, the dataset's up axis (``"y"`` for ModelNet40 and
            ShapeNetPart normal data). (default: ``"z"``)
        store_as: if set, the rotation ``(3, 3)`` / ``(B, 3, 3)`` is stored under this key.
            (default: ``None``)
        generator: default generator. (default: ``None``)
    """

    def __init__(
        self,
        protocol: RotationProtocol = "so3",
        up_axis: str = "z",
        *,
        store_as: str | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        if protocol not in ("z", "so3", "euler", "none"):
            raise ValueError(
                f"RandomRotation protocol must be 'z', 'so3', 'euler' or 'none', got {protocol!r}"
            )
        if up_axis not in AXES:
            raise ValueError(f"RandomRotation up_axis must be 'x', 'y' or 'z', got {up_axis!r}")
        self.protocol, self.up_axis, self.store_as = protocol, up_axis, store_as

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` rotations of this protocol, ``(n, 3, 3)`` float64."""
        kw = {"dtype": torch.float64}
        if self.protocol == "so3":
            return random_rotation(n, generator, **kw)
        if self.protocol == "z":
            return random_rotation_about_axis(n, self.up_axis, generator, **kw)
        if self.protocol == "euler":
            return random_rotation_euler(n, generator, **kw)
        return torch.eye(3, dtype=torch.float64).expand(n, 3, 3).clone()

    def forward(self, item: Item, generator: torch.Generator | None) -> Item:
        xyz = item["xyz"]
        batch = _batch_shape(xyz)
        R = self.sample(batch[0] if batch else 1, generator)
        R = (R if batch else R[0]).to(dtype=xyz.dtype, device=xyz.device)
        item["xyz"], normals = apply_rotation(R, xyz, item.get("normals"))
        if normals is not None:
            item["normals"] = normals
        if self.store_as is not None:
            item[self.store_as] = R
        return item

    def _extra_repr(self) -> str:
        return f"protocol={self.protocol!r}, up_axis={self.up_axis!r}"


class RandomPermutation(Transform):
    """Shuffle the point order (per cloud), applying the same permutation to all per-point keys."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)

    def forward(self, item: Item, generator: torch.Generator | None) -> Item:
        xyz = item["xyz"]
        n = xyz.shape[-2]
        batch = _batch_shape(xyz)
        if batch:
            perm = torch.argsort(torch.rand(batch[0], n, generator=generator), dim=1)
        else:
            perm = torch.randperm(n, generator=generator)
        perm = perm.to(xyz.device)
        for key in point_keys(item):
            v = item[key]
            if batch:
                idx = perm.reshape(*perm.shape, *([1] * (v.dim() - 2))).expand_as(v)
                item[key] = torch.gather(v, 1, idx)
            else:
                item[key] = v[perm]
        return item
