"""torch-geometric interop: items/batches <-> ``Data``/``Batch``, and ``edge_index`` builders.

torch-geometric is imported lazily (only :func:`to_pyg` and :func:`from_pyg` need it). The graph
builders use pointlib's own :func:`~pointlib.ops.knn` / :func:`~pointlib.ops.ball_query`, so they
work without torch-cluster or pyg-lib (which PyG's own ``knn_graph`` / ``radius_graph`` need).

Key map (lossless both ways):

===============  ==========================  ==================================================
pointlib key     PyG attribute               level
===============  ==========================  ==================================================
``xyz``          ``pos``                     node ``(N, 3)``; a ``Batch`` stacks to ``(B*N, 3)``
``normals``      ``x``                       node ``(N, 3)``
``label``        ``y``                       graph; ``()`` per item, ``(B,)`` per batch
``parts``        ``parts``                   node ``(N,)`` segmentation labels
``category``     ``category``                graph, as ``label``
other tensors    same name                   node if the shape starts with ``N`` (``B, N``
                                             for a batch), else graph (``(B, ...)``)
===============  ==========================  ==================================================

Edge convention (PyG's, ``flow="source_to_target"``): ``edge_index[0]`` is the neighbour
(message source) and ``edge_index[1]`` the centre (target); ``"target_to_source"`` swaps the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from pointlib._optional import require
from pointlib.ops import ball_query, knn

if TYPE_CHECKING:  # pragma: no cover
    from torch_geometric.data import Batch, Data

__all__ = ["from_pyg", "knn_graph", "radius_graph", "to_edge_index", "to_pyg"]

Flow = Literal["source_to_target", "target_to_source"]

_TO_PYG = {"xyz": "pos", "normals": "x", "label": "y"}
_FROM_PYG = {v: k for k, v in _TO_PYG.items()}
_NODE_KEYS = ("pos", "x", "parts")


def _pyg() -> Any:
    return require("torch_geometric", "pointlib.interop.pyg")


# --------------------------------------------------------------------------------------------
# Data / Batch conversion


def to_pyg(item: Mapping[str, Any]) -> Data | Batch:
    """Convert an item or a batch dict to a PyG ``Data`` or ``Batch``.

    Args:
        item: ``{"xyz": (N, 3), ...}`` gives a ``Data``; ``{"xyz": (B, N, 3), ...}`` gives a
            ``Batch`` of ``B`` graphs of ``N`` nodes. Keys map as in the module table; non-tensor
            values (e.g. a shape id string) are kept per graph (a batch needs a sequence of ``B``).

    Returns:
        ``Data(pos (N, 3), x (N, 3)?, y ()?, parts (N,)?, ...)`` or the ``Batch`` of them.
    """
    if not isinstance(item, Mapping) or "xyz" not in item:
        keys = sorted(item) if isinstance(item, Mapping) else type(item).__name__
        raise ValueError(f"to_pyg: expected a dict with an 'xyz' tensor, got {keys}")
    xyz = item["xyz"]
    if not isinstance(xyz, Tensor) or xyz.dim() not in (2, 3) or xyz.shape[-1] != 3:
        shape = tuple(xyz.shape) if isinstance(xyz, Tensor) else type(xyz).__name__
        raise ValueError(f"to_pyg: 'xyz' must be (N, 3) or (B, N, 3), got {shape}")
    pyg = _pyg()
    if xyz.dim() == 2:
        return pyg.data.Data(**{_TO_PYG.get(k, k): v for k, v in item.items()})
    B, N = xyz.shape[:2]
    graphs = []
    for b in range(B):
        attrs: dict[str, Any] = {}
        for k, v in item.items():
            if isinstance(v, Tensor):
                if v.dim() == 0 or v.shape[0] != B:
                    raise ValueError(
                        f"to_pyg: batch key {k!r} has shape {tuple(v.shape)}; "
                        f"expected a leading batch dimension {B}"
                    )
                node_level = v.dim() >= 2 and v.shape[1] == N
                # graph-level vectors keep a leading 1 so that PyG collates them to (B, ...)
                attrs[_TO_PYG.get(k, k)] = v[b] if node_level or v.dim() == 1 else v[b : b + 1]
            elif isinstance(v, (list, tuple)) and len(v) == B:
                attrs[_TO_PYG.get(k, k)] = v[b]
            else:
                raise ValueError(
                    f"to_pyg: batch key {k!r} must be a tensor or a sequence of length {B}"
                )
        graphs.append(pyg.data.Data(**attrs))
    return pyg.data.Batch.from_data_list(graphs)


def from_pyg(data: Data | Batch, *, batched: bool | None = None) -> dict[str, Any]:
    """Convert a PyG ``Data`` / ``Batch`` back to a pointlib item or dense batch dict.

    Args:
        data: a ``Data`` (one cloud) or a ``Batch`` of clouds **of equal size**.
        batched: return ``(B, N, ...)`` tensors. ``None``: batched for a ``Batch``, item-shaped
            ``(N, ...)`` for a ``Data``; ``True`` on a ``Data`` gives ``B = 1``.
            (default: ``None``)

    Returns:
        ``{"xyz": (B, N, 3) | (N, 3), "normals"?, "label"?, "parts"?, ...}``: node-level
        attributes reshaped to ``(B, N, ...)``, graph-level ones as collated by PyG (``(B, ...)``).

    Raises:
        ValueError: no ``pos``, or a ragged batch (clouds of different sizes).
    """
    pyg = _pyg()
    if not isinstance(data, pyg.data.Data):
        raise TypeError(f"from_pyg: expected a torch_geometric Data/Batch, got {type(data)}")
    if getattr(data, "pos", None) is None:
        raise ValueError(f"from_pyg: the graph has no 'pos' (attributes: {sorted(data.keys())})")
    is_batch = isinstance(data, pyg.data.Batch)
    if batched is None:
        batched = is_batch
    pos: Tensor = data.pos
    num_nodes = pos.shape[0]
    if is_batch:
        B = int(data.num_graphs)
        counts = torch.bincount(data.batch, minlength=B) if B else data.batch.new_zeros(0)
        if B and not bool((counts == counts[0]).all()):
            sizes = counts.tolist()
            shown = sizes if len(sizes) <= 8 else [*sizes[:8], "..."]
            raise ValueError(
                f"from_pyg: ragged batch, cloud sizes {shown}; dense (B, N, 3) tensors need "
                "equal-size clouds (resample each cloud, e.g. with pointlib.ops.fps, first)"
            )
        if B and not bool((data.batch[1:] >= data.batch[:-1]).all()):
            raise ValueError(
                "from_pyg: batch vector is not sorted; nodes of a graph must be adjacent"
            )
        N = int(counts[0]) if B else 0
    else:
        B, N = 1, num_nodes
    skip = {"batch", "ptr"}
    out: dict[str, Any] = {}
    for key in data.keys():
        if key in skip:
            continue
        value = data[key]
        name = _FROM_PYG.get(key, key)
        node_level = isinstance(value, Tensor) and (
            key in _NODE_KEYS or (value.dim() >= 1 and _is_node_attr(data, key, num_nodes))
        )
        if node_level:
            dense = value.reshape(B, N, *value.shape[1:])
            out[name] = dense if batched else dense[0]
        elif is_batch or not batched:
            out[name] = value
        else:  # a single Data asked for batched output: add the batch dimension
            out[name] = value.unsqueeze(0) if isinstance(value, Tensor) else [value]
    return out


def _is_node_attr(data: Any, key: str, num_nodes: int) -> bool:
    try:
        return bool(data.is_node_attr(key))
    except (AttributeError, KeyError):  # pragma: no cover - old PyG
        return data[key].shape[0] == num_nodes


# --------------------------------------------------------------------------------------------
# edge_index builders


def to_edge_index(
    idx: Tensor,
    num_points: int | None = None,
    *,
    flow: Flow = "source_to_target",
) -> Tensor:
    """Dense neighbour indices ``(B, M, K)`` -> PyG ``edge_index (2, E)``.

    Centre ``m`` of cloud ``b`` becomes node ``b * M + m`` and neighbour ``idx[b, m, k]`` node
    ``b * num_points + idx[b, m, k]``; with ``num_points = M`` (the default, for ``knn(points, k)``
    on the points themselves) both live in one node set. Entries ``< 0`` are dropped (a ``-1``
    sentinel); edges are ordered by ``(b, m, k)``.

    Args:
        idx: ``(B, M, K)`` (or ``(M, K)``, taken as ``B = 1``) integer neighbour indices.
        num_points: N, points per cloud that ``idx`` indexes into. (default: ``M``)
        flow: ``"source_to_target"`` puts neighbours in row 0 and centres in row 1;
            ``"target_to_source"`` swaps them. (default: ``"source_to_target"``)

    Returns:
        ``edge_index (2, E)`` int64 with ``E = B * M * K`` minus the dropped entries.
    """
    if idx.dim() == 2:
        idx = idx.unsqueeze(0)
    if idx.dim() != 3 or idx.is_floating_point() or idx.is_complex():
        raise ValueError(
            f"to_edge_index: idx must be integer (B, M, K), got {tuple(idx.shape)} {idx.dtype}"
        )
    _check_flow(flow)
    B, M, K = idx.shape
    N = M if num_points is None else int(num_points)
    idx = idx.long()
    if idx.numel() and int(idx.max()) >= N:
        raise ValueError(
            f"to_edge_index: neighbour index {int(idx.max())} out of range for num_points={N}"
        )
    b = torch.arange(B, device=idx.device).view(B, 1, 1)
    centre = (b * M + torch.arange(M, device=idx.device).view(1, M, 1)).expand(B, M, K)
    source = idx + b * N
    valid = idx >= 0
    source, centre = source[valid], centre[valid]
    rows = (source, centre) if flow == "source_to_target" else (centre, source)
    return torch.stack(rows, 0)


def _check_flow(flow: str) -> None:
    if flow not in ("source_to_target", "target_to_source"):
        raise ValueError(f"flow must be 'source_to_target' or 'target_to_source', got {flow!r}")


def _groups(pos: Tensor, batch: Tensor | None, where: str) -> tuple[Tensor, list[Tensor]]:
    """Split ``pos`` into per-graph node index lists, or a dense ``(B, N, 3)`` fast path.

    Returns ``(dense, [])`` for dense input / equal-size sorted batches, else ``(pos, groups)``.
    """
    if pos.dim() == 3:
        if batch is not None:
            raise ValueError(
                f"{where}: pass either dense pos (B, N, 3) or a batch vector, not both"
            )
        if pos.shape[-1] != 3:
            raise ValueError(f"{where}: pos must be (B, N, 3), got {tuple(pos.shape)}")
        return pos, []
    if pos.dim() != 2 or pos.shape[-1] != 3:
        raise ValueError(f"{where}: pos must be (N, 3) or (B, N, 3), got {tuple(pos.shape)}")
    if batch is None:
        return pos.unsqueeze(0), []
    if batch.shape != pos.shape[:1] or batch.is_floating_point():
        raise ValueError(
            f"{where}: batch must be an integer vector of shape ({pos.shape[0]},), "
            f"got {tuple(batch.shape)} {batch.dtype}"
        )
    if batch.numel() and int(batch.min()) < 0:
        raise ValueError(f"{where}: batch holds negative graph ids")
    batch = batch.long()
    counts = torch.bincount(batch) if batch.numel() else batch.new_zeros(0)
    present = counts[counts > 0]
    is_sorted = bool((batch[1:] >= batch[:-1]).all()) if batch.numel() > 1 else True
    if is_sorted and present.numel() and bool((present == present[0]).all()):
        return pos.reshape(present.numel(), int(present[0]), 3), []
    order = torch.argsort(batch, stable=True)
    groups = list(torch.split(order, present.tolist()))
    return pos, groups


def _select_non_self(idx: Tensor, self_idx: Tensor, keep: int, valid: Tensor) -> Tensor:
    """Per row, the first ``keep`` entries of ``idx`` that are valid and not ``self_idx``;
    missing slots are ``-1``."""
    ok = valid & (idx != self_idx)
    order = torch.argsort((~ok).to(torch.int8), dim=-1, stable=True)[..., :keep]
    picked = idx.gather(-1, order)
    return torch.where(ok.gather(-1, order), picked, torch.full_like(picked, -1))


def knn_graph(
    pos: Tensor,
    k: int,
    batch: Tensor | None = None,
    loop: bool = False,
    flow: Flow = "source_to_target",
) -> Tensor:
    """k-nearest-neighbour graph as a PyG ``edge_index``, from :func:`pointlib.ops.knn`.

    Args:
        pos: ``(N, 3)`` nodes (with an optional ``batch`` vector) or dense ``(B, N, 3)`` clouds
            (node ``b * N + i``).
        k: neighbours per node (``>= 1``); a graph with fewer nodes gives each node all of them.
        batch: ``(N,)`` graph id per node (need not be sorted); edges never cross graphs.
            (default: ``None``)
        loop: include self-loops (each node is then its own nearest neighbour). (default: ``False``)
        flow: ``"source_to_target"``: ``edge_index[1]`` is the centre, ``edge_index[0]`` one of its
            ``k`` nearest neighbours. (default: ``"source_to_target"``)

    Returns:
        ``edge_index (2, E)`` int64, edges grouped by centre, neighbours by ascending distance
        (ties to the lower index), ``E = num_nodes * min(k, graph size [- 1])``.
    """
    _check_flow(flow)
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"knn_graph: k must be a positive integer, got {k!r}")
    dense, groups = _groups(pos, batch, "knn_graph")
    if not groups:
        return _dense_knn(dense, int(k), loop, flow)
    parts = [_dense_knn(pos[g].unsqueeze(0), int(k), loop, flow, nodes=g) for g in groups]
    return torch.cat(parts, 1) if parts else pos.new_zeros(2, 0, dtype=torch.long)


def _dense_knn(pos: Tensor, k: int, loop: bool, flow: Flow, nodes: Tensor | None = None) -> Tensor:
    N = pos.shape[1]
    if N == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    kq = min(k + (0 if loop else 1), N)
    idx, _ = knn(pos, kq)
    if not loop:
        self_idx = torch.arange(N, device=pos.device).view(1, N, 1)
        idx = _select_non_self(idx, self_idx, min(k, N - 1), torch.ones_like(idx, dtype=torch.bool))
    edge_index = to_edge_index(idx, N, flow=flow)
    return nodes[edge_index] if nodes is not None else edge_index


def radius_graph(
    pos: Tensor,
    r: float,
    batch: Tensor | None = None,
    loop: bool = False,
    max_num_neighbors: int = 32,
    flow: Flow = "source_to_target",
) -> Tensor:
    """Radius graph as a PyG ``edge_index``, from :func:`pointlib.ops.ball_query`.

    Args:
        pos: ``(N, 3)`` nodes (with an optional ``batch`` vector) or dense ``(B, N, 3)`` clouds.
        r: radius; membership is strict, ``|p_j - p_i|^2 < r^2`` (pointlib's ball-query rule).
        batch: ``(N,)`` graph id per node; edges never cross graphs. (default: ``None``)
        loop: include self-loops. (default: ``False``)
        max_num_neighbors: at most this many edges per centre, the self-loop included when
            ``loop`` (as in PyG); the neighbours kept are the **lowest-index** ones within ``r``
            (deterministic; torch-cluster keeps an unspecified subset). (default: ``32``)
        flow: as for :func:`knn_graph`. (default: ``"source_to_target"``)

    Returns:
        ``edge_index (2, E)`` int64, grouped by centre, neighbours in ascending index order.
    """
    _check_flow(flow)
    if isinstance(max_num_neighbors, bool) or int(max_num_neighbors) != max_num_neighbors:
        raise ValueError(
            f"radius_graph: max_num_neighbors must be an integer, got {max_num_neighbors!r}"
        )
    if max_num_neighbors < 1:
        raise ValueError(f"radius_graph: max_num_neighbors must be >= 1, got {max_num_neighbors}")
    dense, groups = _groups(pos, batch, "radius_graph")
    if not groups:
        return _dense_radius(dense, float(r), loop, int(max_num_neighbors), flow)
    parts = [
        _dense_radius(pos[g].unsqueeze(0), float(r), loop, int(max_num_neighbors), flow, nodes=g)
        for g in groups
    ]
    return torch.cat(parts, 1) if parts else pos.new_zeros(2, 0, dtype=torch.long)


def _dense_radius(
    pos: Tensor, r: float, loop: bool, max_nb: int, flow: Flow, nodes: Tensor | None = None
) -> Tensor:
    B, N, _ = pos.shape
    if N == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    nsample = max_nb + 1  # room for the self entry, which is always inside the ball
    idx = ball_query(pos, r, nsample)
    # members come in ascending index order and padding repeats the first member, so an entry is
    # a real member exactly when it is larger than the one before it
    valid = torch.ones_like(idx, dtype=torch.bool)
    valid[..., 1:] = idx[..., 1:] > idx[..., :-1]
    self_idx = torch.arange(N, device=pos.device).view(1, N, 1)
    if loop:
        # keep self plus the first max_nb - 1 other members (the self-loop counts, as in PyG)
        others = _select_non_self(idx, self_idx, max_nb - 1, valid)
        idx = torch.cat([self_idx.expand(B, N, 1), others], -1)
        idx = _sort_valid(idx)
    else:
        idx = _select_non_self(idx, self_idx, max_nb, valid)
    edge_index = to_edge_index(idx, N, flow=flow)
    return nodes[edge_index] if nodes is not None else edge_index


def _sort_valid(idx: Tensor) -> Tensor:
    """Sort each row ascending with ``-1`` entries moved to the end."""
    big = torch.iinfo(torch.long).max
    key = torch.where(idx < 0, torch.full_like(idx, big), idx).sort(-1).values
    return torch.where(key == big, torch.full_like(key, -1), key)
