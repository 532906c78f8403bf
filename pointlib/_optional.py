"""Optional third-party packages, imported lazily with an actionable error when missing."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

_HINTS = {
    "h5py": "pip install h5py",
    "torch_geometric": "pip install 'torch-geometric<2.8'",
    "trimesh": "pip install trimesh",
    "open3d": "pip install open3d-cpu (Linux x86-64) or open3d",
    "scipy": "pip install scipy",
    "torch_cluster": "pip install --no-build-isolation torch-cluster (after torch)",
    "matplotlib": "pip install matplotlib",
    "yaml": "pip install pyyaml",
    "tqdm": "pip install tqdm",
    "timm": "pip install timm (with torch pinned: PIP_CONSTRAINT=constraints.txt)",
}


def has(name: str) -> bool:
    """Whether ``name`` is importable, without importing it."""
    return importlib.util.find_spec(name) is not None


def require(name: str, purpose: str = "") -> ModuleType:
    """Import ``name`` or raise ``ImportError`` saying what needs it and how to install it."""
    if name == "open3d":
        return import_open3d(purpose)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise ImportError(
            f"{name} is needed{what} but is not installed: "
            f"{_HINTS.get(name, 'pip install ' + name)}"
        ) from exc


def import_open3d(purpose: str = "") -> ModuleType:
    """Import open3d, first preloading ``libusb-1.0`` from the ``libusb-package`` wheel if needed.

    open3d 0.20 wheels link against ``libusb-1.0.so.0``, which minimal Linux images lack; the PyPI
    package ``libusb-package`` ships that library, and loading it globally first satisfies open3d.
    """
    try:
        return importlib.import_module("open3d")
    except ImportError as first:
        if "libusb" not in str(first):
            what = f" for {purpose}" if purpose else ""
            raise ImportError(f"open3d is needed{what}: {_HINTS['open3d']}") from first
    import ctypes

    try:
        import libusb_package

        path = libusb_package.get_library_path()
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except Exception as exc:
        raise ImportError(
            "open3d needs libusb-1.0.so.0: `pip install libusb-package` or "
            "`apt-get install libusb-1.0-0`"
        ) from exc
    return importlib.import_module("open3d")
