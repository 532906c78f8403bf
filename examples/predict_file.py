"""Classify your own point-cloud or mesh files with a trained checkpoint.

    python examples/predict_file.py --checkpoint runs/syn/best.pt my_scan.ply chair.off
    python examples/predict_file.py --demo     # trains a tiny 2-epoch model (the pipeline, not
                                               # the accuracy) and predicts two test clouds
                                               # saved x500 without normals

The same from the command line:

    pointlib predict --checkpoint runs/syn/best.pt my_scan.ply chair.off --rotations 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pointlib
from pointlib.engine.predict import format_predictions

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "risurconv_tiny_synthetic.yaml"


def _demo_inputs(folder: Path) -> tuple[Path, list[Path]]:
    """Train a one-epoch tiny model and write two test clouds, scaled x500 and without normals."""
    from pointlib.datasets import SyntheticShapes
    from pointlib.engine import load_config, train
    from pointlib.io import write_point_cloud

    small = [
        f"data.root={folder / 'cache'}",
        "data.num_points=128",
        "data.kwargs.samples_per_class=6",
        "train.epochs=2",
        "train.tensorboard=false",
        "eval.rotations=[none]",
        "eval.angle_sweep=false",
    ]
    train(load_config(CONFIG, small), folder / "run")
    test = SyntheticShapes(folder / "cache", "test", 128, samples_per_class=6)
    files = []
    for i in (0, len(test) - 1):
        item = test[i]
        files.append(write_point_cloud(folder / f"{test.names[i]}.xyz", item["xyz"] * 500.0))
    return folder / "run" / "best.pt", files


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, help="best.pt or a run folder")
    p.add_argument("files", nargs="*", type=Path, help="point-cloud / mesh files")
    p.add_argument("--rotations", type=int, default=4, help="rotations of the certificate")
    p.add_argument("--demo", action="store_true", help="train a tiny model and predict its data")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            checkpoint, files = _demo_inputs(Path(tmp))
        elif args.checkpoint is None or not args.files:
            p.error("give --checkpoint and at least one file, or --demo")
        else:
            checkpoint, files = args.checkpoint, args.files
        preds = pointlib.predict(checkpoint, files, top_k=3, rotations=args.rotations)
        print(format_predictions(preds, "text"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
