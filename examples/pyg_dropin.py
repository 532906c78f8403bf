"""torch-geometric on pointlib's kernels: install the ``torch_cluster`` drop-in, then use PyG.

    python examples/pyg_dropin.py

Builds a kNN graph and a radius graph with PyG's transforms and runs a ``DynamicEdgeConv``
(kNN in a 16-D feature space) on a ragged batch of three clouds, all through
``pointlib.interop.torch_cluster``; no torch-cluster or pyg-lib needed.
"""

from __future__ import annotations

import torch

import pointlib.interop.torch_cluster as tc

tc.install()  # before or after importing torch_geometric

from torch_geometric.data import Batch, Data  # noqa: E402
from torch_geometric.nn import DynamicEdgeConv  # noqa: E402
from torch_geometric.transforms import KNNGraph, RadiusGraph  # noqa: E402


def main() -> None:
    g = torch.Generator().manual_seed(0)
    clouds = [Data(pos=torch.randn(n, 3, generator=g)) for n in (700, 1000, 1300)]
    batch = Batch.from_data_list([KNNGraph(k=16)(c) for c in clouds])
    print("knn graph edges:", tuple(batch.edge_index.shape))  # (2, 3000 * 16)
    radius = RadiusGraph(r=0.3, max_num_neighbors=32)(Data(pos=clouds[0].pos))
    print("radius graph edges:", tuple(radius.edge_index.shape))
    conv = DynamicEdgeConv(torch.nn.Linear(2 * 16, 32), k=20)
    x = torch.randn(batch.num_nodes, 16, generator=g)
    out = conv(x, batch.batch)  # kNN on 16-D features, per graph, in pointlib's kernels
    print("DynamicEdgeConv output:", tuple(out.shape))


if __name__ == "__main__":
    main()
