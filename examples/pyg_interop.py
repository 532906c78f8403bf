"""pointlib <-> torch-geometric: batches, graphs from pointlib's ops, and a PyG layer on top.

Run: ``python examples/pyg_interop.py`` (uses the real ModelNet40 mini when it is found, else a
synthetic cloud; needs torch-geometric, but not torch-cluster or pyg-lib).
"""

from __future__ import annotations

import torch

from pointlib import transforms as T
from pointlib.interop import from_pyg, knn_graph, radius_graph, to_pyg
from pointlib.io import read_point_cloud
from pointlib.testing import data_root, make_cloud


def load_batch(num_points: int = 512) -> dict[str, torch.Tensor]:
    """Three clouds ``(3, N, 3)`` with normals: real ModelNet40 shapes when available."""
    root = data_root()
    shapes = ["airplane/airplane_0001", "bathtub/bathtub_0001", "airplane/airplane_0002"]
    if root is not None:
        mini = root / "modelnet40_normal_resampled_mini"
        items = [read_point_cloud(mini / f"{s}.txt") for s in shapes]
        xyz = torch.stack([it["xyz"][:num_points] for it in items])
        normals = torch.stack([it["normals"][:num_points] for it in items])
        print(f"loaded {len(items)} real ModelNet40 shapes from {mini}")
    else:
        xyz, normals = make_cloud(3, num_points, generator=torch.Generator().manual_seed(0))
        print("real data not found; using synthetic clouds")
    return {"xyz": xyz, "normals": normals, "label": torch.tensor([0, 1, 0])}


def main() -> None:
    g = torch.Generator().manual_seed(0)
    augment = T.Compose([T.NormalizeUnitSphere(), T.RandomRotation("so3"), T.RandomScale()])
    batch = augment(load_batch(), generator=g)

    data = to_pyg(batch)
    print(f"to_pyg: {data}")
    back = from_pyg(data)
    lossless = all(torch.equal(back[k], batch[k]) for k in batch)
    print(f"from_pyg round trip lossless: {lossless}; xyz {tuple(back['xyz'].shape)}")

    edge_index = knn_graph(data.pos, k=16, batch=data.batch)
    crossing = bool((data.batch[edge_index[0]] != data.batch[edge_index[1]]).any())
    print(f"knn_graph (pointlib ops): edge_index {tuple(edge_index.shape)}, crossing: {crossing}")
    ball = radius_graph(data.pos, r=0.2, batch=data.batch, max_num_neighbors=32)
    degree = torch.bincount(ball[1], minlength=data.num_nodes).float()
    print(f"radius_graph r=0.2: {ball.shape[1]} edges, mean degree {degree.mean():.1f}")

    from torch_geometric.nn import PointNetConv, global_max_pool

    torch.manual_seed(0)
    conv = PointNetConv(
        local_nn=torch.nn.Sequential(torch.nn.Linear(3 + 3, 32), torch.nn.ReLU()),
        global_nn=torch.nn.Linear(32, 64),
    )
    feats = conv(data.x, data.pos, edge_index)  # normals as input features
    pooled = global_max_pool(feats, data.batch)
    print(f"PyG PointNetConv on it: nodes {tuple(feats.shape)} -> clouds {tuple(pooled.shape)}")

    try:
        from torch_geometric.nn import knn_graph as pyg_knn_graph

        theirs = pyg_knn_graph(data.pos, k=16, batch=data.batch)
    except ImportError:
        print("(PyG's own knn_graph needs torch-cluster or pyg-lib; skipped the comparison)")
        return
    same = set(map(tuple, edge_index.t().tolist())) == set(map(tuple, theirs.t().tolist()))
    print(f"same edge set as torch_geometric.nn.knn_graph: {same}")


if __name__ == "__main__":
    main()
