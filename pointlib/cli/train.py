"""pointlib train --config X.yaml [--set a.b=c ...] [--out DIR] [--resume DIR/last.pt]

Starts with a one-line summary (model, parameters, dataset sizes, device), trains, selects the
best epoch on the validation split, tests it under every eval.rotations protocol and writes the
run folder: config.resolved.yaml, run_info.json, metrics.csv, last.pt, best.pt (which records
the input preprocessing that pointlib predict replays), results.json and confusion_*.png.
Progress: bars on a terminal, a line every 30 s otherwise (POINTLIB_PROGRESS_EVERY seconds).
Under torchrun --nproc_per_node N -m pointlib train ... it trains with DDP.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from pointlib.cli._common import add_config_args, config_from_args, make_parser, out_dir


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("pointlib train", __doc__ or "")
    add_config_args(p)
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="continue from a last.pt (or a run folder); same config expected",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="allow writing into a folder that already holds a run",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    out = out_dir(args, cfg)
    resume = args.resume
    if resume is not None and resume.is_dir():
        resume = resume / "last.pt"
    if resume is None and not args.overwrite and (out / "last.pt").exists():
        raise FileExistsError(
            f"{out} already holds a run; pass --resume {out / 'last.pt'} or --overwrite"
        )
    from pointlib.engine.evaluate import summarise
    from pointlib.engine.trainer import train

    result = train(cfg, out, resume=resume)
    if os.environ.get("RANK", "0") != "0":
        return 0
    for rot, res in result.test.items():
        print(f"test {cfg.augment.rotation}/{rot}: {summarise(res, cfg.task)}")
    state = "finished" if result.completed else f"stopped at step {result.global_step}"
    print(f"run {state}: {out}")
    return 0
