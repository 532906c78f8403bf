"""pointlib robustness --config X.yaml [--set ...] [--out DIR] [--sweep]

Trains the configured model once per robustness.train_rotations (default z and SO3), tests
the val-selected weights under robustness.tests (z/z, z/SO3, SO3/SO3, ...), mean ± std over
eval.num_rotations rotated copies, prints the table with the invariance error, and writes
robustness.csv / .md / .json (and angle_sweep.png with --sweep) plus one run folder per
training rotation (train_z/, train_so3/) into the output folder; all are named at the end.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pointlib.cli._common import add_config_args, config_from_args, make_parser, out_dir


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("pointlib robustness", __doc__ or "")
    add_config_args(p)
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also plot accuracy vs rotation angle about a tilted axis (angle_sweep.png)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    out = out_dir(args, cfg)
    from pointlib.engine.plots import plot_sweep
    from pointlib.engine.robustness import format_table, run_robustness, write_robustness

    rows, extras = run_robustness(cfg, out, sweep=args.sweep or cfg.eval.angle_sweep)
    extra = {"runs": extras["runs"]}
    written = [out / n for n in ("robustness.csv", "robustness.md", "robustness.json")]
    if "sweep" in extras:
        angles, values = extras["sweep"]
        key = "instance mIoU (%)" if cfg.task == "partseg" else "overall accuracy (%)"
        plot_sweep(
            angles,
            {cfg.model.name: values},
            out / "angle_sweep.png",
            ylabel=key,
            note=f"{extras.get('sweep_train_rotation', '')}-trained; each point: the whole "
            "test set rotated by that angle",
        )
        extra["sweep"] = {"angles": angles, "values": values}
        written.append(out / "angle_sweep.png")
    write_robustness(out, rows, note=f"config: `{args.config}`", extra=extra)
    print(format_table(rows, markdown=False))
    runs = [str(r) for r in extras["runs"].values() if r]
    print("wrote " + ", ".join(str(w) for w in written))
    if runs:
        print(
            "run folders (best.pt, metrics.csv, results.json, confusion_*.png): " + ", ".join(runs)
        )
    return 0
