"""Atomic file writes and the clean-up of temporary files left by killed writers.

A write goes to a temporary file in the target folder, then ``os.replace``. The temporary name is
``.<target name>.<host>-<pid>.<random>.tmp`` (plus the target's suffix where a writer needs it),
so a later start can tell whose it is: :func:`remove_stale_temps` deletes those of a process that
no longer runs on this host, and any other (another host's, or written by an older version)
that has not been modified for :data:`STALE_AFTER_S` seconds. A process killed with ``kill -9``
mid-write therefore leaves nothing behind once the same run or cache starts again.

``tempfile.mkstemp`` creates its file with mode ``0600`` whatever the umask; before the rename the
file gets the mode an ordinary ``open(path, "w")`` would give it: ``0666 & ~umask`` for a new
file, the old file's mode when one is replaced.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "file_mode",
    "make_temp",
    "remove_stale_temps",
    "remove_stale_temps_in",
    "temp_tag",
]

#: Age (seconds since the last modification) after which a temporary file that is not known to
#: belong to a live process on this host counts as abandoned.
STALE_AFTER_S = 600.0

_TAG = re.compile(r"\.(?P<host>[A-Za-z0-9_-]*)-(?P<pid>\d+)\.[^.]*\.tmp")


def temp_tag() -> str:
    """``<host>-<pid>`` of this process (the host name reduced to ``[A-Za-z0-9_-]``)."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]
    return f"{host}-{os.getpid()}"


def make_temp(target: str | os.PathLike[str], suffix: str = "") -> Path:
    """Create (empty, closed) ``.<name>.<host>-<pid>.<random>.tmp<suffix>`` beside ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{temp_tag()}.", suffix=f".tmp{suffix}", dir=target.parent
    )
    os.close(fd)
    return Path(tmp)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(
    targets: Iterable[str | os.PathLike[str]], *, stale_after_s: float = STALE_AFTER_S
) -> list[Path]:
    """Delete abandoned temporary files of the given target files; returns what was removed.

    A candidate is ``.<target name>.*.tmp*`` in the target's folder. It is kept when its tag
    names a live process on this host, or (untagged or another host's) when it was modified less
    than ``stale_after_s`` seconds ago; otherwise it is removed.
    """
    cands = []
    for target in targets:
        target = Path(target)
        prefix = f".{target.name}."
        if target.parent.is_dir():
            cands += [(c, prefix) for c in target.parent.glob(f"{glob_escape(prefix)}*.tmp*")]
    return _remove(cands, stale_after_s)


def remove_stale_temps_in(
    folder: str | os.PathLike[str], *, stale_after_s: float = STALE_AFTER_S
) -> list[Path]:
    """:func:`remove_stale_temps` for every ``.<name>.*.tmp*`` file directly in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cands = []
    for c in folder.glob(".*.tmp*"):
        m = re.match(r"(\..+?\.)(?:[A-Za-z0-9_-]*-\d+\.)?[a-z0-9_]+\.tmp", c.name)
        if m is not None:
            cands.append((c, m.group(1)))
    return _remove(cands, stale_after_s)


def _remove(cands: list[tuple[Path, str]], stale_after_s: float) -> list[Path]:
    removed: list[Path] = []
    here = temp_tag().rsplit("-", 1)[0]
    now = time.time()
    for cand, prefix in cands:
        rest = cand.name[len(prefix) - 1 :]  # ".<host>-<pid>.<random>.tmp..."
        m = _TAG.match(rest)
        if m is not None and m.group("host") == here:
            if _pid_alive(int(m.group("pid"))):
                continue
        else:
            try:
                if now - cand.stat().st_mtime < stale_after_s:
                    continue
            except FileNotFoundError:
                continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            cand.unlink()
            removed.append(cand)
    return removed


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # fallback: read by setting (restored at once)
    os.umask(mask)
    return mask


def file_mode(target: Path) -> int:
    """The mode a write to ``target`` should leave: the existing file's, else ``0666 & ~umask``."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def glob_escape(text: str) -> str:
    """``text`` with the glob metacharacters ``*?[`` escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The temporary name keeps the suffix of ``path`` (writers such as open3d pick the format from
    it). On any exception the temporary file is removed and ``path`` is left untouched. Abandoned
    temporary files of ``path`` (see :func:`remove_stale_temps`) are removed first. The result
    honours the umask (see the module docstring).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps([target])
    tmp_path = make_temp(target, target.suffix)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode(target))
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))
