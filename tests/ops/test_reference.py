"""The torch reference against scipy's cKDTree and hand-computed cases (it *is* the spec)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ops_helpers import gaussian, lattice

from pointlib.ops import reference as ref


def test_knn_matches_ckdtree():
    spatial = pytest.importorskip("scipy.spatial")
    pts = gaussian(2, 1000, 0, dtype=torch.float64)
    qry = gaussian(2, 300, 1, dtype=torch.float64)
    idx, d2 = ref.knn(pts, qry, 16)
    for b in range(2):
        dist, want = spatial.cKDTree(pts[b].numpy()).query(qry[b].numpy(), k=16)
        np.testing.assert_array_equal(idx[b].numpy(), want)  # generic points: no ties
        np.testing.assert_allclose(d2[b].numpy(), dist**2, rtol=1e-12, atol=1e-12)


def test_ball_query_matches_ckdtree():
    spatial = pytest.importorskip("scipy.spatial")
    pts = gaussian(1, 1000, 2, dtype=torch.float64)
    qry = gaussian(1, 200, 3, dtype=torch.float64)
    r, ns = 0.4, 2000
    out = ref.ball_query(pts, qry, r, ns)[0]
    tree = spatial.cKDTree(pts[0].numpy())
    for m, members in enumerate(tree.query_ball_point(qry[0].numpy(), r)):
        members = sorted(members)
        if members:
            assert out[m, : len(members)].tolist() == members
            assert (out[m, len(members) :] == members[0]).all()
        else:
            assert (out[m] == tree.query(qry[0, m].numpy())[1]).all()


def test_knn_hand_case():
    pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [1, 1, 0]]])
    idx, d2 = ref.knn(pts, pts, 3)
    assert idx[0].tolist() == [[0, 1, 3], [1, 0, 3], [2, 1, 3], [3, 1, 0]]
    assert d2[0].tolist() == [[0, 1, 2], [0, 1, 1], [0, 4, 5], [0, 1, 2]]


def test_knn_ties_lower_index_first():
    # the query sits at the centre of a square: four equal distances
    pts = torch.tensor([[[1.0, 1, 0], [-1, 1, 0], [1, -1, 0], [-1, -1, 0], [5, 5, 5]]])
    idx, d2 = ref.knn(pts, torch.zeros(1, 1, 3), 5)
    assert idx[0, 0].tolist() == [0, 1, 2, 3, 4]
    assert d2[0, 0].tolist() == [2, 2, 2, 2, 75]


def test_ball_query_strict_boundary_and_padding():
    pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0.5, 0, 0], [0, 2, 0]]])
    q = torch.tensor([[[0.0, 0, 0], [0, 5, 0]]])
    out = ref.ball_query(pts, q, 1.0, 4)
    # point 1 lies exactly on the sphere: excluded (strict); pad with the first member
    assert out[0, 0].tolist() == [0, 2, 0, 0]
    # empty ball: filled with the nearest point (index 3 at distance 3)
    assert out[0, 1].tolist() == [3, 3, 3, 3]


def test_ball_query_empty_ball_nearest_tie_lowest_index():
    pts = torch.tensor([[[2.0, 0, 0], [0, 2, 0], [-2, 0, 0]]])
    out = ref.ball_query(pts, torch.zeros(1, 1, 3), 1.0, 2)
    assert out.tolist() == [[[0, 0]]]


def test_fps_hand_case_and_ties():
    pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [2, 0, 0]]])
    assert ref.fps(pts, 4).tolist() == [[0, 2, 3, 1]]
    # a square: from 0 the opposite corner 3 is farthest; then 1 and 2 tie -> 1
    sq = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]])
    assert ref.fps(sq, 4).tolist() == [[0, 3, 1, 2]]
    assert ref.fps(sq, 2, start=2).tolist() == [[2, 1]]


def test_fps_duplicates_repeat_index_zero():
    pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0]]])
    assert ref.fps(pts, 4).tolist() == [[0, 1, 0, 0]]


def test_lattice_knn_is_exact_stable_sort():
    pts = lattice(1, 50, 0, side=3)
    idx, _ = ref.knn(pts, pts, 50)
    for m in range(50):
        key = sorted(range(50), key=lambda j: (float(((pts[0, m] - pts[0, j]) ** 2).sum()), j))
        assert idx[0, m].tolist() == key


def test_chunking_does_not_change_results(monkeypatch):
    pts, q = gaussian(2, 300, 4), gaussian(2, 77, 5)
    full = ref.knn(pts, q, 9), ref.ball_query(pts, q, 0.5, 7)
    monkeypatch.setattr(ref, "CHUNK_ELEMS", 1000)
    small = ref.knn(pts, q, 9), ref.ball_query(pts, q, 0.5, 7)
    assert torch.equal(full[0][0], small[0][0]) and torch.equal(full[0][1], small[0][1])
    assert torch.equal(full[1], small[1])
