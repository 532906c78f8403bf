from __future__ import annotations

import numpy as np
import pytest

import pointlib.datasets.cache as cache_mod
from pointlib.datasets import ModelNet40
from pointlib.datasets import _points as points_mod
from pointlib.datasets.cache import atomic_write_npz, cached_arrays, read_npz


def test_cache_reused_then_invalidated(modelnet_txt, cache, monkeypatch):
    a = ModelNet40(modelnet_txt, "train", 16, cache_dir=cache)
    assert a.cache_path is not None and a.cache_path.exists()

    def boom(*args, **kwargs):
        raise AssertionError("source files were re-read")

    with monkeypatch.context() as m:  # second load comes from the cache
        m.setattr(points_mod, "read_txt_points", boom)
        m.setattr("pointlib.datasets.modelnet.read_txt_points", boom)
        b = ModelNet40(modelnet_txt, "train", 16, cache_dir=cache)
    assert np.array_equal(a._xyz, b._xyz) and b.cache_path == a.cache_path
    # other settings -> another cache file
    c = ModelNet40(modelnet_txt, "train", 24, cache_dir=cache)
    assert c.cache_path != a.cache_path and c._xyz.shape[1] == 24
    d = ModelNet40(modelnet_txt, "train", 16, sampling="first", cache_dir=cache)
    assert d.cache_path != a.cache_path
    # changed source file -> same cache path rebuilt with the new data
    f = modelnet_txt / "airplane" / "airplane_0001.txt"
    rows = np.loadtxt(f, delimiter=",")
    rows[:, :3] *= 2
    np.savetxt(f, rows, fmt="%.6f", delimiter=",")
    e = ModelNet40(modelnet_txt, "train", 16, normalize=False, cache_dir=cache)
    assert e.cache_path == a.cache_path
    assert not np.allclose(e._xyz[0], a._xyz[0])


def test_crash_mid_write_leaves_no_partial_file(modelnet_txt, cache, monkeypatch):
    def crash(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # e.g. the process is killed while writing

    monkeypatch.setattr(cache_mod.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        ModelNet40(modelnet_txt, "train", 16, cache_dir=cache)
    assert list(cache.iterdir()) == []  # neither the cache nor its temp file
    monkeypatch.undo()
    ds = ModelNet40(modelnet_txt, "train", 16, cache_dir=cache)
    assert len(ds) == 6 and [p.suffix for p in cache.iterdir()] == [".npz"]


def test_atomic_replace_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.npz"
    atomic_write_npz(path, {"a": np.arange(3)}, {"k": 1})
    monkeypatch.setattr(cache_mod.np, "savez", lambda fh, **kw: (_ for _ in ()).throw(OSError()))
    with pytest.raises(OSError):
        atomic_write_npz(path, {"a": np.arange(5)}, {"k": 2})
    arrays, meta = read_npz(path)
    assert arrays["a"].tolist() == [0, 1, 2] and meta == {"k": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_corrupt_cache_is_rebuilt(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"a": np.ones(2)}

    _, path = cached_arrays(tmp_path, "s", {"n": 1}, "fp", build)
    path.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable cache"):
        arrays, _ = cached_arrays(tmp_path, "s", {"n": 1}, "fp", build)
    assert len(calls) == 2 and arrays["a"].tolist() == [1.0, 1.0]
    cached_arrays(tmp_path, "s", {"n": 1}, "fp", build)
    assert len(calls) == 2
