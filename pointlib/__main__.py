"""``python -m pointlib ...`` is the ``pointlib`` command line."""

from __future__ import annotations

import sys

from pointlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
