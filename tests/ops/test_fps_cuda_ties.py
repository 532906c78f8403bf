"""``fps(tie_break="cuda")``: the official pointops CUDA kernel's tie rule, for faithful mode.

Checked against a hand-worked case and against a literal emulation of the kernel's loops (one
block per cloud, strided thread scans, the shared-memory tree reduction that keeps the left
operand on ties), on clouds full of exact ties.
"""

from __future__ import annotations

import pytest
import torch
from ops_helpers import cpu_backends

import pointlib.ops as ops
from pointlib.ops.reference import cuda_fps_tie_keys


def _line(xs: list[float]) -> torch.Tensor:
    x = torch.tensor(xs)
    return torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1)[None]


def test_hand_worked_case():
    # From point 0, points 3 (x = 1) and 5 (x = -1) are tied at distance 1. Block size 8: thread
    # 3 (bits 011) and thread 5 (101); the reduction compares 1 with 5 (s=4: 5's value moves to
    # slot 1), then slot 1 with slot 3 (s=2: tie, the left one, i.e. index 5, stays).
    pts = _line([0, 0.1, 0.2, 1, 0.3, -1, 0.4, 0.5])
    assert ops.fps(pts, 4).tolist() == [[0, 3, 5, 7]]  # the contract: lowest index
    assert ops.fps(pts, 4, tie_break="cuda").tolist() == [[0, 5, 3, 7]]


def test_keys_follow_the_block_size():
    assert cuda_fps_tie_keys(8).tolist() == [0, 33, 18, 51, 12, 45, 30, 63]  # bitrev * 8 + k
    # N = 12: block of 8 threads, index 8 runs on thread 0 and beats index 3 (thread 3 -> 110)
    pts = _line([0, 0.1, 0.2, 2, 0.3, 0.4, 0.5, 0.6, -2, 0.7, 0.8, 0.9])
    assert ops.fps(pts, 3).tolist() == [[0, 3, 8]]
    assert ops.fps(pts, 3, tie_break="cuda").tolist() == [[0, 8, 3]]
    big = cuda_fps_tie_keys(5000)  # capped at 1024 threads: index 1024 runs on thread 0
    assert int(big[1024]) < int(big[1])


def _kernel(cloud: torch.Tensor, m: int) -> list[int]:
    """The pointops FPS kernel written out: one block, bs threads, strided scans, reduction."""
    N = cloud.shape[0]
    bs = min(1 << (N.bit_length() - 1), 1024)
    temp = torch.full((N,), 1e10, dtype=cloud.dtype)
    old, out = 0, [0]
    for _ in range(1, m):
        d = ((cloud - cloud[old]) ** 2).sum(-1)
        temp = torch.minimum(temp, d)
        vals, idxs = [], []
        for t in range(bs):
            best, besti = -1.0, 0
            for k in range(t, N, bs):
                if float(temp[k]) > best:
                    best, besti = float(temp[k]), k
            vals.append(best)
            idxs.append(besti)
        s = bs // 2
        while s >= 1:
            for t in range(s):
                if vals[t + s] > vals[t]:
                    vals[t], idxs[t] = vals[t + s], idxs[t + s]
            s //= 2
        old = idxs[0]
        out.append(old)
    return out


@pytest.mark.parametrize("N", [8, 27, 64, 100])
def test_equals_a_literal_emulation_of_the_kernel(N):
    g = torch.Generator().manual_seed(N)
    pts = torch.randint(-2, 3, (2, N, 3), generator=g).double()  # integer lattice: exact ties
    got = ops.fps(pts, N, tie_break="cuda")
    assert got.tolist() == [_kernel(c, N) for c in pts]
    assert not torch.equal(got, ops.fps(pts, N))  # the rules really differ on these clouds


def test_bad_combinations_are_refused():
    pts = _line([0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="tie_break must be 'lowest' or 'cuda'"):
        ops.fps(pts, 2, tie_break="random")
    with pytest.raises(ValueError, match="exact ties only"):
        ops.fps(pts, 2, tie_break="cuda", tie_rtol=1e-4)
    with pytest.raises(ValueError, match="unknown backend"):
        ops.fps(pts, 2, tie_break="cuda", backend="nope")


@pytest.mark.parametrize("backend", ["torch", *cpu_backends("fps")])
@pytest.mark.parametrize("N", [64, 1000, 3000])
def test_every_backend_equals_the_reference_definition(backend, N):
    """The fast path (lowest-index FPS on the points permuted into key order) is exactly the
    reference's loop over keys, on clouds full of ties, with and without a start index."""
    from pointlib.ops.reference import fps_cuda_ties

    g = torch.Generator().manual_seed(N)
    pts = torch.randint(-3, 4, (2, N, 3), generator=g).float()
    start = 0 if backend == "torch_cluster" else 7
    m = min(N, 200)
    want = fps_cuda_ties(pts, m, start)
    assert torch.equal(ops.fps(pts, m, start=start, tie_break="cuda", backend=backend), want)
