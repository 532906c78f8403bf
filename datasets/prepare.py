#!/usr/bin/env python
"""Build a dataset's preprocessed cache once and report what was loaded.

``python datasets/prepare.py NAME --root FOLDER [--num-points N] [--split train test]``
(extra loader options as ``--opt key=value``, e.g. ``--opt variant=OBJ_BG``).
"""

from __future__ import annotations

import argparse
import ast
import sys
import time

from pointlib.datasets import DATASETS, DatasetError, get_dataset


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("name", choices=sorted(DATASETS))
    p.add_argument("--root", default=None, help="the dataset folder as released")
    p.add_argument("--split", nargs="+", default=None)
    p.add_argument("--num-points", type=int, default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--opt", action="append", default=[], help="key=value loader option")
    a = p.parse_args(argv)
    kw = dict(kv.split("=", 1) for kv in a.opt)
    kw = {k: _value(v) for k, v in kw.items()}
    if a.num_points:
        kw["num_points"] = a.num_points
    if a.cache_dir:
        kw["cache_dir"] = a.cache_dir
    splits = a.split or (["trainval", "test"] if a.name == "shapenetpart" else ["train", "test"])
    for split in splits:
        t = time.perf_counter()
        try:
            ds = get_dataset(a.name, a.root, split, **kw)
        except (DatasetError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{ds}  [{time.perf_counter() - t:.1f}s, cache: {ds.cache_path}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
