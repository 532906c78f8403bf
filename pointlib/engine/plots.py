"""Figures: confusion matrix, accuracy-vs-angle sweep, and 3-D renders of clouds coloured by the
predicted class. Uses matplotlib's Agg backend (no display needed); files are written atomically."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pointlib.engine.outputs import atomic_write_bytes

__all__ = ["plot_confusion", "plot_sweep", "render_clouds"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int = 120) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_confusion(
    cm: Tensor,
    classes: Sequence[str],
    path: str | Path,
    title: str = "",
    *,
    copies: int = 1,
) -> None:
    """Row-normalised confusion matrix (rows: true class, columns: prediction) as a PNG.

    ``cm`` is ``(C, C)`` counts; when it sums ``copies`` rotated copies of the test set, the
    figure says so (each test sample is then counted ``copies`` times)."""
    plt = _pyplot()
    cmf = cm.double()
    norm = cmf / cmf.sum(1, keepdim=True).clamp_min(1)
    n = len(classes)
    size = min(3 + 0.35 * n, 16)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), list(classes), rotation=90, fontsize=7 if n > 15 else 9)
    ax.set_yticks(range(n), list(classes), fontsize=7 if n > 15 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j] > 0:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7, color=color
                    )
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("fraction of the true class (row-normalised)")
    total = int(cm.sum())
    if copies > 1:
        what = (
            f"counts summed over {copies} rotated copies of the test set "
            f"({total} predictions = {copies} x {total // copies} samples)"
        )
    else:
        what = f"counts: {total} test samples"
    ax.set_title((title or "confusion matrix") + "\n" + what, fontsize=9)
    _save(fig, path)


def plot_sweep(
    angles_deg: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str = "accuracy vs rotation about a tilted axis",
    ylabel: str = "overall accuracy (%)",
    *,
    note: str = "",
) -> None:
    """One line per model: metric (in %) against the rotation angle (degrees). ``note`` (a
    second title line) says what each point counts, e.g. how many samples were rotated."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, ys in curves.items():
        ax.plot(list(angles_deg), [100 * y for y in ys], marker="o", label=name)
    ax.set_xlabel("rotation angle (degrees)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_xticks(list(range(0, 361, 45)))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=10 if note else None)
    _save(fig, path)


def render_clouds(
    clouds: Sequence[Tensor],
    rows: Mapping[str, Sequence[int]],
    truth: Sequence[int],
    classes: Sequence[str],
    path: str | Path,
    title: str = "",
) -> None:
    """A grid of 3-D scatter plots: one column per cloud ``(N, 3)``, one row per model; each cloud
    is coloured by that model's predicted class, and titled ``pred`` (``true``)."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab20")
    ncol, nrow = len(clouds), len(rows)
    fig = plt.figure(figsize=(2.6 * ncol, 2.8 * nrow))
    for r, (name, preds) in enumerate(rows.items()):
        for c, xyz in enumerate(clouds):
            ax = fig.add_subplot(nrow, ncol, r * ncol + c + 1, projection="3d")
            p = torch.as_tensor(xyz).cpu().float()
            pred = int(preds[c])
            ok = pred == int(truth[c])
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=2, color=cmap(pred % 20), depthshade=True)
            ax.set_axis_off()
            lim = float(p.abs().max()) if p.numel() else 1.0
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_zlim(-lim, lim)
            mark = "✓" if ok else "✗"
            ax.set_title(
                f"{classes[pred]} {mark}\n(true: {classes[int(truth[c])]})",
                fontsize=8,
                color="darkgreen" if ok else "darkred",
            )
            if c == 0:
                ax.text2D(
                    -0.15,
                    0.5,
                    name,
                    transform=ax.transAxes,
                    rotation=90,
                    va="center",
                    fontsize=9,
                    fontweight="bold",
                )
    if title:
        fig.suptitle(title)
    _save(fig, path)
