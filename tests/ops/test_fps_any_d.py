"""Dense ``fps`` for any feature dimension D and for float16/bfloat16 inputs.

The reference is checked against the greedy definition written out here; every compiled backend
must return the reference's indices exactly (D != 3 runs on the ragged kernel, one graph per
cloud).
"""

from __future__ import annotations

import pytest
import torch
from ops_helpers import cpu_backends

import pointlib.ops as ops
from pointlib.ops import BackendUnavailableError

BACKENDS = ["torch", *cpu_backends("fps")]


def _greedy(points: torch.Tensor, npoint: int, start: int) -> list[list[int]]:
    """FPS by its definition, in float64 Python loops: farthest from the chosen set, ties low."""
    out = []
    for cloud in points.double():
        chosen = [start]
        mind = ((cloud - cloud[start]) ** 2).sum(-1)
        for _ in range(npoint - 1):
            best = int(torch.nonzero(mind == mind.max())[0])  # lowest index among the maxima
            chosen.append(best)
            mind = torch.minimum(mind, ((cloud - cloud[best]) ** 2).sum(-1))
        out.append(chosen)
    return out


@pytest.mark.parametrize("D", [1, 2, 5, 16])
def test_reference_is_the_greedy_definition(D):
    # integer coordinates: exact distances in every dtype, so ties are real ties
    pts = torch.randint(0, 3, (2, 60, D), generator=torch.Generator().manual_seed(D)).double()
    got = ops.fps(pts, 40, start=3, backend="torch")
    assert got.tolist() == _greedy(pts, 40, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [1, 2, 7, 64, 65])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backends_match_reference_any_d(backend, D, dtype):
    g = torch.Generator().manual_seed(100 + D)
    pts = torch.randn(3, 257, D, generator=g, dtype=torch.float64).to(dtype)
    start = 0 if backend == "torch_cluster" else 5  # torch-cluster always starts at 0
    want = ops.fps(pts, 64, start=start, backend="torch")
    got = ops.fps(pts, 64, start=start, backend=backend)
    assert got.dtype == torch.int64 and got.shape == (3, 64)
    assert torch.equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_go_to_the_lowest_index_in_2d(backend):
    side = torch.arange(6, dtype=torch.float32)
    grid = torch.cartesian_prod(side, side)[None]  # (1, 36, 2): many exactly tied distances
    got = ops.fps(grid, 36, backend=backend)
    assert got.tolist() == _greedy(grid, 36, 0)
    assert sorted(got[0].tolist()) == list(range(36))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("D", [3, 6])
def test_half_inputs_are_computed_in_float32(backend, dtype, D):
    pts = torch.randn(2, 128, D, generator=torch.Generator().manual_seed(7)).to(dtype)
    got = ops.fps(pts, 32, backend=backend)
    assert torch.equal(got, ops.fps(pts.float(), 32, backend="torch"))


def test_tie_tolerance_with_d_not_3_needs_the_reference():
    pts = torch.randn(1, 50, 4, generator=torch.Generator().manual_seed(1))
    auto = ops.fps(pts, 10, tie_rtol=1e-3)  # auto falls back to the reference
    assert torch.equal(auto, ops.fps(pts, 10, tie_rtol=1e-3, backend="torch"))
    for backend in cpu_backends("fps"):
        if backend == "torch_cluster":
            continue
        with pytest.raises(BackendUnavailableError, match=r"D=4 and tie_rtol > 0.*torch backend"):
            ops.fps(pts, 10, tie_rtol=1e-3, backend=backend)
