"""Point-cloud and mesh files.

================================  =================================================================
``read_point_cloud(path)``        ``.ply``, ``.pcd`` (open3d), ``.xyz``/``.txt`` (text), ``.npz``
``write_point_cloud(path, ...)``  the same formats, written atomically
``read_mesh(path)``               ``.off`` (ModelNet headers too), ``.obj``/``.ply``/``.stl``
``sample_mesh(mesh, N, seed=)``   area-weighted surface points with face normals
================================  =================================================================

Errors: a missing file raises ``FileNotFoundError``, an unknown suffix ``ValueError``, and a
corrupt or truncated file :class:`FileFormatError` (a ``ValueError``) whose message names the file.
"""

from __future__ import annotations

from pointlib.io.errors import FileFormatError
from pointlib.io.mesh import MESH_SUFFIXES, Mesh, read_mesh, sample_mesh
from pointlib.io.pointcloud import POINT_CLOUD_SUFFIXES, read_point_cloud, write_point_cloud

__all__ = [
    "MESH_SUFFIXES",
    "POINT_CLOUD_SUFFIXES",
    "FileFormatError",
    "Mesh",
    "read_mesh",
    "read_point_cloud",
    "sample_mesh",
    "write_point_cloud",
]
