"""The compiled CPU kernels give the reference's exact output with several intra-op threads.

The test suite runs one thread per xdist worker, so this test raises the thread count itself: the
kernels parallelise over clouds and query blocks with at::parallel_for (OpenMP).
"""

from __future__ import annotations

import pytest
import torch

from pointlib import _ext
from pointlib.ops import ball_query, fps, knn
from pointlib.testing import make_cloud

pytestmark = pytest.mark.skipif(not _ext.HAS_CPU_EXT, reason="CPU extension not built")


@pytest.fixture
def four_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multithreaded_kernels_match_reference(four_threads, dtype):
    g = torch.Generator().manual_seed(7)
    xyz, _ = make_cloud(6, 700, generator=g, dtype=dtype)
    lattice = torch.randint(0, 6, (6, 700, 3), generator=g).to(dtype)  # exact ties
    for pts in (xyz, lattice):
        for k in (1, 16, 64):
            a = knn(pts, k, backend="cpu")
            b = knn(pts, k, backend="torch")
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(
            ball_query(pts, 1.5, 32, backend="cpu"), ball_query(pts, 1.5, 32, backend="torch")
        )
        assert torch.equal(fps(pts, 200, backend="cpu"), fps(pts, 200, backend="torch"))
