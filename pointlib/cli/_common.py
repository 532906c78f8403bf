"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from pointlib.engine.config import Config, load_config


def add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--config", "-c", required=required, type=Path, help="YAML config (see configs/)"
    )
    p.add_argument(
        "--set",
        "-s",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 (repeatable)",
    )
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        default=None,
        help="run folder (default: the config's `out`, else runs/<config name>)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def out_dir(args: argparse.Namespace, cfg: Config) -> Path:
    if args.out is not None:
        return Path(args.out)
    if cfg.out:
        return Path(cfg.out)
    stem = Path(args.config).stem if getattr(args, "config", None) else cfg.name
    return Path("runs") / stem
