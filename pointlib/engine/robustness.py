"""The rotation-robustness report: train under each train-time rotation, test under each
test-time rotation (``z/z``, ``z/SO3``, ``SO3/SO3``, ``none/none``), mean +- std over R rotated
copies, and the invariance error next to the accuracies; optionally an angle sweep."""

from __future__ import annotations

import copy
import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pointlib.engine.config import Config
from pointlib.engine.data import DataBundle, build_data
from pointlib.engine.evaluate import ProtocolResult
from pointlib.engine.outputs import atomic_write_text, dumps_json
from pointlib.engine.rotations import sweep_rotation
from pointlib.engine.trainer import evaluate_test, train

__all__ = [
    "RobustnessRow",
    "angle_sweep",
    "format_table",
    "rows_from_results",
    "run_robustness",
    "write_robustness",
]

_LABEL = {"none": "none", "z": "z", "so3": "SO3"}


@dataclass
class RobustnessRow:
    """One (model, train rotation, test rotation) cell of the report; metrics in [0, 1]."""

    model: str
    train: str
    test: str
    metric: str  # oa (cls) or instance_miou (partseg)
    mean: float
    std: float
    second_metric: str  # macc or class_miou
    second_mean: float
    second_std: float
    invariance_error: float
    num_rotations: int
    #: test samples whose label is not the same on every rotated copy, and the samples counted
    prediction_changes: int = 0
    num_samples: int = 0

    @property
    def protocol(self) -> str:
        return f"{_LABEL[self.train]}/{_LABEL[self.test]}"


def rows_from_results(
    model: str, train_rotation: str, results: dict[str, ProtocolResult], task: str
) -> list[RobustnessRow]:
    """Turn :func:`~pointlib.engine.trainer.evaluate_test` output into report rows."""
    k1, k2 = ("instance_miou", "class_miou") if task == "partseg" else ("oa", "macc")
    rows = []
    for test, res in results.items():
        m1, s1 = res.mean_std(k1)
        m2, s2 = res.mean_std(k2)
        rows.append(
            RobustnessRow(
                model,
                train_rotation,
                test,
                k1,
                m1,
                s1,
                k2,
                m2,
                s2,
                res.invariance_error,
                len(res.copies),
                res.prediction_changes,
                res.num_samples,
            )
        )
    return rows


def angle_sweep(
    cfg: Config,
    model: nn.Module,
    data: DataBundle,
    *,
    steps: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[list[float], list[float]]:
    """Accuracy (or instance mIoU) on the test set with every sample rotated by the same angle
    about the up axis tilted by ``cfg.eval.sweep_tilt_deg``; angles ``360 * k / steps``."""
    steps = steps or cfg.eval.sweep_steps
    key = "instance_miou" if cfg.task == "partseg" else "oa"
    angles = [360.0 * k / steps for k in range(steps + 1)]
    values = []
    for a in angles:
        R = sweep_rotation(a, data.up_axis, cfg.eval.sweep_tilt_deg)
        res = evaluate_test(cfg, model, data, rotations=["none"], device=device, fixed_rotation=R)
        values.append(res["none"].copies[0][key])
    return angles, values


def run_robustness(
    cfg: Config,
    out_dir: str | Path | None,
    *,
    label: str | None = None,
    data: DataBundle | None = None,
    sweep: bool | None = None,
) -> tuple[list[RobustnessRow], dict[str, Any]]:
    """Train once per ``cfg.robustness.train_rotations`` (each in ``out_dir/train_<rot>``) and
    evaluate the val-selected weights under ``cfg.robustness.tests[rot]``.

    Returns the report rows and extras: ``sweep`` = ``(angles, values)`` for the model trained
    with the first train rotation (when ``sweep`` or ``cfg.eval.angle_sweep``), ``runs``.
    """
    label = label or cfg.model.name
    out = Path(out_dir) if out_dir is not None else None
    data = data if data is not None else build_data(cfg)
    rows: list[RobustnessRow] = []
    extras: dict[str, Any] = {"runs": {}}
    do_sweep = cfg.eval.angle_sweep if sweep is None else sweep
    for i, train_rot in enumerate(cfg.robustness.train_rotations):
        c = copy.deepcopy(cfg)
        c.augment.rotation = train_rot
        c.eval.rotations = list(cfg.robustness.tests.get(train_rot, [train_rot]))
        c.validate()
        train_view = data.train
        if hasattr(train_view, "augment"):  # a copy of the view, pointed at this rotation
            train_view = copy.copy(train_view)  # (the caller's data.train is left as it was)
            train_view.augment = c.augment
        bundle = DataBundle(
            train=train_view,
            val=data.val,
            test=data.test,
            classes=data.classes,
            up_axis=data.up_axis,
            seg_classes=data.seg_classes,
            num_parts=data.num_parts,
        )
        run_dir = out / f"train_{train_rot}" if out is not None else None
        res = train(c, run_dir, data=bundle)
        rows += rows_from_results(label, train_rot, res.test, c.task)
        extras["runs"][train_rot] = str(run_dir) if run_dir else None
        if do_sweep and i == 0:
            # the val-selected weights, as for the test rows (not the last step's)
            model = res.best_model
            if model is None and run_dir is not None and (run_dir / "best.pt").is_file():
                from pointlib.engine.checkpoint import model_from_checkpoint

                model = model_from_checkpoint(run_dir / "best.pt")
            if model is None:
                raise RuntimeError(f"robustness: no best weights for train rotation {train_rot}")
            device = next(model.parameters()).device
            extras["sweep"] = angle_sweep(c, model, bundle, device=device)
            extras["sweep_train_rotation"] = train_rot
    return rows, extras


def _pct(m: float, s: float) -> str:
    return "–" if math.isnan(m) else f"{100 * m:.1f} ± {100 * s:.1f}"


def _err(e: float) -> str:
    return "–" if math.isnan(e) else f"{e:.1e}"


def _changes(r: RobustnessRow) -> str:
    return "–" if r.num_rotations < 2 else f"{r.prediction_changes}/{r.num_samples}"


def format_table(rows: Sequence[RobustnessRow], *, markdown: bool = True) -> str:
    """The report as a table: one line per model, one column per protocol (``OA mean ± std``,
    invariance error in brackets), followed by the detailed per-row table."""
    protocols: list[str] = []
    for r in rows:
        if r.protocol not in protocols:
            protocols.append(r.protocol)
    models: list[str] = []
    for r in rows:
        if r.model not in models:
            models.append(r.model)
    metric = rows[0].metric if rows else "oa"
    name = {"oa": "OA", "instance_miou": "inst. mIoU"}.get(metric, metric)
    head = ["model", *[f"{p} {name} (%)" for p in protocols]]
    body = []
    for m in models:
        cells = [m]
        for p in protocols:
            hit = [r for r in rows if r.model == m and r.protocol == p]
            cells.append(f"{_pct(hit[0].mean, hit[0].std)}" if hit else "")
        body.append(cells)
    second = rows[0].second_metric if rows else "macc"
    sname = {"macc": "mAcc", "class_miou": "cls. mIoU"}.get(second, second)
    head2 = ["model", "train/test", f"{name} (%)", f"{sname} (%)", "inv. err", "pred. changes",
             "R"]  # fmt: skip
    body2 = [
        [
            r.model,
            r.protocol,
            _pct(r.mean, r.std),
            _pct(r.second_mean, r.second_std),
            _err(r.invariance_error),
            _changes(r),
            str(r.num_rotations),
        ]
        for r in rows
    ]
    return _table(head, body, markdown) + "\n\n" + _table(head2, body2, markdown)


def _table(head: list[str], body: list[list[str]], markdown: bool) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = (
        (lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |")
        if (markdown)
        else (lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    )
    lines = [fmt(head)]
    lines.append(
        "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        if markdown
        else "  ".join("-" * w for w in widths)
    )
    lines += [fmt(r) for r in body]
    return "\n".join(lines)


def write_robustness(
    out: str | Path, rows: Sequence[RobustnessRow], *, note: str = "", extra: dict | None = None
) -> None:
    """``robustness.csv`` (one line per row), ``robustness.md`` (the tables) and
    ``robustness.json`` (rows + ``extra``) in ``out``."""
    out = Path(out)
    buf = io.StringIO()
    fields = ["model", "protocol", *asdict(rows[0]).keys()] if rows else ["model"]
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(fields)))
    w.writeheader()
    for r in rows:
        w.writerow({"protocol": r.protocol, **asdict(r)})
    atomic_write_text(out / "robustness.csv", buf.getvalue())
    md = "# Rotation robustness\n\n"
    md += (
        "Protocol X/Y = train-time rotation augmentation X / test-time rotation Y; mean ± std "
        "over R seeded rotated copies of the test set (z: uniform angle about the up axis, "
        "SO3: Haar-uniform); inv. err = max |Δlogits| between the rotated copies of a sample; "
        "pred. changes = test samples whose predicted label is not the same on every rotated "
        "copy (part segmentation: samples with any point whose label changes).\n\n"
    )
    if note:
        md += note.rstrip() + "\n\n"
    md += format_table(rows, markdown=True) + "\n"
    atomic_write_text(out / "robustness.md", md)
    payload = {"rows": [{"protocol": r.protocol, **asdict(r)} for r in rows], **(extra or {})}
    atomic_write_text(out / "robustness.json", dumps_json(payload))
