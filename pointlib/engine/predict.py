"""Predict on your own files with a trained checkpoint: ``pointlib.predict`` and
``pointlib predict``.

Every input (a ``.ply``/``.pcd``/``.xyz``/``.txt``/``.npz`` point cloud, or an
``.off``/``.obj``/``.ply``/``.stl`` mesh whose surface is sampled) goes through exactly the
preprocessing recorded in the checkpoint (:mod:`pointlib.engine.preprocessing`), then through the
model, one cloud at a time (so a model that mixes the samples of a batch cannot mix inputs).
Classification gives the top-k classes with probabilities; part segmentation gives the number of
points per predicted part and, on request, a ``.ply`` coloured by part. Each prediction carries
warnings when the input is far from the training inputs, and, with ``rotations=R``, an
invariance certificate: the largest ``|Δlogit|`` and the label agreement between the input and R
Haar-random rotations of it.

>>> preds = pointlib.predict("runs/syn/best.pt", ["cup.ply"], rotations=8)  # doctest: +SKIP
>>> preds[0].label, preds[0].top_k[0][1], preds[0].certificate.agreement  # doctest: +SKIP
('cylinder', 0.97, 1.0)
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pointlib.engine.preprocessing import (
    PreparedCloud,
    Preprocessing,
    prepare_cloud,
    preprocessing_from_checkpoint,
)

__all__ = [
    "Certificate",
    "Prediction",
    "Predictor",
    "format_predictions",
    "predict",
    "read_input",
]

InputLike = str | os.PathLike[str] | Tensor | dict[str, Any]


@dataclass
class Certificate:
    """Invariance of one prediction over ``rotations`` Haar-random rotations of the input.

    Attributes:
        rotations: R, the number of rotated copies compared with the unrotated input.
        max_abs_dlogit: ``max |logits(R_r x) - logits(x)|`` over copies (and points, classes).
        agreement: fraction of copies (part seg.: of copies x points) whose predicted label
            equals the unrotated prediction.
        seed: seed of the rotations (copy ``r`` uses ``mix_seed(seed, r)``).
    """

    rotations: int
    max_abs_dlogit: float
    agreement: float
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "rotations": self.rotations,
            "max_abs_dlogit": self.max_abs_dlogit,
            "agreement": self.agreement,
            "seed": self.seed,
        }


@dataclass
class Prediction:
    """The prediction for one input.

    Attributes:
        source: the file name (or ``"<tensor i>"``).
        task: ``"cls"`` or ``"partseg"``.
        top_k: ``[(class, probability), ...]`` best first (classification; for part segmentation
            the given category with probability 1).
        logits: ``(C,)`` classification logits, or ``(N, P)`` per-point part logits.
        points_in: points in the input; ``num_points``: points fed to the model.
        normals: where the normals fed to the model came from (file / mesh / estimated / none).
        warnings: ways this input differs from the training inputs.
        parts: part segmentation: ``{part name: number of points}`` (points with that argmax).
        point_parts: ``(N,)`` part id of every model input point (part segmentation).
        parts_ply: the coloured ``.ply`` written for this input, if any.
        certificate: the invariance certificate when requested.
    """

    source: str
    task: str
    top_k: list[tuple[str, float]]
    logits: Tensor
    points_in: int
    num_points: int
    normals: str
    warnings: list[str] = field(default_factory=list)
    parts: dict[str, int] | None = None
    point_parts: Tensor | None = None
    parts_ply: str | None = None
    certificate: Certificate | None = None

    @property
    def label(self) -> str:
        """The predicted class (part segmentation: the category)."""
        return self.top_k[0][0]

    @property
    def probability(self) -> float:
        return self.top_k[0][1]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (finite numbers only; no tensors)."""
        out: dict[str, Any] = {
            "source": self.source,
            "task": self.task,
            "label": self.label,
            "probability": _finite(self.probability),
            "top_k": [{"label": c, "probability": _finite(p)} for c, p in self.top_k],
            "points_in": self.points_in,
            "num_points": self.num_points,
            "normals": self.normals,
            "warnings": list(self.warnings),
        }
        if self.parts is not None:
            out["parts"] = dict(self.parts)
        if self.parts_ply is not None:
            out["parts_ply"] = self.parts_ply
        if self.certificate is not None:
            cert = self.certificate.as_dict()
            cert["max_abs_dlogit"] = _finite(cert["max_abs_dlogit"])
            out["certificate"] = cert
        return out


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --------------------------------------------------------------------------- reading inputs


def _ply_has_faces(path: Path) -> bool:
    """True when a ``.ply`` header declares a non-empty ``face`` element (a mesh)."""
    with open(path, "rb") as f:
        head = f.read(65536)
    end = head.find(b"end_header")
    text = head[: end if end >= 0 else len(head)].decode("ascii", "replace")
    for line in text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "element" and words[1] == "face":
            try:
                return int(words[2]) > 0
            except ValueError:
                return False
    return False


def read_input(
    path: str | os.PathLike[str], *, mesh_samples: int = 10000, seed: int = 0, kind: str = "auto"
) -> tuple[Tensor, Tensor | None, str]:
    """Read one input file as ``(xyz (N, 3), normals (N, 3) | None, source)``.

    ``source`` is ``"file"`` for point clouds and ``"mesh"`` for meshes, whose surface is sampled
    with ``mesh_samples`` area-weighted points carrying face normals. ``.ply`` files with faces
    are meshes unless ``kind="points"``; ``kind="mesh"`` forces mesh reading.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown suffix, or a corrupt file (:class:`pointlib.io.FileFormatError`).
    """
    from pointlib.io import MESH_SUFFIXES, POINT_CLOUD_SUFFIXES, read_mesh, sample_mesh
    from pointlib.io import read_point_cloud as read_cloud

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"input file not found: {p}")
    suffix = p.suffix.lower()
    if kind not in ("auto", "mesh", "points"):
        raise ValueError(f"kind must be auto, mesh or points, got {kind!r}")
    if suffix not in POINT_CLOUD_SUFFIXES and suffix not in MESH_SUFFIXES:
        known = sorted(set(POINT_CLOUD_SUFFIXES) | set(MESH_SUFFIXES))
        raise ValueError(f"{p}: unknown file type {p.suffix!r}; supported: {', '.join(known)}")
    is_mesh = kind == "mesh" or (
        kind == "auto"
        and (suffix not in POINT_CLOUD_SUFFIXES or (suffix == ".ply" and _ply_has_faces(p)))
    )
    if is_mesh:
        mesh = read_mesh(p)
        try:
            xyz, normals = sample_mesh(mesh, mesh_samples, seed=seed)
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from None
        return xyz, normals, "mesh"
    item = read_cloud(p)
    return item["xyz"], item.get("normals"), "file"


# --------------------------------------------------------------------------- the predictor


def _part_names(
    classes: list[str], seg_classes: list[list[int]] | None
) -> dict[int, tuple[int, str]]:
    """Global part id -> (category index, ``"Category:k"``)."""
    out: dict[int, tuple[int, str]] = {}
    for ci, parts in enumerate(seg_classes or []):
        name = classes[ci] if ci < len(classes) else str(ci)
        for k, pid in enumerate(parts):
            out[int(pid)] = (ci, f"{name}:{k}")
    return out


class Predictor:
    """A checkpoint's model plus its recorded preprocessing, ready to predict files.

    Args:
        checkpoint: ``best.pt`` / ``last.pt`` or a run folder.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    """

    def __init__(self, checkpoint: str | os.PathLike[str], *, device: str = "auto") -> None:
        from pointlib.engine.checkpoint import load_checkpoint, model_from_checkpoint
        from pointlib.engine.distributed import DistInfo
        from pointlib.engine.trainer import resolve_device

        state = load_checkpoint(checkpoint)
        self.path = str(state["path"])
        self.preprocessing: Preprocessing = preprocessing_from_checkpoint(state)
        cfg = state.get("config") or {}
        self.task = str(cfg.get("task", "partseg" if state.get("seg_classes") else "cls"))
        self.classes: list[str] = list(state.get("classes") or [])
        self.seg_classes: list[list[int]] | None = state.get("seg_classes")
        self.model_name = str(state["model_name"])
        self.device = resolve_device(device, DistInfo(), flag="--device")
        self.model: nn.Module = model_from_checkpoint(state).to(self.device).eval()
        if not self.classes:
            n = int(dict(state.get("model_kwargs") or {}).get("num_classes", 0))
            self.classes = [str(i) for i in range(n)]
        self.notes: list[str] = []
        if not self.preprocessing.recorded:
            self.notes.append(
                f"{self.path} predates recorded preprocessing; assuming the defaults of its "
                f"config ({self.preprocessing.describe()}); retrain to record them exactly"
            )

    # -- one forward ------------------------------------------------------------------------
    @torch.no_grad()
    def _logits(self, xyz: Tensor, normals: Tensor | None, category: int | None) -> Tensor:
        x = xyz[None].to(self.device)
        n = normals[None].to(self.device) if normals is not None else None
        if self.task == "partseg":
            cat = torch.tensor([int(category or 0)], device=self.device)
            out = self.model(x, n, cat)
        else:
            out = self.model(x, n)
        return out[0].float().cpu()

    def _category(self, category: str | int | None) -> int:
        if category is None:
            raise ValueError(
                "part segmentation needs the object category (--category / category=); one of: "
                + ", ".join(self.classes)
            )
        if isinstance(category, int) or str(category).isdigit():
            ci = int(category)
            if not 0 <= ci < len(self.classes):
                raise ValueError(f"category index {ci} out of range 0..{len(self.classes) - 1}")
            return ci
        lower = {c.lower(): i for i, c in enumerate(self.classes)}
        if str(category).lower() not in lower:
            raise ValueError(f"unknown category {category!r}; one of: {', '.join(self.classes)}")
        return lower[str(category).lower()]

    def prepare(
        self, item: InputLike, *, seed: int = 0, kind: str = "auto"
    ) -> tuple[str, PreparedCloud]:
        """Read (if a path) and preprocess one input; returns ``(source name, cloud)``."""
        if isinstance(item, str | os.PathLike):
            xyz, normals, src = read_input(
                item, mesh_samples=self.preprocessing.mesh_samples, seed=seed, kind=kind
            )
            name = str(item)
        elif isinstance(item, dict):
            xyz, normals, src, name = item["xyz"], item.get("normals"), "file", "<dict>"
        else:
            xyz, normals, src, name = item, None, "file", "<tensor>"
        xyz = torch.as_tensor(xyz)
        if normals is not None:
            normals = torch.as_tensor(normals)
            if normals.shape != xyz.shape:
                raise ValueError(
                    f"{name}: normals shape {tuple(normals.shape)} != xyz shape {tuple(xyz.shape)}"
                )
        try:
            cloud = prepare_cloud(xyz, normals, self.preprocessing, source=src, seed=seed)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        return name, cloud

    def predict_one(
        self,
        item: InputLike,
        *,
        top_k: int = 5,
        rotations: int = 0,
        seed: int = 0,
        category: str | int | None = None,
        parts_ply: str | os.PathLike[str] | None = None,
        kind: str = "auto",
    ) -> Prediction:
        """Predict one input (see :func:`predict`)."""
        name, cloud = self.prepare(item, seed=seed, kind=kind)
        cat = self._category(category) if self.task == "partseg" else None
        logits = self._logits(cloud.xyz, cloud.normals, cat)
        if not torch.isfinite(logits).all():
            raise FloatingPointError(f"{name}: the model returned non-finite logits")
        pred = Prediction(
            source=name,
            task=self.task,
            top_k=[],
            logits=logits,
            points_in=cloud.points_in,
            num_points=int(cloud.xyz.shape[0]),
            normals=cloud.normals_used,
            warnings=list(cloud.warnings),
        )
        allowed: list[int] | None = None  # part segmentation: the category's part ids
        if self.task == "partseg":
            assert cat is not None
            names = _part_names(self.classes, self.seg_classes)
            allowed = [pid for pid, (ci, _) in sorted(names.items()) if ci == cat]
            if not allowed:
                allowed = list(range(logits.shape[-1]))
            sub = logits[:, allowed]
            point_parts = torch.tensor(allowed)[sub.argmax(-1)]
            pred.point_parts = point_parts
            pred.top_k = [(self.classes[cat], 1.0)]
            pred.parts = {
                names.get(pid, (cat, str(pid)))[1]: int((point_parts == pid).sum())
                for pid in allowed
            }
            if parts_ply is not None:
                pred.parts_ply = str(_write_parts_ply(parts_ply, cloud, point_parts, allowed))
        else:
            probs = torch.softmax(logits.double(), -1)
            k = max(1, min(int(top_k), probs.numel()))
            vals, idx = probs.topk(k)
            pred.top_k = [(self._class(int(i)), float(v)) for v, i in zip(vals, idx)]
        if rotations:
            pred.certificate = self._certificate(cloud, logits, cat, int(rotations), seed, allowed)
        return pred

    def _class(self, i: int) -> str:
        return self.classes[i] if i < len(self.classes) else str(i)

    def _certificate(
        self,
        cloud: PreparedCloud,
        logits: Tensor,
        cat: int | None,
        r: int,
        seed: int,
        cols: list[int] | None = None,
    ) -> Certificate:
        """Compare ``logits`` with those of ``r`` Haar rotations of the model input; labels are
        the argmax over ``cols`` (a category's parts) when given."""
        from pointlib.engine.rotations import mix_seed
        from pointlib.geometry import apply_rotation, random_rotation

        def label(x: Tensor) -> Tensor:
            return (x[..., cols] if cols is not None else x).argmax(-1)

        base = label(logits)
        worst, agree, total = 0.0, 0, 0
        for c in range(r):
            g = torch.Generator().manual_seed(mix_seed(seed, c))
            R = random_rotation(1, g, dtype=torch.float64)[0].to(torch.float32)
            rx, rn = apply_rotation(R, cloud.xyz, cloud.normals)
            out = self._logits(rx, rn, cat)
            worst = max(worst, float((out - logits).abs().max()))
            same = label(out) == base
            agree += int(same.sum())
            total += same.numel()
        return Certificate(r, worst, agree / max(total, 1), seed)


def _write_parts_ply(
    path: str | os.PathLike[str], cloud: PreparedCloud, point_parts: Tensor, allowed: list[int]
) -> Path:
    """The model's input points (in the input's coordinates) coloured by predicted part."""
    from pointlib.io import write_point_cloud

    palette = torch.tensor(
        [
            [0.90, 0.10, 0.10],
            [0.10, 0.60, 0.90],
            [0.20, 0.75, 0.25],
            [0.95, 0.65, 0.10],
            [0.60, 0.30, 0.80],
            [0.10, 0.80, 0.75],
            [0.55, 0.35, 0.20],
        ]
    )
    local = torch.tensor([allowed.index(int(p)) for p in point_parts])
    colors = palette[local % len(palette)]
    return write_point_cloud(path, cloud.raw_xyz, cloud.normals, colors=colors)


def predict(
    checkpoint: str | os.PathLike[str] | Predictor,
    inputs: InputLike | Sequence[InputLike],
    *,
    top_k: int = 5,
    rotations: int = 0,
    seed: int = 0,
    category: str | int | None = None,
    parts_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    kind: str = "auto",
) -> list[Prediction]:
    """Classify (or part-segment) point-cloud and mesh files with a trained checkpoint.

    Args:
        checkpoint: ``best.pt`` / ``last.pt``, a run folder, or a :class:`Predictor`.
        inputs: one or several files (``.ply``, ``.pcd``, ``.xyz``, ``.txt``, ``.npz`` clouds;
            ``.off``, ``.obj``, ``.ply``, ``.stl`` meshes), ``(N, 3)`` tensors or
            ``{"xyz": (N, 3), "normals": (N, 3)}`` dicts, in the input's own units and pose.
        top_k: classes reported per input.
        rotations: R > 0 adds an invariance :class:`Certificate` over R Haar rotations.
        seed: seed of mesh sampling, random point sampling and the certificate's rotations.
        category: part segmentation: the object category (name or index), required.
        parts_dir: part segmentation: write ``<stem>_parts.ply`` coloured by part here.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        kind: ``auto``, ``points`` or ``mesh`` (how to read ``.ply``).

    Returns:
        One :class:`Prediction` per input, in order. Inputs are preprocessed exactly as the
        checkpoint's training data (:class:`~pointlib.engine.preprocessing.Preprocessing`).

    Raises:
        FileNotFoundError, ValueError: a missing, unreadable or malformed input (the message
            names it); CheckpointError: an unusable checkpoint.
    """
    if isinstance(inputs, str | os.PathLike | Tensor | dict):
        inputs = [inputs]
    items = list(inputs)
    if not items:
        raise ValueError("predict: no inputs given")
    if int(top_k) < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if int(rotations) < 0:
        raise ValueError(f"rotations must be >= 0, got {rotations}")
    pr = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint, device=device)
    out = []
    for i, item in enumerate(items):
        ply = None
        if parts_dir is not None and pr.task == "partseg":
            stem = Path(item).stem if isinstance(item, str | os.PathLike) else f"input{i}"
            ply = Path(parts_dir) / f"{stem}_parts.ply"
        p = pr.predict_one(
            item,
            top_k=top_k,
            rotations=rotations,
            seed=seed,
            category=category,
            parts_ply=ply,
            kind=kind,
        )
        if not isinstance(item, str | os.PathLike):
            p.source = f"<input {i}>"
        out.append(p)
    return out


# --------------------------------------------------------------------------- output formats


def format_predictions(preds: Sequence[Prediction], fmt: str = "text") -> str:
    """Render predictions as ``text`` (human), ``csv`` (one row per input) or ``json``.

    JSON is strict (no NaN/Infinity); CSV columns are ``source, label, probability, top_k``
    (``label:p;label:p``), ``points_in, num_points, normals``, the certificate's
    ``rotations, max_abs_dlogit, agreement`` (empty without one), ``parts`` and ``warnings``.
    """
    if fmt == "json":
        from pointlib.engine.outputs import dumps_json

        return dumps_json([p.as_dict() for p in preds])
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            [
                "source",
                "label",
                "probability",
                "top_k",
                "points_in",
                "num_points",
                "normals",
                "rotations",
                "max_abs_dlogit",
                "agreement",
                "parts",
                "warnings",
            ]
        )
        for p in preds:
            c = p.certificate
            w.writerow(
                [
                    p.source,
                    p.label,
                    f"{p.probability:.6f}",
                    ";".join(f"{lab}:{pr:.6f}" for lab, pr in p.top_k),
                    p.points_in,
                    p.num_points,
                    p.normals,
                    c.rotations if c else "",
                    f"{c.max_abs_dlogit:.3e}" if c else "",
                    f"{c.agreement:.4f}" if c else "",
                    ";".join(f"{k}:{v}" for k, v in (p.parts or {}).items()),
                    " | ".join(p.warnings),
                ]
            )
        return buf.getvalue()
    if fmt != "text":
        raise ValueError(f"format must be text, csv or json, got {fmt!r}")
    lines = []
    for p in preds:
        lines.append(f"{p.source}: {p.label} (p = {p.probability:.3f})")
        if p.task == "partseg" and p.parts is not None:
            lines += [f"  part {k}: {v} points" for k, v in p.parts.items()]
            if p.parts_ply:
                lines.append(f"  wrote {p.parts_ply}")
        else:
            lines += [f"  {i + 1}. {lab:<20s} {pr:.3f}" for i, (lab, pr) in enumerate(p.top_k)]
        lines.append(f"  input: {p.points_in} points -> {p.num_points}, normals: {p.normals}")
        c = p.certificate
        if c is not None:
            lines.append(
                f"  invariance over {c.rotations} Haar rotations: max |Δlogit| "
                f"{c.max_abs_dlogit:.2e}, label agreement {100 * c.agreement:.1f}%"
            )
        lines += [f"  warning: {w}" for w in p.warnings]
    return "\n".join(lines) + "\n"
