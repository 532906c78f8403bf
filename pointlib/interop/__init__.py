"""Interop with other point-cloud libraries (torch-geometric), imported lazily.

``import pointlib.interop`` never imports torch-geometric; :func:`to_pyg` / :func:`from_pyg` do,
on first use. The graph builders need only torch.

:mod:`pointlib.interop.torch_cluster` (imported on demand) is a ``torch_cluster`` drop-in on
pointlib's kernels; ``pointlib.interop.torch_cluster.install()`` makes torch-geometric use it
(``docs/pyg.md``).
"""

from __future__ import annotations

from pointlib.interop.pyg import from_pyg, knn_graph, radius_graph, to_edge_index, to_pyg

__all__ = ["from_pyg", "knn_graph", "radius_graph", "to_edge_index", "to_pyg"]
