#!/usr/bin/env python
"""Download and extract a benchmark: ``python datasets/download.py NAME --root DIR``."""

from __future__ import annotations

import argparse
import sys

from pointlib.datasets.download import ALIASES, RESOURCES, DownloadError, download


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("name", choices=sorted(RESOURCES) + sorted(ALIASES))
    p.add_argument("--root", required=True, help="parent folder for the extracted data")
    p.add_argument("--url", help="mirror or file:// URL overriding the default")
    p.add_argument("--md5", help="expected md5 of the archive")
    p.add_argument("--force", action="store_true", help="replace an existing folder")
    p.add_argument("--keep-archive", action="store_true")
    a = p.parse_args(argv)
    try:
        out = download(
            a.name, a.root, url=a.url, md5=a.md5, force=a.force, keep_archive=a.keep_archive
        )
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
