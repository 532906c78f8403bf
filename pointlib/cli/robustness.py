"""``pointlib robustness --config X.yaml [--set ...] [--out DIR] [--sweep]``.

Trains the configured model once per ``robustness.train_rotations`` (default z and SO3), tests
the val-selected weights under ``robustness.tests`` (z/z, z/SO3, SO3/SO3, ...), mean ± std over
``eval.num_rotations`` rotated copies, prints the table with the invariance error, and writes
``robustness.csv`` / ``.md`` / ``.json`` (and ``angle_sweep.png`` with ``--sweep``) into the run
folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pointlib.cli._common import add_config_args, config_from_args, out_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pointlib robustness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p)
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also plot accuracy vs rotation angle about a tilted axis",
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
    if "sweep" in extras:
        angles, values = extras["sweep"]
        plot_sweep(angles, {cfg.model.name: values}, out / "angle_sweep.png")
        extra["sweep"] = {"angles": angles, "values": values}
    write_robustness(out, rows, note=f"config: `{args.config}`", extra=extra)
    print(format_table(rows, markdown=False))
    print(f"wrote {out / 'robustness.md'}")
    return 0
