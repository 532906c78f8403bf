"""download(): tested against a local HTTP server (with Range support) and file:// URLs only."""

from __future__ import annotations

import hashlib
import http.server
import importlib
import threading
import zipfile
from functools import partial
from pathlib import Path
from typing import ClassVar

import pytest

from pointlib.datasets.download import (
    RESOURCES,
    CorruptArchiveError,
    DownloadError,
    Resource,
    download,
    md5sum,
)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=N-`` support; counts bytes served."""

    served: ClassVar[list[int]] = []
    state_size: ClassVar[bool] = True  # send "Content-Range: bytes */SIZE" with a 416

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                if self.state_size:
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.served.append(len(body))


@pytest.fixture
def server(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    RangeHandler.served = []
    RangeHandler.state_size = True
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(RangeHandler, directory=str(site))
    )
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield site, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _make_zip(path: Path, folder: str, files: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(f"{folder}/{name}", data)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_resource(monkeypatch):
    files = {"a.txt": b"hello" * 1000, "sub/b.txt": b"world"}
    res = Resource(
        None, "toy.zip", "toy", files_md5={"sub/b.txt": hashlib.md5(b"world").hexdigest()}
    )
    monkeypatch.setitem(RESOURCES, "toy", res)
    return files


def test_http_download_verify_extract(server, tmp_path, fake_resource):
    site, base = server
    md5 = _make_zip(site / "toy.zip", "toy", fake_resource)
    out = download("toy", tmp_path / "data", url=f"{base}/toy.zip", md5=md5, progress=False)
    assert out == tmp_path / "data" / "toy"
    assert (out / "a.txt").read_bytes() == fake_resource["a.txt"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["toy"]  # no temp/archive
    # second call: already there, nothing fetched
    n = len(RangeHandler.served)
    assert download("toy", tmp_path / "data", url=f"{base}/toy.zip", progress=False) == out
    assert len(RangeHandler.served) == n


def test_resume_with_range(server, tmp_path, fake_resource):
    site, base = server
    md5 = _make_zip(site / "toy.zip", "toy", fake_resource)
    full = (site / "toy.zip").read_bytes()
    root = tmp_path / "data"
    root.mkdir()
    (root / "toy.zip.part").write_bytes(full[:100])  # an interrupted earlier transfer
    download("toy", root, url=f"{base}/toy.zip", md5=md5, progress=False, keep_archive=True)
    assert RangeHandler.served == [len(full) - 100]  # only the rest was sent
    assert md5sum(root / "toy.zip") == md5


def test_wrong_md5_removes_archive(server, tmp_path, fake_resource):
    site, base = server
    _make_zip(site / "toy.zip", "toy", fake_resource)
    with pytest.raises(DownloadError, match=r"toy\.zip: md5 mismatch"):
        download("toy", tmp_path, url=f"{base}/toy.zip", md5="0" * 32, progress=False)
    assert not (tmp_path / "toy.zip").exists() and not (tmp_path / "toy").exists()


def test_file_url_and_bad_file_md5(tmp_path, fake_resource, monkeypatch):
    src = tmp_path / "toy.zip"
    _make_zip(src, "toy", {**fake_resource, "sub/b.txt": b"tampered"})
    with pytest.raises(DownloadError, match=r"b\.txt: md5 mismatch"):
        download("toy", tmp_path / "d", url=src.as_uri(), progress=False)


def test_corrupt_archive_leaves_no_folder(tmp_path, fake_resource):
    src = tmp_path / "toy.zip"
    src.write_bytes(b"not an archive at all")
    with pytest.raises(DownloadError, match="not a zip or tar"):
        download("toy", tmp_path / "d", url=src.as_uri(), progress=False)
    assert not (tmp_path / "d" / "toy").exists()
    assert not [p for p in (tmp_path / "d").iterdir() if p.name.startswith(".extract")]


def test_no_url_and_unknown_name(tmp_path):
    with pytest.raises(DownloadError, match="terms of use"):
        download("scanobjectnn", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        download("imagenet", tmp_path)


def test_md5_table():
    for r in RESOURCES.values():  # None = unknown; otherwise a real md5
        assert r.md5 is None or len(r.md5) == 32
    h5 = RESOURCES["modelnet40_ply_hdf5_2048"].files_md5
    assert h5["ply_data_train0.h5"] == "3176385ffc31a7b6b5af22191fd920d1" and len(h5) == 7
    mod = importlib.import_module("pointlib.datasets.download")
    assert mod.ALIASES["modelnet40"] in RESOURCES


# -- recovery: every failure state heals on the next call -------------------------------------


def test_stale_part_larger_than_source_restarts_file_url(tmp_path, fake_resource):
    src = tmp_path / "toy.zip"
    _make_zip(src, "toy", fake_resource)
    root = tmp_path / "d"
    root.mkdir()
    (root / "toy.zip.part").write_bytes(b"x" * (src.stat().st_size + 100))  # stale, too long
    out = download("toy", root, url=src.as_uri(), progress=False)
    assert (out / "a.txt").read_bytes() == fake_resource["a.txt"]
    assert not (root / "toy.zip.part").exists()


@pytest.mark.parametrize("state_size", [True, False])
def test_stale_part_larger_than_source_restarts_http(server, tmp_path, fake_resource, state_size):
    site, base = server
    RangeHandler.state_size = state_size  # the 416 states the size, or says nothing
    _make_zip(site / "toy.zip", "toy", fake_resource)
    size = (site / "toy.zip").stat().st_size
    root = tmp_path / "d"
    root.mkdir()
    (root / "toy.zip.part").write_bytes(b"x" * (size + 100))  # the server answers 416
    out = download("toy", root, url=f"{base}/toy.zip", progress=False)
    assert (out / "a.txt").read_bytes() == fake_resource["a.txt"]
    assert RangeHandler.served == [size]  # one full transfer after the refused range


def test_complete_part_is_not_downloaded_again(server, tmp_path, fake_resource):
    site, base = server
    _make_zip(site / "toy.zip", "toy", fake_resource)
    root = tmp_path / "d"
    root.mkdir()
    (root / "toy.zip.part").write_bytes((site / "toy.zip").read_bytes())  # killed before rename
    out = download("toy", root, url=f"{base}/toy.zip", progress=False)
    assert (out / "a.txt").read_bytes() == fake_resource["a.txt"]
    assert RangeHandler.served == []  # the 416 said the .part is complete


def test_force_discards_a_stale_part(tmp_path, fake_resource):
    src = tmp_path / "toy.zip"
    _make_zip(src, "toy", fake_resource)
    root = tmp_path / "d"
    root.mkdir()
    # same length as the source but wrong bytes: resuming would "complete" a corrupt archive
    (root / "toy.zip.part").write_bytes(b"\0" * (src.stat().st_size - 10))
    out = download("toy", root, url=src.as_uri(), progress=False, force=True)
    assert (out / "sub" / "b.txt").read_bytes() == b"world"


def test_corrupt_archive_with_unknown_md5_is_removed_and_recovers(tmp_path, fake_resource):
    src = tmp_path / "toy.zip"
    _make_zip(src, "toy", fake_resource)
    good = src.read_bytes()
    bad = bytearray(good)
    bad[60:80] = b"\xff" * 20  # inside the first member's compressed data: bad CRC / zlib
    src.write_bytes(bytes(bad))
    root = tmp_path / "d"
    with pytest.raises(CorruptArchiveError, match=r"toy\.zip: corrupt archive.*removed"):
        download("toy", root, url=src.as_uri(), progress=False)
    assert not (root / "toy.zip").exists() and not (root / "toy").exists()
    src.write_bytes(good)  # the mirror is fixed: the next call downloads again and succeeds
    out = download("toy", root, url=src.as_uri(), progress=False)
    assert (out / "a.txt").read_bytes() == fake_resource["a.txt"]


def test_force_replaces_a_kept_corrupt_archive(tmp_path, fake_resource):
    src = tmp_path / "toy.zip"
    _make_zip(src, "toy", fake_resource)
    root = tmp_path / "d"
    root.mkdir()
    (root / "toy.zip").write_bytes(b"PK\x03\x04 truncated")  # left by an earlier version
    out = download("toy", root, url=src.as_uri(), progress=False, force=True)
    assert (out / "a.txt").read_bytes() == fake_resource["a.txt"]


def test_missing_file_url_source_is_a_download_error(tmp_path, fake_resource):
    missing = tmp_path / "nowhere" / "toy.zip"
    with pytest.raises(DownloadError, match=r"nowhere/toy\.zip: cannot open the source file"):
        download("toy", tmp_path / "d", url=missing.as_uri(), progress=False)
