"""pointlib predict --checkpoint RUN/best.pt FILE [FILE ...] [--top-k K] [--rotations R]
[--format text|csv|json] [--output PATH] [--category NAME] [--parts-dir DIR]

Classifies (or part-segments) your own files with a trained checkpoint. Point clouds: .ply,
.pcd, .xyz, .txt, .npz; meshes: .off, .obj, .stl and .ply with faces (their surface is sampled).
Every file gets exactly the preprocessing the checkpoint's training data had (point count and
sampling, normalisation, where normals come from), printed first. A warning follows any input
that is far from the training inputs (fewer points, missing normals, scale or position when the
model does not normalise). --rotations R adds an invariance certificate: the largest |Δlogit|
and the label agreement between the input and R Haar-random rotations of it.

Exit status: 0, or 2 for a user error (missing or unreadable file, bad option), one line on
stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pointlib.cli._common import Parser, lower, make_parser


def build_parser() -> Parser:
    p = make_parser("pointlib predict", __doc__ or "")
    p.add_argument(
        "--checkpoint",
        "-k",
        required=True,
        type=Path,
        metavar="CKPT",
        help="best.pt / last.pt, or a run folder",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="input files (any mix)")
    p.add_argument(
        "--top-k",
        "-n",
        type=int,
        default=5,
        metavar="K",
        help="classes listed per input (default 5)",
    )
    p.add_argument(
        "--rotations",
        "-R",
        type=int,
        default=0,
        metavar="R",
        help="invariance certificate over R Haar-random rotations of each input (default 0: none)",
    )
    p.add_argument(
        "--format",
        "-f",
        type=lower,
        choices=("text", "csv", "json"),
        default="text",
        help="output format (default text; json is strict, csv has one row per input)",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the output to this file (atomic)",
    )
    p.add_argument(
        "--category",
        default=None,
        metavar="NAME",
        help="part segmentation: the object category (name or index), required there",
    )
    p.add_argument(
        "--parts-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="part segmentation: write <file stem>_parts.ply, coloured by predicted part, here",
    )
    p.add_argument(
        "--as",
        dest="kind",
        type=lower,
        choices=("auto", "points", "mesh"),
        default="auto",
        help="how to read the files (default auto: .ply with faces is a mesh)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of mesh sampling, random point sampling and the rotations (default 0)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pointlib.engine.config import ConfigError

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    if args.rotations < 0:
        raise ConfigError(f"--rotations must be >= 0, got {args.rotations}")
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"input file not found: {', '.join(missing)}")
    from pointlib.engine.predict import Predictor, format_predictions, predict

    pr = Predictor(args.checkpoint, device=args.device)
    if args.parts_dir is not None and pr.task != "partseg":
        raise ConfigError("--parts-dir is for part-segmentation checkpoints only")
    header = f"{pr.model_name} from {pr.path}: {pr.preprocessing.describe()}"
    print(header, file=sys.stderr if args.format != "text" or args.output else sys.stdout)
    for note in pr.notes:
        print(f"warning: {note}", file=sys.stderr)
    preds = predict(
        pr,
        [str(f) for f in args.files],
        top_k=args.top_k,
        rotations=args.rotations,
        seed=args.seed,
        category=args.category,
        parts_dir=args.parts_dir,
        kind=args.kind,
    )
    text = format_predictions(preds, args.format)
    if args.output is not None:
        from pointlib.engine.outputs import atomic_write_text

        atomic_write_text(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    n_warn = sum(1 for p in preds if p.warnings)
    if n_warn and (args.format != "text" or args.output is not None):
        print(f"{n_warn} of {len(preds)} inputs have warnings (see the output)", file=sys.stderr)
    return 0
