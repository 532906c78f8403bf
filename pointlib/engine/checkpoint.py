"""Atomic files and checkpoints that rebuild their own model.

Every file the engine writes goes through a temporary file in the target folder followed by
``os.replace``, so a crash never leaves a truncated ``best.pt`` or CSV behind.

A checkpoint is a dict with at least ``model_name``, ``model_kwargs`` and ``model`` (the state
dict); :func:`model_from_checkpoint` rebuilds the architecture with
``pointlib.models.create_model(model_name, **model_kwargs)``. Training checkpoints also hold the
optimiser, scaler, RNG states and the loop position, for exact resumption.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pointlib.io._atomic import make_temp, remove_stale_temps_in

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint",
    "model_from_checkpoint",
    "remove_stale_temps_in",
    "save_checkpoint",
]

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or lacks the keys needed to rebuild the model."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    The temporary file is ``.<name>.<host>-<pid>.<random>.tmp``; one left by a killed process is
    removed by :func:`remove_stale_temps_in` when the run starts again.
    """
    path = Path(path)
    tmp = make_temp(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict (must hold ``model_name``, ``model_kwargs``, ``model``)."""
    missing = [k for k in ("model_name", "model_kwargs", "model") if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint state lacks {', '.join(missing)}")
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or a run folder's ``best.pt``).

    ``path`` may be a run folder, in which case ``best.pt`` (else ``last.pt``) inside it is used.
    Raises :class:`CheckpointError` naming the file when it is missing or unreadable.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"no best.pt or last.pt in run folder {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # corrupt / truncated / not a torch file
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(state, dict) or "model_name" not in state or "model" not in state:
        raise CheckpointError(f"{path} is not a pointlib checkpoint (no model_name/model)")
    state["path"] = str(path)
    return state


def model_from_checkpoint(state: dict[str, Any] | str | Path, *, strict: bool = True) -> nn.Module:
    """Rebuild the model saved in ``state`` (a checkpoint dict or a path) and load its weights."""
    from pointlib.models import create_model

    if not isinstance(state, dict):
        state = load_checkpoint(state)
    import_modules = (state.get("config") or {}).get("model", {}).get("import_modules", [])
    for mod in import_modules:
        __import__(mod)
    model = create_model(state["model_name"], **dict(state.get("model_kwargs") or {}))
    model.load_state_dict(state["model"], strict=strict)
    return model
