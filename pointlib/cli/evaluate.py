"""pointlib eval --checkpoint DIR/best.pt [--rotation none|z|so3] [--num-rotations R]
[--angles sweep|A,B,...] [--set data.root=...]

Rebuilds the model and the test set from the checkpoint (its saved config, with --set
overrides, e.g. another data.root), evaluates every requested rotation protocol with seeded
per-sample rotations, prints the results and writes eval.json (and, with --angles,
eval_sweep.png) next to the checkpoint, or into --out. Every file written is named at the end.
Rotation names are case-insensitive (so3 = SO3).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pointlib.cli._common import lower, make_parser
from pointlib.engine.config import ROTATIONS, ConfigError, apply_overrides, config_from_dict


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("pointlib eval", __doc__ or "")
    p.add_argument(
        "--checkpoint", "-k", required=True, type=Path, help="best.pt / last.pt, or a run folder"
    )
    p.add_argument(
        "--rotation",
        "-r",
        action="append",
        type=lower,
        choices=ROTATIONS,
        default=None,
        help="test-time rotation (repeatable; default: the config's eval.rotations)",
    )
    p.add_argument(
        "--num-rotations",
        "-R",
        type=int,
        default=None,
        help="rotated copies of the test set (default: eval.num_rotations)",
    )
    p.add_argument(
        "--angles",
        default=None,
        metavar="sweep|A,B,...",
        help="also evaluate fixed rotations about the tilted up axis: 'sweep' "
        "(eval.sweep_steps angles over 360°) or a list of degrees",
    )
    p.add_argument(
        "--split", default=None, help="dataset split to evaluate (default: the config's test)"
    )
    p.add_argument(
        "--set",
        "-s",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the saved config (e.g. data.root=...)",
    )
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        default=None,
        help="folder for eval.json / eval_sweep.png (default: beside the checkpoint)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="auto, cpu, cuda or cuda:N (default: the saved train.device)",
    )
    return p


def _angles(text: str, steps: int) -> list[float]:
    if text == "sweep":
        return [360.0 * k / steps for k in range(steps + 1)]
    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        msg = f"--angles: expected 'sweep' or degrees like 0,90,180, got {text!r}"
        raise ConfigError(msg) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_rotations is not None and args.num_rotations < 1:
        raise ConfigError("--num-rotations must be >= 1")
    from pointlib.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from pointlib.engine.data import build_data
    from pointlib.engine.distributed import DistInfo
    from pointlib.engine.evaluate import summarise
    from pointlib.engine.rotations import sweep_rotation
    from pointlib.engine.trainer import evaluate_test, resolve_device

    state = load_checkpoint(args.checkpoint)
    if not state.get("config"):
        raise ConfigError(f"{state['path']} has no saved config; cannot rebuild its test set")
    raw = apply_overrides(dict(state["config"]), args.overrides)
    if args.split:
        raw["data"]["test_split"] = args.split
    if args.device:
        raw["train"]["device"] = args.device
    cfg = config_from_dict(raw)
    flag = "--device" if args.device else "train.device (saved in the checkpoint's config)"
    device = resolve_device(cfg.train.device, DistInfo(), flag=flag)
    model = model_from_checkpoint(state).to(device)
    data = build_data(cfg)
    rotations = args.rotation or cfg.eval.rotations
    results = evaluate_test(
        cfg,
        model,
        data,
        rotations=rotations,
        num_rotations=args.num_rotations,
        device=device,
        progress=cfg.train.progress,
    )
    payload = {
        "checkpoint": state["path"],
        "model": state["model_name"],
        "train_rotation": cfg.augment.rotation,
        "split": cfg.data.test_split,
        "protocols": {k: v.as_dict() for k, v in results.items()},
    }
    for rot, res in results.items():
        print(f"{state['model_name']} {cfg.augment.rotation}/{rot}: {summarise(res, cfg.task)}")
    out = args.out or Path(state["path"]).parent
    written: list[Path] = []
    if args.angles:
        key = "instance_miou" if cfg.task == "partseg" else "oa"
        angles = _angles(args.angles, cfg.eval.sweep_steps)
        values = []
        for a in angles:
            R = sweep_rotation(a, data.up_axis, cfg.eval.sweep_tilt_deg)
            r = evaluate_test(
                cfg, model, data, rotations=["none"], device=device, fixed_rotation=R
            )["none"]
            values.append(r.copies[0][key])
            print(f"  angle {a:6.1f}°: {key} {100 * values[-1]:.2f}")
        payload["sweep"] = {"angles": angles, key: values, "tilt_deg": cfg.eval.sweep_tilt_deg}
        from pointlib.engine.plots import plot_sweep

        n = len(data.test)
        plot_sweep(
            angles,
            {state["model_name"]: values},
            out / "eval_sweep.png",
            ylabel="instance mIoU (%)" if key == "instance_miou" else "overall accuracy (%)",
            note=f"each point: all {n} test samples rotated by that angle "
            f"(axis tilted {cfg.eval.sweep_tilt_deg:g}° from {data.up_axis})",
        )
        written.append(out / "eval_sweep.png")
    from pointlib.engine.outputs import atomic_write_text, dumps_json

    atomic_write_text(out / "eval.json", dumps_json(payload))
    written.insert(0, out / "eval.json")
    print("wrote " + ", ".join(str(w) for w in written))
    return 0
