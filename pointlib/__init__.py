"""pointlib: rotation-invariant point-cloud deep learning.

Importing ``pointlib`` never needs the compiled extension, a GPU, torch-geometric, h5py or open3d:
optional pieces are probed lazily and explained when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from pointlib import geometry, ops

__all__ = ["__version__", "geometry", "ops"]
