"""The reference kNN's topk-based selection equals its definition (a full stable sort)."""

from __future__ import annotations

import pytest
import torch

from pointlib.ops import reference


@pytest.mark.parametrize("lattice", [False, True])
def test_smallest_k_equals_stable_sort(lattice):
    g = torch.Generator().manual_seed(3)
    for _ in range(60):
        B = int(torch.randint(1, 3, (1,), generator=g))
        N = int(torch.randint(65, 200, (1,), generator=g))  # > 64 takes the topk path
        k = int(torch.randint(1, N + 1, (1,), generator=g))
        if lattice:  # integer coordinates: many exact ties, also at the k-th position
            pts = torch.randint(0, 3, (B, N, 3), generator=g).to(torch.float64)
        else:
            pts = torch.randn(B, N, 3, generator=g)
        d2 = reference.sqdist(pts, pts)
        idx, vals = reference._smallest_k(d2, k)
        want_vals, want_idx = torch.sort(d2, dim=-1, stable=True)
        assert torch.equal(idx, want_idx[..., :k])
        assert torch.equal(vals, want_vals[..., :k])


def test_boundary_tie_takes_lower_indices():
    # 100 points at distance 1, 10 closer ones: k=15 must take indices 0..4 of the tie
    far = torch.zeros(100, 3)
    far[:, 0] = 1.0
    near = torch.zeros(10, 3)
    near[:, 1] = 0.5
    pts = torch.cat([far, near])[None]
    q = torch.zeros(1, 1, 3)
    idx, d2 = reference.knn(pts, q, 15)
    assert idx[0, 0].tolist() == [*range(100, 110), 0, 1, 2, 3, 4]
    assert d2[0, 0, -1].item() == 1.0
