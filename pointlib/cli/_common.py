"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from pointlib.engine.config import Config, load_config


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def make_parser(prog: str, description: str, epilog: str | None = None) -> Parser:
    """A subcommand parser: plain-text description kept as written (no reST markup)."""
    return Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def lower(text: str) -> str:
    """argparse ``type=`` for case-insensitive choices (``SO3`` and ``so3``)."""
    return text.lower()


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
