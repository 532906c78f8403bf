"""Every ```python block of README.md and docs/*.md runs as written.

Each block runs on its own (a user copies one block, not a page), in a fresh namespace, in an
empty folder that holds only the files the prose tells the user to have: a ``configs/`` link to
the shipped configs, small stand-ins for the files a snippet names (``airplane_0001.txt``,
``bathtub_0001.off``, ``chair.ply``, a checkpoint ``runs/syn/best.pt``) and, where available, the
real-data mini under the name of the full download. Blocks fenced as anything but ``python``
(``text`` signatures, ``bash``) are not run; ``test_bash_blocks_name_real_commands`` checks the
``pointlib`` commands of the ``bash`` blocks instead.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(lang: str) -> list[tuple[str, int, str]]:
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) == lang:
                line = text[: m.start()].count("\n") + 1
                out.append((doc.relative_to(REPO).as_posix(), line, m.group(2)))
    return out


PYTHON = _blocks("python")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny SyntheticShapes classifier, standing in for ``runs/syn/best.pt``."""
    from pointlib.engine import load_config, train

    root = tmp_path_factory.mktemp("snippet_ckpt")
    cfg = load_config(
        REPO / "configs" / "risurconv_tiny_synthetic.yaml",
        [
            f"data.root={root / 'cache'}",
            "data.num_points=64",
            "data.kwargs.samples_per_class=3",
            "train.epochs=1",
            "train.progress=false",
            "train.tensorboard=false",
            "eval.rotations=[none]",
            "eval.angle_sweep=false",
        ],
    )
    train(cfg, root / "run")
    return root / "run" / "best.pt"


def _box_off(path: Path) -> None:
    v = [[x, y, z] for x in (0, 2) for y in (0, 1) for z in (0, 3)]
    f = [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ]  # fmt: skip
    path.write_text(
        "OFF\n8 12 0\n"
        + "".join(f"{a} {b} {c}\n" for a, b, c in v)
        + "".join(f"3 {a} {b} {c}\n" for a, b, c in f)
    )


def _workspace(tmp: Path, checkpoint: Path) -> None:
    """The files a user following the docs has in their working folder."""
    from pointlib.io import sample_mesh, write_point_cloud
    from pointlib.io.mesh import read_mesh
    from pointlib.testing import data_root

    os.symlink(REPO / "configs", tmp / "configs")
    (tmp / "runs" / "syn").mkdir(parents=True)
    shutil.copy(checkpoint, tmp / "runs" / "syn" / "best.pt")
    _box_off(tmp / "bathtub_0001.off")
    xyz, normals = sample_mesh(read_mesh(tmp / "bathtub_0001.off"), 2048, seed=0)
    rows = np.concatenate([xyz.numpy(), normals.numpy()], 1)
    np.savetxt(tmp / "airplane_0001.txt", rows, delimiter=",", fmt="%.6f")
    write_point_cloud(tmp / "chair.ply", xyz * 400.0, normals)  # "CAD units"
    write_point_cloud(tmp / "cup.xyz", xyz[:300])  # no normals
    root = data_root()
    if root is not None and (root / "modelnet40_normal_resampled_mini").is_dir():
        (tmp / "data").mkdir()
        os.symlink(
            root / "modelnet40_normal_resampled_mini", tmp / "data" / "modelnet40_normal_resampled"
        )


def _needs(code: str, tmp: Path) -> str | None:
    """Why a block cannot run here (a download we cannot make), or None."""
    if "data/modelnet40_normal_resampled" in code and not (tmp / "data").exists():
        return "needs the ModelNet40 download (or the real-data mini via POINTLIB_DATA_ROOT)"
    import importlib.util

    if "pointlib.interop" in code and importlib.util.find_spec("torch_geometric") is None:
        return "needs the optional torch-geometric (pip install torch-geometric)"
    if "halonet26t_a1h_256.pth" in code:
        if importlib.util.find_spec("timm") is None:
            return "needs timm to make a stand-in for the timm checkpoint file"
    return None


def _timm_checkpoint(tmp: Path) -> None:
    import sys
    import types

    # PyPI torchvision is a CUDA build whose fake-kernel registrations fail with a CPU torch;
    # timm's model code imports fine once this module is stubbed (as in tests/conftest.py).
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import timm

    torch.save(timm.create_model("halonet26t").state_dict(), tmp / "halonet26t_a1h_256.pth")


def test_docs_have_python_snippets():
    names = {doc for doc, _, _ in PYTHON}
    assert "README.md" in names and "docs/training.md" in names and len(PYTHON) >= 10


@pytest.mark.parametrize(("doc", "line", "code"), PYTHON, ids=[f"{d}:{ln}" for d, ln, _ in PYTHON])
def test_python_snippet_runs(doc, line, code, tmp_path, checkpoint, monkeypatch):
    _workspace(tmp_path, checkpoint)
    why = _needs(code, tmp_path)
    if why:
        pytest.skip(why)
    if "halonet26t_a1h_256.pth" in code:
        _timm_checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POINTLIB_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    namespace = {"__name__": "__snippet__"}
    exec(compile(code, f"{doc}:{line}", "exec"), namespace)


BASH = _blocks("bash")


def test_bash_blocks_name_real_commands():
    """Every ``pointlib <command> --option`` in a bash block is a real command and option."""
    import importlib

    checked = 0
    for doc, line, code in BASH:
        for raw in code.splitlines():
            cmd = raw.split("#", 1)[0].strip()
            if "pointlib " not in cmd or cmd.startswith("export"):
                continue
            words = shlex.split(cmd[cmd.index("pointlib ") :].replace("...", ""))
            if len(words) < 2 or words[1].startswith(("-", "train_")):
                continue
            name = words[1]
            module = importlib.import_module(
                f"pointlib.cli.{'evaluate' if name == 'eval' else name}"
            )
            options = {o for a in module.build_parser()._actions for o in a.option_strings}
            for w in words[2:]:
                if w == "--":
                    break
                if w.startswith("-"):
                    assert w.split("=")[0] in options, f"{doc}:{line}: pointlib {name} {w}"
            checked += 1
    assert checked >= 10
