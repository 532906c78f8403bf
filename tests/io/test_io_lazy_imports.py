"""Importing pointlib.io / interop / transforms must not import open3d, trimesh or PyG."""

from __future__ import annotations

import subprocess
import sys


def test_optional_packages_are_imported_lazily():
    code = (
        "import sys, pointlib.io, pointlib.interop, pointlib.transforms; "
        "print(sorted(m for m in ('open3d', 'trimesh', 'torch_geometric') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
