"""The command line as a user meets it: predict, one-line errors, models table, help texts,
case-insensitive values, files named and honouring the umask, strict JSON, progress output."""

from __future__ import annotations

import importlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch
import yaml

from pointlib.cli import main

TINY = {
    "name": "tiny-user",
    "model": {"name": "risurconv_cls_tiny", "kwargs": {"faithful": False}},
    "data": {
        "name": "synthetic",
        "num_points": 64,
        "batch_size": 8,
        "eval_batch_size": 16,
        "val_fraction": 0.2,
        "kwargs": {"samples_per_class": 3},
    },
    "augment": {"rotation": "SO3"},  # upper case, as every table writes it
    "train": {"epochs": 1, "progress": False, "tensorboard": False},
    "eval": {"rotations": ["none", "so3"], "num_rotations": 2},
    "robustness": {"train_rotations": ["z"], "tests": {"z": ["z"]}},
}
SUBCOMMANDS = ("demo", "train", "eval", "robustness", "predict", "bench", "models")


def _strict(text: str):
    def bad(token: str):
        raise ValueError(f"non-strict JSON constant {token}")

    return json.loads(text, parse_constant=bad)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(dict(TINY, data=dict(TINY["data"], root=str(root / "c")))))
    return path


@pytest.fixture(scope="module")
def trained(config) -> tuple[Path, int]:
    """A run trained under umask 027, so the expected file mode is 0640."""
    out = config.parent / "run"
    old = os.umask(0o027)
    try:
        assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    finally:
        os.umask(old)
    return out, 0o027


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- train / outputs


def test_train_summary_umask_and_strict_json(trained, capsys):
    out, mask = trained
    for name in ("best.pt", "last.pt", "results.json", "run_info.json", "metrics.csv"):
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode == 0o666 & ~mask, (name, oct(mode))
    results = _strict((out / "results.json").read_text())
    # a single copy has no invariance error: null, not NaN
    assert results["protocols"]["none"]["invariance_error"] is None
    assert results["train_rotation"] == "so3"  # "SO3" accepted and normalised


def test_train_starts_with_a_summary_line(config, tmp_path, capsys):
    rc = main(
        ["train", "--config", str(config), "--out", str(tmp_path), "--set", "eval.rotations=[none]"]
    )
    assert rc == 0
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("train risurconv_cls_tiny (")
    assert "parameters) on synthetic:" in first and "device cpu" in first
    assert "/ 0 val /" not in first and "test samples" in first


def test_set_accepts_any_case_for_enumerated_values(config, tmp_path):
    from pointlib.engine.config import load_config

    cfg = load_config(
        config, ["augment.rotation=SO3", "optim.name=Adam", "eval.rotations=[Z, So3]"]
    )
    assert cfg.augment.rotation == "so3" and cfg.optim.name == "adam"
    assert cfg.eval.rotations == ["z", "so3"]
    with pytest.raises(ValueError, match="'SO4' is not one of none, z, so3"):
        load_config(config, ["augment.rotation=SO4"])


# --------------------------------------------------------------------------- eval


def test_eval_names_every_file_it_writes(trained, tmp_path, capsys):
    out, _ = trained
    target = tmp_path / "ev"
    rc = main(
        ["eval", "-k", str(out), "-r", "SO3", "-R", "2", "--angles", "0,90", "--out", str(target)]
    )
    assert rc == 0
    text = capsys.readouterr().out
    written = sorted(p.name for p in target.iterdir())
    assert written == ["eval.json", "eval_sweep.png"]
    for name in written:
        assert str(target / name) in text
    payload = _strict((target / "eval.json").read_text())
    assert list(payload["protocols"]) == ["so3"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: the request works")
def test_cuda_unavailable_is_one_line_naming_the_flag(trained, capsys, config):
    out, _ = trained
    assert main(["eval", "-k", str(out), "--device", "cuda"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--device cuda asks for CUDA" in line and "use --device cpu" in line
    if torch.version.cuda is None:
        assert "CPU-only build" in line
    assert "train.device" not in line
    rc = main(["train", "--config", str(config), "--set", "train.device=cuda", "--overwrite"])
    assert rc == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "train.device=cuda asks for CUDA" in line


def test_bad_device_name(trained, capsys):
    out, _ = trained
    assert main(["eval", "-k", str(out), "--device", "gpu"]) == 2
    assert "'gpu' is not a device" in _one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- predict


def test_predict_cli_text_json_csv(trained, tmp_path, capsys):
    from pointlib.datasets import SyntheticShapes
    from pointlib.io import write_point_cloud

    out, _ = trained
    ds = SyntheticShapes(out.parent / "c", "test", 64, samples_per_class=3)
    files = [
        write_point_cloud(tmp_path / f"cloud{i}.ply", ds[i]["xyz"] * 100, ds[i]["normals"])
        for i in range(2)
    ]
    assert main(["predict", "-k", str(out / "best.pt"), *map(str, files), "-R", "2"]) == 0
    text = capsys.readouterr().out
    assert "64 points by a seeded random choice, centred + unit sphere" in text
    assert f"{files[0]}: " in text and "invariance over 2 Haar rotations" in text
    target = tmp_path / "pred.json"
    rc = main(["predict", "-k", str(out), *map(str, files), "--format", "JSON", "-o", str(target)])
    assert rc == 0
    data = _strict(target.read_text())
    assert [d["source"] for d in data] == [str(f) for f in files]
    assert main(["predict", "-k", str(out), str(files[0]), "-f", "csv", "-n", "2"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("source,label,probability,top_k") and len(rows) == 2


def test_predict_user_errors(trained, tmp_path, capsys):
    out, _ = trained
    assert main(["predict", "-k", str(out), str(tmp_path / "missing.ply")]) == 2
    assert "input file not found" in _one_error_line(capsys.readouterr().err)
    bad = tmp_path / "bad.pcd"
    bad.write_text("not a pcd file\n")
    assert main(["predict", "-k", str(out), str(bad)]) == 2
    assert "bad.pcd" in _one_error_line(capsys.readouterr().err)
    assert main(["predict", "-k", str(out), str(bad), "--top-k", "0"]) == 2
    assert "--top-k must be >= 1" in _one_error_line(capsys.readouterr().err)
    assert main(["predict", "-k", str(tmp_path / "none.pt"), str(bad)]) == 2
    assert "checkpoint not found" in _one_error_line(capsys.readouterr().err)
    assert main(["predict", str(bad)]) == 2  # argparse: --checkpoint missing
    line = _one_error_line(capsys.readouterr().err)
    assert "--checkpoint" in line and "pointlib predict --help" in line


# --------------------------------------------------------------------------- models


def test_models_table_grouped_with_task(capsys):
    from pointlib.models import create_model

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for title in ("point-cloud models", "2D image backbones", "test variants"):
        assert title in out
    assert out.index("point-cloud models") < out.index("2D image backbones")
    n = sum(p.numel() for p in create_model("risurconv_cls").parameters())
    row = next(ln for ln in out.splitlines() if ln.startswith("risurconv_cls "))
    assert f"{n / 1e6:.2f} M" in row and " cls " in row
    assert main(["models", "--task", "PartSeg"]) == 0
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[3:] if ln.strip()]
    assert names and all("partseg" in n for n in names)
    assert main(["models", "pointcloud*"]) == 1
    assert "no registered model matches 'pointcloud*'" in capsys.readouterr().err
    assert main(["models", "RISURCONV_CLS*", "--names"]) == 0
    assert capsys.readouterr().out.split() == ["risurconv_cls", "risurconv_cls_tiny"]


# --------------------------------------------------------------------------- help, demo


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_is_plain_text_and_documents_every_option(name):
    module = importlib.import_module(f"pointlib.cli.{'evaluate' if name == 'eval' else name}")
    parser = module.build_parser()
    text = parser.format_help()
    assert "``" not in text and ":func:" not in text and ":class:" not in text
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, (
                f"pointlib {name}: {action.option_strings or action.dest} has no help"
            )


def test_unknown_command_is_one_line(capsys):
    assert main(["trian"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "unknown command 'trian'" in line and "did you mean train" in line


def test_demo_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    import pointlib.engine.demo as demo

    (tmp_path / "robustness.md").write_text("earlier results\n")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "already holds demo results (robustness.md)" in line and "--overwrite" in line
    assert (tmp_path / "robustness.md").read_text() == "earlier results\n"
    calls = []

    def fake(out, settings, progress=True):
        calls.append(out)
        return {"table": "T", "wall_s": 1.0, "files": [Path(out) / "robustness.md"]}

    monkeypatch.setattr(demo, "run_demo", fake)
    assert main(["demo", "--quick", "--out", str(tmp_path), "--overwrite"]) == 0
    assert calls == [tmp_path]


# --------------------------------------------------------------------------- progress


def test_progress_is_plain_and_periodic_off_a_terminal(monkeypatch, capsys):
    from pointlib.engine import progress as P

    monkeypatch.setattr(P, "is_terminal", lambda stream=None: False)
    monkeypatch.setenv("POINTLIB_PROGRESS_EVERY", "0")
    bar = P.progress(range(5), desc="epoch 1/1")
    assert isinstance(bar, P.PlainProgress)
    for _ in bar:
        bar.set_postfix(loss="0.5")
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("epoch 1/1: 1/5 (20%)") and "loss=0.5" in lines[0]
    assert lines[-1].startswith("epoch 1/1: 5/5 (100%)") and lines[-1].endswith("done")
    assert all("\r" not in ln for ln in lines)
    monkeypatch.setenv("POINTLIB_PROGRESS_EVERY", "3600")
    bar = P.progress(range(1000), desc="quiet")
    for _ in bar:
        pass
    bar.close()
    assert capsys.readouterr().err == ""  # shorter than the interval: nothing at all


def test_training_off_a_terminal_prints_plain_lines(config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POINTLIB_PROGRESS_EVERY", "0")  # a line per step
    argv = [
        "train",
        "--config",
        str(config),
        "--out",
        str(tmp_path),
        "--set",
        "train.progress=true",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    steps = [ln for ln in captured.err.splitlines() if ln.startswith("epoch 1/1: ")]
    assert steps and "\r" not in captured.err and "it/s" not in captured.err  # no tqdm bar
    assert steps[-1].endswith("done")
    assert any(ln.startswith("epoch 1/1: train_oa=") for ln in captured.out.splitlines())


def test_progress_is_a_bar_on_a_terminal(monkeypatch):
    from tqdm.auto import tqdm

    from pointlib.engine import progress as P

    monkeypatch.setattr(P, "is_terminal", lambda stream=None: True)
    bar = P.progress(range(3), desc="x")
    assert isinstance(bar, tqdm)
    bar.close()


# --------------------------------------------------------------------------- files


def test_atomic_writes_honour_the_umask(tmp_path):
    from pointlib.io import write_point_cloud
    from pointlib.io._atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        write_point_cloud(tmp_path / "a.ply", torch.zeros(3, 3))
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
        os.chmod(tmp_path / "a.txt", 0o604)
        atomic_write_text(tmp_path / "a.txt", "y")  # a replaced file keeps its mode
    finally:
        os.umask(old)
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert mode == {"a.txt": 0o604, "a.ply": 0o644, "b.txt": 0o600}


def test_plots_say_what_they_count(tmp_path, monkeypatch):
    import pointlib.engine.plots as plots

    titles = []

    def grab(fig, path, dpi=120):
        titles.append([ax.get_title() for ax in fig.axes if ax.get_title()])
        plots._pyplot().close(fig)

    monkeypatch.setattr(plots, "_save", grab)
    cm = torch.tensor([[4, 2], [0, 6]])
    plots.plot_confusion(cm, ["a", "b"], tmp_path / "c.png", title="m z/so3", copies=3)
    assert "summed over 3 rotated copies" in titles[-1][0] and "3 x 4 samples" in titles[-1][0]
    plots.plot_confusion(cm, ["a", "b"], tmp_path / "c.png", copies=1)
    assert "12 test samples" in titles[-1][0]
    plots.plot_sweep([0, 90], {"m": [0.5, 0.6]}, tmp_path / "s.png", note="each point: all 7")
    assert "each point: all 7" in titles[-1][0]


def test_strict_json_helper():
    from pointlib.engine.outputs import dumps_json

    text = dumps_json({"a": float("nan"), "b": [1.0, float("inf")], "c": torch.tensor(2.5)})
    assert _strict(text) == {"a": None, "b": [1.0, None], "c": 2.5}
