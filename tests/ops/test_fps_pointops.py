"""``fps_pointops``: farthest point sampling with the pointops CUDA kernel's tie rule.

Hand-worked cases (exact float32 distances). With ``T`` threads (the largest power of two
``<= N``, at most 1024), point ``k`` is scanned by thread ``k mod T``; equal maxima go to the
thread whose id, bit-reversed over ``log2 T`` bits, is smallest, and inside a thread to the first
point it scans.
"""

from __future__ import annotations

import pytest
import torch

from pointlib import ops
from pointlib.ops.sampling import fps_pointops, pointops_threads, pointops_tie_rank


def test_thread_count_as_the_launcher():
    assert [pointops_threads(n) for n in (1, 2, 3, 8, 12, 1000, 1024, 2048, 5000)] == [
        1, 2, 2, 8, 8, 512, 1024, 1024, 1024,
    ]  # fmt: skip


def test_tie_rank_hand_worked():
    # N = 8: one point per thread; bit-reversed 3-bit ids 0 4 2 6 1 5 3 7
    assert pointops_tie_rank(8).tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    # N = 12: T = 8, threads 0..3 hold two points (k, k + 8): rank 2 bitrev(k mod 8) + k div 8
    assert pointops_tie_rank(12).tolist() == [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13]


def test_octahedron_all_ties():
    """Origin, the six unit axis points and one inner point: every step but the inner point's is
    a tie. Step 1: 1..6 tied at distance 1, thread 4 has bit-reversed id 1 -> 4 (the lowest-index
    rule takes 1). Step 2 (after (0,-1,0)): 1, 2, 3, 5, 6 still at 1 -> 2 (reversed 2). Then 6
    (3), 1 (4), 5 (5), 3 (6) and the inner point 7."""
    pts = torch.tensor(
        [[[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1],
          [0.5, 0, 0]]]
    )  # fmt: skip
    assert fps_pointops(pts, 8)[0].tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    assert ops.fps(pts, 8)[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]  # the lowest-index rule


def _cloud12(far: dict[int, float]) -> torch.Tensor:
    """12 points: ``far[k]`` puts point ``k`` at ``(far[k], 0, 0)`` (distance 1 from the origin
    for +-1), the others close to point 0 at distinct distances."""
    pts = torch.zeros(12, 3)
    for k in range(1, 12):
        pts[k, 1] = 0.01 * k
    for k, x in far.items():
        pts[k] = torch.tensor([x, 0.0, 0.0])
    return pts


def test_ties_across_and_inside_threads():
    """N = 12, T = 8. Points 3 and 8 tied: thread 0 (point 8) beats thread 3 (reversed 6) -> 8,
    then 3. Points 1 and 10 tied: thread 2 (reversed 2, point 10) beats thread 1 (reversed 4).
    Points 1 and 9 tied: the same thread 1, which meets 1 first -> 1."""
    pts = torch.stack(
        [_cloud12({3: 1.0, 8: -1.0}), _cloud12({1: 1.0, 10: -1.0}), _cloud12({1: 1.0, 9: -1.0})]
    )
    got = fps_pointops(pts, 3)
    assert got[:, :2].tolist() == [[0, 8], [0, 10], [0, 1]]
    assert got[:, 2].tolist() == [3, 1, 9]  # the other far point (distance 1, no tie) next
    assert ops.fps(pts, 2)[:, 1].tolist() == [3, 1, 1]  # lowest index: differs in two clouds


def test_equals_fps_without_ties(gen):
    pts = torch.randn(3, 300, 3, generator=gen, dtype=torch.float64)
    assert torch.equal(fps_pointops(pts, 64), ops.fps(pts, 64))
    assert torch.equal(fps_pointops(pts, 64, start=5), ops.fps(pts, 64, start=5))


def test_errors():
    with pytest.raises(ValueError, match="npoint"):
        fps_pointops(torch.zeros(1, 4, 3), 5)


def test_models_offer_the_rule():
    """``fps_ties="pointops"`` (a quirk switch, opt-in with ``faithful=True``) reaches the
    set-abstraction layers, whose centres are then the kernel's picks."""
    from pointlib.models import create_model
    from pointlib.nn import RISurConvSetAbstraction
    from pointlib.nn.quirks import Quirks

    pts = torch.tensor(
        [[[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1],
          [0.5, 0, 0]]]
    )  # fmt: skip
    nrm = torch.nn.functional.normalize(pts + torch.tensor([0.1, 0.2, 0.3]), dim=-1)
    for ties, want in (("pointops", [0, 4, 2, 6]), ("index", [0, 1, 2, 3])):
        sa = RISurConvSetAbstraction(4, 3, 0, 8, knn_order="unsorted", fps_ties=ties)
        centers = sa.group(pts, nrm)[0]
        assert torch.equal(centers, pts[:, want]), ties
    m = create_model("risurconv_cls_tiny", faithful=True, fps_ties="pointops", num_classes=3)
    assert m.quirks.fps_ties == "pointops"
    assert all(layer.fps_ties == "pointops" for layer in m.layers[:-1])
    assert create_model("risurconv_cls_tiny", faithful=True).quirks.fps_ties == "index"
    with pytest.raises(ValueError, match="fps_ties"):
        Quirks.resolve(True, fps_ties="lowest")
