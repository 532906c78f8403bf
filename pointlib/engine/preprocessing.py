"""The input preprocessing a model was trained with, recorded in its checkpoint and replayed on
new clouds by :func:`pointlib.predict`.

A training set turns raw files into model inputs in a fixed order: read the cloud (or sample a
mesh surface), reduce it to ``num_points`` (FPS from index 0, the first rows, or a seeded random
choice), take normals from the file / the mesh faces or estimate them (LRA oriented away from
the centroid), then centre it and scale it to the unit sphere (most datasets) or leave the
coordinates as stored (ScanObjectNN). :func:`record_preprocessing` writes that recipe, plus the
spread of the training clouds' radius and centroid (for out-of-distribution warnings), into every
checkpoint as ``state["preprocessing"]``; :func:`preprocessing_from_checkpoint` reads it back and,
for checkpoints written before it was recorded, infers it from the saved config (and says so).
:func:`prepare_cloud` applies it to one cloud.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pointlib.engine.checkpoint import CheckpointError

__all__ = [
    "NORMAL_SOURCES",
    "PreparedCloud",
    "Preprocessing",
    "prepare_cloud",
    "preprocessing_from_checkpoint",
    "record_preprocessing",
]

PREPROCESSING_VERSION = 1

NORMAL_SOURCES = ("file", "mesh", "estimated", "none")
"""Where the training normals came from: the data files, the mesh faces, LRA estimation, none."""

# (dataset name, format) -> where its normals come from; "*" matches any format.
_NORMALS_OF = {
    ("modelnet40", "txt"): "file",
    ("modelnet10", "txt"): "file",
    ("modelnet40", "off"): "mesh",
    ("modelnet10", "off"): "mesh",
    ("modelnet40", "h5"): "none",
    ("modelnet10", "h5"): "none",
    ("shapenetpart", "*"): "file",
    ("scanobjectnn", "*"): "estimated",
    ("fg3d", "*"): "mesh",
    ("synthetic", "*"): "mesh",
}
_STATS_SAMPLES = 256  # training clouds measured for the radius / centroid spread


@dataclass
class Preprocessing:
    """How raw clouds were turned into model inputs during training.

    Attributes:
        num_points: points per model input.
        sampling: ``"fps"`` (farthest point sampling from index 0), ``"first"`` or ``"random"``.
        normalize: centre on the centroid and scale the max radius to 1 (per cloud).
        normals: where normals came from, one of :data:`NORMAL_SOURCES`.
        use_normals: the model was fed normals (``data.normals``).
        normal_k: neighbours of the LRA normal estimate.
        mesh_samples: surface points drawn from a mesh before reducing to ``num_points``.
        up_axis: the dataset's up axis.
        dataset: the training dataset's name.
        radius: ``[p1, p50, p99]`` of the training inputs' max radius about their centroid.
        centroid: ``[p1, p50, p99]`` of the training inputs' centroid distance from the origin.
        recorded: False when inferred from the config of a checkpoint that predates the record.
    """

    num_points: int
    sampling: str = "fps"
    normalize: bool = True
    normals: str = "file"
    use_normals: bool = True
    normal_k: int = 32
    mesh_samples: int = 10000
    up_axis: str = "z"
    dataset: str = "?"
    radius: list[float] | None = None
    centroid: list[float] | None = None
    recorded: bool = True
    version: int = PREPROCESSING_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        """One line, e.g. ``1024 points by FPS, centred + unit sphere, normals from the file``."""
        how = {"fps": "FPS", "first": "the first rows", "random": "a seeded random choice"}
        parts = [f"{self.num_points} points by {how.get(self.sampling, self.sampling)}"]
        parts.append("centred + unit sphere" if self.normalize else "coordinates as stored")
        if not self.use_normals:
            parts.append("no normals")
        else:
            parts.append(
                {
                    "file": "normals from the file",
                    "mesh": "normals from the mesh faces",
                    "estimated": f"normals estimated (LRA, k={self.normal_k})",
                }.get(self.normals, f"normals: {self.normals}")
            )
        return ", ".join(parts)


def _percentiles(values: list[float]) -> list[float] | None:
    if not values:
        return None
    return [float(v) for v in np.percentile(np.asarray(values, np.float64), [1, 50, 99])]


def _base_dataset(view: Any) -> Any:
    return getattr(view, "base", view)


def record_preprocessing(cfg: Any, data: Any) -> dict[str, Any]:
    """The ``state["preprocessing"]`` dict of a run: the recipe of ``data.train``'s dataset and
    the radius / centroid spread of up to 256 of its (un-augmented) training inputs.

    Args:
        cfg: the run's :class:`~pointlib.engine.config.Config`.
        data: its :class:`~pointlib.engine.data.DataBundle`.
    """
    view = data.train
    base = _base_dataset(view)
    name = str(getattr(base, "name", cfg.data.name)).lower()
    fmt = str(getattr(base, "format", "*"))
    p = _inferred(cfg, name, fmt)
    p.up_axis = str(getattr(data, "up_axis", p.up_axis))
    p.num_points = int(getattr(base, "num_points", p.num_points))
    if hasattr(base, "sampling"):
        p.sampling = str(base.sampling)
    if hasattr(base, "normalize"):
        p.normalize = bool(base.normalize)
    radii, cents = _spread(base, list(getattr(view, "indices", range(len(base)))), p.normalize)
    p.radius, p.centroid = _percentiles(radii), _percentiles(cents)
    p.recorded = True
    return p.as_dict()


def _spread(base: Any, indices: list[int], normalize: bool) -> tuple[list[float], list[float]]:
    """Radius and centroid distance of up to 256 training inputs, read from the dataset's stored
    arrays (``_xyz (M, N, 3)`` of :class:`~pointlib.datasets.PointCloudDataset`) without calling
    ``__getitem__``, so no item is loaded or transformed; other datasets give no statistics."""
    arr = getattr(base, "_xyz", None)
    if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[-1] != 3 or not len(arr):
        return [], []
    idx = [i for i in indices if 0 <= i < len(arr)][:_STATS_SAMPLES]
    pts = np.asarray(arr[idx], dtype=np.float64)
    centre = pts.mean(axis=1, keepdims=True)
    radius = np.linalg.norm(pts - centre, axis=-1).max(axis=1)
    dist = np.linalg.norm(centre[:, 0], axis=-1)
    if normalize:  # what the model saw: centred, max radius 1 (a single point stays 0)
        radius, dist = (radius > 0).astype(np.float64), np.zeros_like(dist)
    return radius.tolist(), dist.tolist()


def _inferred(cfg: Any, name: str, fmt: str = "*") -> Preprocessing:
    """The recipe implied by a config (dataset defaults plus ``data.kwargs``)."""
    d = cfg.data
    key = name.replace("-", "").replace("_", "").lower()
    kw = dict(d.kwargs or {})
    normals = _NORMALS_OF.get((key, fmt), _NORMALS_OF.get((key, "*")))
    if normals is None and key.startswith("modelnet"):
        normals = "file"  # the txt layout the configs use
    normals = normals or "file"
    try:
        from pointlib.datasets import DATASETS

        table = {k.replace("_", ""): v for k, v in DATASETS.items()}
        normalize_default = bool(getattr(table.get(key), "normalize_default", True))
    except Exception:  # pragma: no cover - datasets always import
        normalize_default = True
    if not d.normals:
        normals = "none"
    return Preprocessing(
        num_points=int(d.num_points),
        sampling=str(kw.get("sampling", "random" if key == "synthetic" else "fps")),
        normalize=bool(normalize_default if kw.get("normalize") is None else kw["normalize"]),
        normals=normals,
        use_normals=bool(d.normals),
        normal_k=int(kw.get("normal_k", 32)),
        mesh_samples=int(
            kw.get(
                "mesh_samples",
                d.num_points if key == "synthetic" else (4096 if key == "fg3d" else 10000),
            )
        ),
        up_axis="z" if key == "synthetic" else "y",
        dataset=name,
    )


def preprocessing_from_checkpoint(state: dict[str, Any]) -> Preprocessing:
    """The preprocessing recorded in ``state`` (a loaded checkpoint).

    Checkpoints written before the record existed get the recipe implied by their saved config
    (dataset defaults plus ``data.kwargs``) with ``recorded=False``; callers should say so.
    Raises :class:`~pointlib.engine.checkpoint.CheckpointError` when neither is present.
    """
    rec = state.get("preprocessing")
    if isinstance(rec, dict) and "num_points" in rec:
        return Preprocessing.from_dict(rec)
    raw = state.get("config")
    if not raw:
        raise CheckpointError(
            f"{state.get('path', 'checkpoint')} records neither its input preprocessing nor its "
            "training config, so the points, sampling and normalisation its model expects are "
            "unknown; retrain with this pointlib version (which records them)"
        )
    from pointlib.engine.config import config_from_dict

    cfg = config_from_dict(dict(raw))
    p = _inferred(cfg, cfg.data.name)
    p.up_axis = str(state.get("up_axis") or p.up_axis)
    p.recorded = False
    return p


@dataclass
class PreparedCloud:
    """One cloud ready for the model, and what happened to it on the way.

    Attributes:
        xyz: ``(num_points, 3)`` float32 model input.
        normals: ``(num_points, 3)`` float32, or None when the model takes no normals.
        raw_xyz: ``(num_points, 3)`` the same points in the input's own coordinates.
        points_in: points in the input before sampling.
        normals_used: ``file``, ``mesh``, ``estimated`` or ``none``.
        scale: the input's max radius about its centroid, before normalisation.
        offset: the input centroid's distance from the origin, before normalisation.
        warnings: out-of-distribution and substitution notes (one sentence each).
    """

    xyz: Tensor
    normals: Tensor | None
    raw_xyz: Tensor
    points_in: int
    normals_used: str
    scale: float
    offset: float
    warnings: list[str] = field(default_factory=list)


def _estimate(xyz: Tensor, k: int) -> Tensor:
    from pointlib.features import estimate_normals

    x = xyz.to(torch.float64)[None]
    return estimate_normals(x, k=min(k, x.shape[1]))[0].to(torch.float32)


def prepare_cloud(
    xyz: Tensor,
    normals: Tensor | None,
    p: Preprocessing,
    *,
    source: str = "file",
    seed: int = 0,
) -> PreparedCloud:
    """Apply ``p`` to one cloud: sample ``p.num_points`` points, pick the normals, normalise.

    Args:
        xyz: ``(N, 3)`` points in the input's coordinates.
        normals: ``(N, 3)`` or None.
        p: the checkpoint's preprocessing.
        source: ``"file"`` (a point-cloud file) or ``"mesh"`` (points sampled on a mesh).
        seed: seed of ``random`` sampling and of the repetition of short clouds.

    Returns:
        A :class:`PreparedCloud` whose ``warnings`` name every way this input differs from the
        training inputs (fewer points, missing normals, scale or position outside the training
        spread when coordinates are not normalised).
    """
    from pointlib.datasets._points import sample_indices

    xyz = torch.as_tensor(xyz, dtype=torch.float32)
    if xyz.ndim != 2 or xyz.shape[-1] != 3 or xyz.shape[0] == 0:
        raise ValueError(f"expected points of shape (N, 3) with N >= 1, got {tuple(xyz.shape)}")
    if not torch.isfinite(xyz).all():
        raise ValueError("the points contain NaN or infinite coordinates")
    notes: list[str] = []
    n = int(xyz.shape[0])
    if n < p.num_points:
        notes.append(
            f"has {n} points, fewer than the {p.num_points} the model was trained with: "
            f"{p.num_points - n} are repeated (a sparser cloud than in training)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # short clouds: noted above
        idx = sample_indices([xyz.numpy()], p.num_points, p.sampling, seed)[0]
    idx_t = torch.from_numpy(idx)
    pts = xyz[idx_t]
    nrm = normals[idx_t].to(torch.float32) if normals is not None else None
    used = "none"
    if p.use_normals:
        if p.normals == "estimated":
            nrm, used = _estimate(pts, p.normal_k), "estimated"
        elif nrm is not None:
            used = source
        else:
            nrm, used = _estimate(pts, p.normal_k), "estimated"
            origin = "the mesh faces" if p.normals == "mesh" else f"the {p.normals}"
            notes.append(
                f"has no normals; they were estimated (LRA, k={p.normal_k}) while the model "
                f"was trained with normals from {origin}"
            )
    else:
        nrm = None
    centre = pts.to(torch.float64).mean(0)
    scale = float((pts.to(torch.float64) - centre).norm(dim=-1).max())
    offset = float(centre.norm())
    model_xyz = pts
    if p.normalize:
        model_xyz = ((pts.to(torch.float64) - centre) / (scale if scale > 0 else 1.0)).float()
    else:
        if p.radius is not None:
            lo, _, hi = p.radius
            if scale > 2.0 * hi or scale < 0.5 * lo:
                notes.append(
                    f"radius {scale:.3g} is outside the training range [{lo:.3g}, {hi:.3g}] "
                    "and this model does not rescale its inputs (wrong units?)"
                )
        if p.centroid is not None:
            hi_c = p.centroid[2]
            ref = p.radius[2] if p.radius is not None else 1.0
            if offset > hi_c + 0.5 * ref:
                notes.append(
                    f"centroid lies {offset:.3g} from the origin (training inputs: at most "
                    f"{hi_c:.3g}) and this model does not centre its inputs"
                )
    return PreparedCloud(
        xyz=model_xyz.contiguous(),
        normals=nrm.contiguous() if nrm is not None else None,
        raw_xyz=pts,
        points_in=n,
        normals_used=used,
        scale=scale,
        offset=offset,
        warnings=notes,
    )
