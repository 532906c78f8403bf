"""Download helpers: URL table, md5 verification, resumable transfer, atomic extraction.

``download(name, root)`` fetches ``RESOURCES[name].url`` into ``root/<archive>.part`` (resuming an
interrupted transfer with an HTTP ``Range`` request; ``file://`` URLs resume by seeking),
verifies the archive's md5 when it is known, extracts into a temporary folder inside ``root``
and renames the dataset folder into place, so ``root/<folder>`` is either complete or absent.
Known per-file md5s (the official ModelNet40 h5 files) are checked after extraction.

md5 values marked ``None`` are **unknown** (not published by the authors; never guessed here).
Some datasets have no public direct URL (ScanObjectNN needs a terms-of-use request, FG3D is a
Google-Drive folder): ``download`` then raises with instructions.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = ["RESOURCES", "CorruptArchiveError", "DownloadError", "Resource", "download", "md5sum"]


class DownloadError(RuntimeError):
    """A download, checksum or extraction failure; the message names the file or URL."""


class CorruptArchiveError(DownloadError):
    """The archive cannot be extracted (not an archive, truncated, bad CRC)."""


@dataclass(frozen=True)
class Resource:
    """One downloadable dataset archive.

    Attributes:
        url: direct URL, or ``None`` when there is none (see ``note``).
        archive: file name of the archive.
        folder: the top-level folder the archive extracts to (what loaders take as ``root``).
        md5: md5 of the archive, ``None`` = unknown.
        files_md5: md5 of files inside ``folder`` (relative paths), checked after extraction.
        note: how to obtain it when ``url`` is ``None``; mirrors and caveats.
    """

    url: str | None
    archive: str
    folder: str
    md5: str | None = None
    files_md5: dict[str, str] = field(default_factory=dict)
    note: str = ""


_STANFORD = "https://shapenet.cs.stanford.edu/media/"
RESOURCES: dict[str, Resource] = {
    "modelnet40_normal_resampled": Resource(
        _STANFORD + "modelnet40_normal_resampled.zip",
        "modelnet40_normal_resampled.zip",
        "modelnet40_normal_resampled",
        note="1.6 GB; the Stanford host is often offline: pass url= for a mirror.",
    ),
    "modelnet40_ply_hdf5_2048": Resource(
        _STANFORD + "modelnet40_ply_hdf5_2048.zip",
        "modelnet40_ply_hdf5_2048.zip",
        "modelnet40_ply_hdf5_2048",
        files_md5={
            "ply_data_train0.h5": "3176385ffc31a7b6b5af22191fd920d1",
            "ply_data_train1.h5": "e3f613fb500559403b34925112754dc4",
            "ply_data_train2.h5": "0c56e233a090ff87c3049d4ce08e7d8b",
            "ply_data_train3.h5": "9d2af465adfa33a3285c369f3ca66c45",
            "ply_data_train4.h5": "dff38de489b2c41bfaeded86c2208984",
            "ply_data_test0.h5": "e9732e6d83b09e79e9a7617df058adee",
            "ply_data_test1.h5": "aba4b12a67c34391cc3c015a6f08ed4b",
        },
        note="416 MB; pass url= for a mirror if the Stanford host is offline.",
    ),
    "shapenetpart": Resource(
        _STANFORD + "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip",
        "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip",
        "shapenetcore_partanno_segmentation_benchmark_v0_normal",
        note="674 MB.",
    ),
    "modelnet40_off": Resource(
        "http://modelnet.cs.princeton.edu/ModelNet40.zip",
        "ModelNet40.zip",
        "ModelNet40",
        note="raw meshes, 2 GB.",
    ),
    "modelnet10_off": Resource(
        "http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip",
        "ModelNet10.zip",
        "ModelNet10",
        note="raw meshes, 450 MB.",
    ),
    "scanobjectnn": Resource(
        None,
        "h5_files.zip",
        "h5_files",
        note="ScanObjectNN is distributed after accepting its terms of use: request it at "
        "https://hkust-vgd.github.io/scanobjectnn/ then pass the emailed link as url=, or unzip "
        "h5_files.zip yourself (root = the h5_files folder).",
    ),
    "fg3d": Resource(
        None,
        "FG3D.zip",
        "FG3D",
        note="FG3D is shared as a Google-Drive folder (see the FG3D paper's repository); "
        "download it manually; docs/datasets.md describes the expected layout.",
    ),
}
ALIASES = {
    "modelnet40": "modelnet40_normal_resampled",
    "modelnet40_h5": "modelnet40_ply_hdf5_2048",
    "modelnet10": "modelnet10_off",
    "shapenet_part": "shapenetpart",
}


def md5sum(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex md5 of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=desc)
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass
    return contextlib.nullcontext(None)


def _open(url: str, offset: int, timeout: float) -> tuple[BinaryIO, int | None, bool]:
    """Open ``url`` from byte ``offset``: ``(stream, total_size, resumed)``.

    ``resumed`` is False when the transfer restarts from byte 0: the server ignored the ``Range``
    request, or a stale ``.part`` is at least as long as the source (its bytes cannot be trusted).
    A missing ``file://`` source raises :class:`DownloadError`.
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
        try:
            f = open(path, "rb")
        except OSError as exc:
            raise DownloadError(f"{url}: cannot open the source file ({exc})") from None
        size = os.fstat(f.fileno()).st_size
        if offset > size:  # stale .part larger than the source: start over
            offset = 0
        f.seek(offset)
        return f, size, offset > 0
    req = urllib.request.Request(url, headers={"User-Agent": "pointlib"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # the .part reaches the end of the source: complete when the server states the same
            # size ("Content-Range: bytes */SIZE"), else stale (longer) and fetched again
            size = (exc.headers.get("Content-Range") or "").rpartition("/")[2].strip()
            if size.isdigit() and int(size) == offset:
                return open(os.devnull, "rb"), offset, True
            return _open(url, 0, timeout)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: {exc.reason}") from exc
    except OSError as exc:  # timeouts, resets
        raise DownloadError(f"{url}: {exc}") from exc
    resumed = offset > 0 and resp.status == 206
    length = resp.headers.get("Content-Length")
    total = (int(length) + (offset if resumed else 0)) if length is not None else None
    return resp, total, resumed


def fetch(
    url: str, dest: str | os.PathLike[str], *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest + '.part'`` if present; atomic rename.

    A ``.part`` longer than the source is discarded and the transfer starts over; a transfer
    that ends short keeps its ``.part`` (the next call resumes it).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    stream, total, resumed = _open(url, offset, timeout)
    mode = "ab" if resumed else "wb"
    try:
        with (
            stream,
            open(part, mode) as out,
            _progress(total, offset if resumed else 0, dest.name, progress) as bar,
        ):
            while block := stream.read(1 << 20):
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
    except OSError as exc:
        raise DownloadError(
            f"{url}: transfer failed ({exc}); call again to resume from {part}"
        ) from exc
    size = part.stat().st_size
    if total is not None and size > total:
        part.unlink()
        raise DownloadError(
            f"{url}: received {size} bytes, the source has {total}; {part} was removed, "
            "call again to download from the start"
        )
    if total is not None and size != total:
        raise DownloadError(
            f"{url}: incomplete download ({size} of {total} bytes); "
            f"call again to resume from {part}"
        )
    os.replace(part, dest)
    return dest


def _safe_members(names: list[str], archive: Path) -> None:
    for n in names:
        p = Path(n)
        if p.is_absolute() or ".." in p.parts:
            raise DownloadError(f"{archive}: unsafe path {n!r} in archive")


def extract(archive: str | os.PathLike[str], root: str | os.PathLike[str], folder: str) -> Path:
    """Extract ``archive`` into a temp folder in ``root`` and rename ``folder`` into place."""
    archive, root = Path(archive), Path(root)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                _safe_members(z.namelist(), archive)
                z.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                _safe_members(t.getnames(), archive)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                    t.extractall(tmp, filter="data")
                else:  # pragma: no cover - members were checked by _safe_members
                    t.extractall(tmp)
        else:
            raise CorruptArchiveError(f"{archive}: not a zip or tar archive (corrupt download?)")
        src = tmp / folder
        if not src.is_dir():
            entries = [p for p in tmp.iterdir() if not p.name.startswith("__MACOSX")]
            src = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        target = root / folder
        if target.exists():
            raise DownloadError(f"{target}: already exists (use force=True to replace)")
        if src == tmp:
            os.replace(tmp, target)
        else:
            os.replace(src, target)
        return target
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise CorruptArchiveError(f"{archive}: corrupt archive ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download(
    name: str,
    root: str | os.PathLike[str],
    *,
    url: str | None = None,
    md5: str | None = None,
    force: bool = False,
    progress: bool = True,
    keep_archive: bool = False,
) -> Path:
    """Download and extract dataset ``name`` under ``root``; returns the dataset folder.

    Args:
        name: a key of :data:`RESOURCES` (or an alias such as ``"modelnet40"``).
        root: parent folder; the data end up in ``root/<Resource.folder>``.
        url: override the URL (a mirror, or a ``file://`` path).
        md5: override the expected archive md5.
        force: replace an existing folder and download again (an existing archive or
            ``.part`` file in ``root`` is deleted first).
        progress: show a tqdm progress bar.
        keep_archive: keep the archive after extraction.

    A corrupt archive (it cannot be extracted) or one with the wrong md5 is deleted before the
    error is raised, so calling again downloads it afresh.

    Raises:
        DownloadError: no URL, missing ``file://`` source, network error, md5 mismatch, corrupt
            archive (:class:`CorruptArchiveError`), bad file md5.
    """
    key = ALIASES.get(name, name)
    if key not in RESOURCES:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(RESOURCES)}")
    res = RESOURCES[key]
    src = url or res.url
    if src is None:
        raise DownloadError(f"{key}: no direct download URL. {res.note}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / res.folder
    if target.exists():
        if not force:
            _check_files(target, res)
            return target
        trash = root / f".trash-{res.folder}-{os.getpid()}"
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    archive = root / res.archive
    if force:  # start from nothing: a kept or half-downloaded archive may be the problem
        for stale in (archive, archive.with_name(archive.name + ".part")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
    if not archive.exists():
        fetch(src, archive, progress=progress)
    expected = md5 or res.md5
    if expected is not None:
        got = md5sum(archive)
        if got != expected:
            archive.unlink()
            raise DownloadError(
                f"{archive}: md5 mismatch (expected {expected}, got {got}); "
                "the file was removed, call again to re-download"
            )
    try:
        target = extract(archive, root, res.folder)
    except CorruptArchiveError as exc:
        # with an unknown md5 nothing else can tell a bad download: drop it so that the next
        # call downloads again instead of failing on the same bytes forever
        archive.unlink()
        raise CorruptArchiveError(
            f"{exc}; the archive was removed, call again to re-download"
        ) from exc.__cause__
    _check_files(target, res)
    if not keep_archive:
        archive.unlink()
    return target


def _check_files(folder: Path, res: Resource) -> None:
    for rel, want in res.files_md5.items():
        p = folder / rel
        if not p.is_file():
            raise DownloadError(f"{p}: missing after extraction")
        got = md5sum(p)
        if got != want:
            raise DownloadError(f"{p}: md5 mismatch (expected {want}, got {got})")
