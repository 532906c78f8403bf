from __future__ import annotations

import numpy as np
import pytest
import torch

from pointlib.datasets._points import load_sampled, read_txt_points, sample_indices
from pointlib.datasets.base import DatasetError
from pointlib.ops import fps


def _clouds(sizes):
    rng = np.random.default_rng(0)
    return [rng.normal(size=(n, 6)).astype(np.float32) for n in sizes]


@pytest.mark.parametrize("method", ["fps", "first", "random"])
def test_chunked_equals_whole(method):
    clouds = _clouds([40, 25, 12, 33, 40])  # mixed sizes; 12 < 16 is padded
    with pytest.warns(RuntimeWarning, match="fewer than 16"):
        whole = load_sampled(lambda i: clouds[i], 5, 16, method, 3, list("abcde"), chunk=256)
    with pytest.warns(RuntimeWarning):
        chunked = load_sampled(lambda i: clouds[i], 5, 16, method, 3, list("abcde"), chunk=2)
    np.testing.assert_array_equal(whole, chunked)
    assert whole.shape == (5, 16, 6)


def test_fps_padding_matches_single_cloud_fps():
    clouds = _clouds([50, 20, 35])
    idx = sample_indices(clouds, 20, "fps", 0)
    for c, i in zip(clouds, idx):
        ref = fps(torch.from_numpy(c[None, :, :3].copy()), 20)[0].numpy()
        np.testing.assert_array_equal(i, ref)


def test_random_is_seeded_without_replacement():
    clouds = _clouds([30])
    a = sample_indices(clouds, 10, "random", 1)
    assert np.array_equal(a, sample_indices(clouds, 10, "random", 1))
    assert not np.array_equal(a, sample_indices(clouds, 10, "random", 2))
    assert len(set(a[0].tolist())) == 10 and (np.diff(a[0]) > 0).all()
    with pytest.raises(ValueError, match="sampling must be one of"):
        sample_indices(clouds, 10, "poisson", 0)


def test_txt_reader_errors(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("")
    with pytest.raises(DatasetError, match=r"s\.txt: empty"):
        read_txt_points(f, 6)
    f.write_text("1 2 3\n4 5 6\n")
    with pytest.raises(DatasetError, match=r"s\.txt: line 1 has 3 values, expected 6"):
        read_txt_points(f, 6)
    f.write_text("nan 1 2\n")
    with pytest.raises(DatasetError, match="every row contains NaN"):
        read_txt_points(f, 3)
    with pytest.raises(DatasetError, match="missing"):
        read_txt_points(tmp_path / "none.txt", 3)
