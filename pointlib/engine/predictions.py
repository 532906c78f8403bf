"""What ``pointlib predict`` returns and how it is shown: :class:`Prediction`,
:class:`Certificate` and :func:`format_predictions` (text, CSV, strict JSON)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["Certificate", "Prediction", "format_predictions"]


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
        return _format_csv(preds)
    if fmt != "text":
        raise ValueError(f"format must be text, csv or json, got {fmt!r}")
    return _format_text(preds)


def _format_csv(preds: Sequence[Prediction]) -> str:
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


def _format_text(preds: Sequence[Prediction]) -> str:
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
