"""The ``pointlib`` command line, in-process (``main([...])``) plus one subprocess run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pointlib.cli import main

TINY = {
    "name": "tiny",
    "model": {"name": "pointnet2_cls_ssg_tiny"},
    "data": {
        "name": "synthetic",
        "num_points": 64,
        "batch_size": 8,
        "eval_batch_size": 16,
        "val_fraction": 0.2,
        "kwargs": {"samples_per_class": 3},
    },
    "augment": {"rotation": "z", "scale": [0.8, 1.25]},
    "train": {"epochs": 1, "progress": False, "tensorboard": False},
    "eval": {"rotations": ["none", "so3"], "num_rotations": 2},
    "robustness": {"train_rotations": ["z"], "tests": {"z": ["z", "so3"]}},
}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    cfg = dict(TINY, data=dict(TINY["data"], root=str(root / "cache")))
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tiny_config) -> Path:
    out = tiny_config.parent / "run"
    assert (
        main(["train", "--config", str(tiny_config), "--set", "train.seed=1", "--out", str(out)])
        == 0
    )
    return out


def test_train_writes_run(trained, capsys):
    for name in ("best.pt", "last.pt", "config.resolved.yaml", "run_info.json", "results.json"):
        assert (trained / name).is_file(), name
    resolved = yaml.safe_load((trained / "config.resolved.yaml").read_text())
    assert resolved["train"]["seed"] == 1  # the --set override was applied and recorded


def test_eval_checkpoint(trained, capsys):
    rc = main(
        [
            "eval",
            "--checkpoint",
            str(trained / "best.pt"),
            "--rotation",
            "so3",
            "--num-rotations",
            "3",
            "--angles",
            "0,90",
        ]
    )
    assert rc == 0
    out = json.loads((trained / "eval.json").read_text())
    assert list(out["protocols"]) == ["so3"] and out["protocols"]["so3"]["num_rotations"] == 3
    assert out["sweep"]["angles"] == [0.0, 90.0] and (trained / "eval_sweep.png").is_file()
    assert "pointnet2_cls_ssg_tiny z/so3: OA" in capsys.readouterr().out


def test_train_refuses_to_overwrite_and_resumes(trained, tiny_config, capsys):
    assert main(["train", "--config", str(tiny_config), "--out", str(trained)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    # resuming a finished run is a no-op that still tests the best weights
    rc = main(
        [
            "train",
            "--config",
            str(tiny_config),
            "--set",
            "train.seed=1",
            "--out",
            str(trained),
            "--resume",
            str(trained),
        ]
    )
    assert rc == 0 and "run finished" in capsys.readouterr().out


def test_robustness(tiny_config, tmp_path, capsys):
    rc = main(
        [
            "robustness",
            "--config",
            str(tiny_config),
            "--out",
            str(tmp_path),
            "--sweep",
            "--set",
            "eval.sweep_steps=2",
        ]
    )
    assert rc == 0
    rows = (tmp_path / "robustness.csv").read_text().splitlines()
    assert rows[0].startswith("model,protocol") and len(rows) == 3  # header + z/z + z/SO3
    assert "z/SO3" in (tmp_path / "robustness.md").read_text()
    assert (tmp_path / "angle_sweep.png").is_file() and (tmp_path / "train_z" / "best.pt").is_file()
    assert "inv. err" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--config", "{cfg}", "--set", "train.epohcs=2"],
            "unknown config key train.epohcs",
        ),
        (["train", "--config", "{cfg}", "--set", "train.epochs"], "bad override"),
        (["train", "--config", "{cfg}.missing"], "config file not found"),
        (["eval", "--checkpoint", "{cfg}.nope/best.pt"], "checkpoint not found"),
        (["demo", "--epochs", "0"], "--epochs must be >= 1"),
    ],
)
def test_user_errors_exit_2_with_a_message(tiny_config, argv, message, capsys):
    argv = [a.replace("{cfg}", str(tiny_config)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_and_models(capsys):
    assert main([]) == 0 and "robustness" in capsys.readouterr().out
    assert main(["models", "risurconv*"]) == 0
    assert "risurconv_cls_tiny" in capsys.readouterr().out.split()
    assert main(["nonsense"]) == 2  # one line on stderr, no argparse usage dump


def test_demo_quick(tmp_path, tiny_config, capsys):
    cache = tiny_config.parent / "cache"
    rc = main(
        ["demo", "--quick", "--out", str(tmp_path), "--cache-dir", str(cache), "--no-progress"]
    )
    assert rc == 0
    for name in ("robustness.csv", "robustness.md", "angle_sweep.png", "predictions.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    text = capsys.readouterr().out
    assert "RISurConv" in text and "PointNet++" in text and "z/SO3" in text


def test_python_dash_m_subprocess(trained):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pointlib",
            "eval",
            "--checkpoint",
            str(trained),
            "--rotation",
            "z",
            "-R",
            "1",
            "--out",
            str(trained / "sub"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "z/z: OA" in proc.stdout and (trained / "sub" / "eval.json").is_file()


def test_bench_runs_both_scripts_and_reports_missing(tmp_path, monkeypatch, capfd):
    import pointlib.cli.bench as bench

    monkeypatch.setattr(bench, "benchmarks_dir", lambda: tmp_path)
    assert main(["bench"]) == 2
    assert "benchmark scripts not found" in capfd.readouterr().err
    for name in ("bench_ops.py", "bench_models.py"):
        (tmp_path / name).write_text(f"import sys\nprint('{name}', sys.argv[1:])\n")
    assert main(["bench", "--quick", "--", "--threads", "1"]) == 0
    out = capfd.readouterr().out
    assert "== bench_ops.py ==" in out and "== bench_models.py ==" in out
    assert "bench_models.py ['--quick', '--threads', '1']" in out
