"""Interop with other point-cloud libraries (torch-geometric), imported lazily.

``import pointlib.interop`` never imports torch-geometric; :func:`to_pyg` / :func:`from_pyg` do,
on first use. The graph builders need only torch.
"""

from __future__ import annotations

from pointlib.interop.pyg import from_pyg, knn_graph, radius_graph, to_edge_index, to_pyg

__all__ = ["from_pyg", "knn_graph", "radius_graph", "to_edge_index", "to_pyg"]
