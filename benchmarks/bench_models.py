"""Forward / training-step time and peak memory of the RISurConv models, fixed vs faithful.

Configurations (issue 3): ``risurconv_cls`` (40 classes, B=16, N=1024) and ``risurconv_partseg``
(50 parts, 16 categories, B=8, N=2048), each in fixed (``faithful=False``) and faithful mode.

Timing: for each (model, phase) one subprocess builds the model in every mode (identical
weights) and runs the modes **interleaved** (A B B A ...) after ``--warmup`` steps each, so that
load drift on a shared machine affects all modes alike.

Memory: each (model, mode, phase) runs in a fresh subprocess: one batch-2 step (lazy
initialisation), then the measured first full-size step:

* CUDA: ``torch.cuda.max_memory_allocated`` over the measured phase, minus the allocation at its
  start (tensors only; the caching allocator's reserve is not counted).
* CPU: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's peak resident set) at the end
  minus the resident set at the start of the measured phase (``/proc/self/statm``), i.e. the
  peak *additional* RSS of the phase. It includes allocator slack and freed-but-unreturned
  memory (glibc), so it is an upper bound on the tensors' peak.

Times are medians over ``--repeats`` runs after ``--warmup`` runs: wall time
(``time.perf_counter``, with ``torch.cuda.synchronize`` on CUDA) and the process's CPU time
(``time.process_time``; on a shared, oversubscribed CPU machine, compare modes by CPU time with
``--threads 1``: wall time then mostly measures the other processes' load).

The training step is ``forward + cross_entropy + backward + Adam.step`` in train mode; the
forward is ``eval()`` under ``torch.inference_mode``.

Before/after comparison (``--compare DIR``, issue 11): the same measurements for two source
trees, e.g. a git worktree of the previous commit (``DIR``) and this one. One warm **worker
process per tree** builds the model once (same seed, same inputs) and the parent alternates
them step by step (A B B A ...), so load drift on a shared machine hits both alike; memory is
measured per tree in fresh processes as above. ``--phases compile`` times ``torch.compile(model)``
train steps (the compilation itself, the first steps, is reported separately as
``first_s``).

Usage::

    python benchmarks/bench_models.py                      # full sizes, CPU, both modes
    python benchmarks/bench_models.py --quick              # B/4, 1 repeat (smoke run)
    python benchmarks/bench_models.py --device cuda --json out.json
    python benchmarks/bench_models.py --device cuda --amp bf16   # forward/step under autocast
    git worktree add --detach ../base HEAD~1               # the "before" tree
    python benchmarks/bench_models.py --compare ../base --modes fixed --batch 16 \
        --models risurconv_cls --phases forward train --repeats 7

``--amp bf16|fp16`` wraps the forward (and the loss) in ``torch.autocast(device, dtype)``; the
backward and the optimiser step run outside it, as in the trainer (no GradScaler: timing only).
``--batch`` / ``--points`` override the configuration's sizes (tiny smoke runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

CONFIGS = {
    "risurconv_cls": dict(batch=16, points=1024, kwargs=dict(num_classes=40)),
    "risurconv_partseg": dict(batch=8, points=2048, kwargs=dict(num_parts=50, num_categories=16)),
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


AMP = {"none": None, "bf16": "bfloat16", "fp16": "float16"}


def _setup(model_name: str, modes: list[str], phase: str, device: str, batch: int, points: int,
           threads: int | None, amp: str = "none") -> dict[str, Any]:  # fmt: skip
    """Models (same weights in every mode), inputs and one ``step()`` closure per mode.

    ``phase``: ``"forward"`` (eval, inference mode), ``"train"`` (forward + cross-entropy +
    backward + Adam), ``"compile"`` (that train step with ``torch.compile(model)``) or
    ``"compile_forward"`` (the forward of the compiled model).
    """
    from contextlib import nullcontext

    import torch

    def autocast():
        if AMP[amp] is None:
            return nullcontext()
        return torch.autocast(torch.device(device).type, dtype=getattr(torch, AMP[amp]))

    from pointlib.models import create_model
    from pointlib.testing import make_cloud

    if threads:
        torch.set_num_threads(threads)
    cfg = CONFIGS[model_name]
    xyz, nrm = make_cloud(batch, points, generator=torch.Generator().manual_seed(0), device=device)
    seg = "partseg" in model_name
    cat = torch.arange(batch, device=device) % 16
    g = torch.Generator().manual_seed(1)
    if seg:
        target = torch.randint(0, 50, (batch, points), generator=g).to(device)
    else:
        target = torch.randint(0, 40, (batch,), generator=g).to(device)
    steps = {}
    state = None
    for mode in modes:
        torch.manual_seed(0)
        model = create_model(model_name, faithful=mode == "faithful", **cfg["kwargs"])
        if state is None:
            state = model.state_dict()
        model.load_state_dict(state)  # identical weights in both modes
        model.to(device)
        run = torch.compile(model) if phase.startswith("compile") else model

        def forward(model=run):
            with autocast():
                return model(xyz, nrm, cat) if seg else model(xyz, nrm)

        if phase in ("forward", "compile_forward"):
            model.eval()

            def step(forward=forward):
                with torch.inference_mode():
                    forward()
        else:
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def step(forward=forward, opt=opt):
                opt.zero_grad(set_to_none=True)
                out = forward()
                logits = out.reshape(-1, out.shape[-1]).float()
                torch.nn.functional.cross_entropy(logits, target.reshape(-1)).backward()
                opt.step()

        steps[mode] = step
    return steps


def run_worker(model_name: str, mode: str, phase: str, device: str, batch: int, points: int,
               threads: int | None, amp: str = "none") -> None:  # fmt: skip
    """Serve timed steps of one (tree, model, mode, phase) on stdin/stdout: each input line
    ``step`` runs one step and answers ``wall cpu`` (seconds); ``quit`` ends."""
    t0 = time.perf_counter()
    step = _setup(model_name, [mode], phase, device, batch, points, threads, amp)[mode]
    print(f"READY {time.perf_counter() - t0:.3f}", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        print(f"{time.perf_counter() - t0:.6f} {time.process_time() - c0:.6f}", flush=True)


def _tree_env(tree: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.path.abspath(tree) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_compare(trees: dict[str, str | None], warmup: int, repeats: int,
                **kw: Any) -> dict[str, Any]:  # fmt: skip
    """Alternate warm worker processes, one per tree (A B B A ...): per tree the wall and CPU
    times of the ``repeats`` steps after ``warmup`` (the first step's time, which includes
    ``torch.compile``'s compilation for the compile phase, is ``first_s``)."""
    procs = {}
    for label, tree in trees.items():
        procs[label] = subprocess.Popen(
            [sys.executable, __file__, "--_worker", json.dumps(kw)], env=_tree_env(tree),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
    res: dict[str, Any] = {label: dict(wall=[], cpu=[], first_s=None) for label in trees}
    try:
        for label, pr in procs.items():
            line = pr.stdout.readline()  # type: ignore[union-attr]
            if not line.startswith("READY"):
                raise SystemExit(f"worker {label} failed to start")

        def step(label: str) -> tuple[float, float]:
            pr = procs[label]
            pr.stdin.write("step\n")  # type: ignore[union-attr]
            pr.stdin.flush()  # type: ignore[union-attr]
            out = pr.stdout.readline().split()  # type: ignore[union-attr]
            if len(out) != 2:
                raise SystemExit(f"worker {label} died")
            return float(out[0]), float(out[1])

        labels = list(trees)
        for w in range(warmup):
            for label in labels:
                t = step(label)
                if w == 0:
                    res[label]["first_s"] = t[0]
        for r in range(repeats):
            for label in labels if r % 2 == 0 else labels[::-1]:
                wall, cpu = step(label)
                res[label]["wall"].append(wall)
                res[label]["cpu"].append(cpu)
    finally:
        for pr in procs.values():
            if pr.stdin:
                pr.stdin.close()
            pr.wait(timeout=60)
    return res


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_timing(
    model_name: str,
    modes: list[str],
    phase: str,
    device: str,
    batch: int,
    points: int,
    warmup: int,
    repeats: int,
    threads: int | None,
    amp: str = "none",
) -> dict[str, Any]:
    """Time every mode in this process, **interleaved** (A B B A ...), after ``warmup`` each."""
    import torch

    steps = _setup(model_name, modes, phase, device, batch, points, threads, amp)
    for _ in range(warmup):
        for mode in modes:
            steps[mode]()
    _sync(device)
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(repeats):
        order = modes if r % 2 == 0 else modes[::-1]
        for mode in order:
            t0, c0 = time.perf_counter(), time.process_time()
            steps[mode]()
            _sync(device)
            wall[mode].append(time.perf_counter() - t0)
            cpu[mode].append(time.process_time() - c0)
    return dict(wall=wall, cpu=cpu, threads=torch.get_num_threads())


def run_memory(model_name: str, mode: str, phase: str, device: str, batch: int, points: int,
               threads: int | None, amp: str = "none") -> dict[str, Any]:  # fmt: skip
    """Peak memory of the first full-size step of one mode, in a fresh process.

    One batch-2 step runs first (training BatchNorm on the global feature needs B >= 2), so
    that one-off lazy initialisation (kernels, thread pools, extension loading) is not counted.
    """
    import torch

    _setup(model_name, [mode], phase, device, min(2, batch), points, threads, amp)[mode]()
    steps = _setup(model_name, [mode], phase, device, batch, points, threads, amp)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    steps[mode]()
    _sync(device)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
        method = "torch.cuda.max_memory_allocated() - memory_allocated() at start"
    else:
        peak = _peak_rss_bytes() - base
        method = "ru_maxrss - RSS at start (fresh process, first full-size step)"
    return dict(peak_mem_mib=peak / 2**20, mem_method=method)


def _child(kind: str, tree: str | None = None, **kw: Any) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--_child", json.dumps(dict(kind=kind, **kw))],
        capture_output=True, text=True, check=False, env=_tree_env(tree),
    )  # fmt: skip
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit(f"benchmark child {kind} {kw} failed (rc={proc.returncode})")
    return json.loads(line[0][len("RESULT ") :])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="batch/4, 1 warmup, 1 repeat")
    p.add_argument("--json", default=None, help="write the results to this file")
    p.add_argument("--models", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--modes", nargs="*", default=["fixed", "faithful"])
    p.add_argument("--phases", nargs="*", default=["forward", "train"])
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--amp", default="none", choices=list(AMP), help="autocast dtype (none: fp32)")
    p.add_argument("--batch", type=int, default=None, help="override the configuration's batch")
    p.add_argument("--points", type=int, default=None, help="override the configuration's N")
    p.add_argument(
        "--compare",
        default=None,
        metavar="DIR",
        help="before/after: time and measure the tree DIR ('base') against this one",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._child:  # one measurement in a fresh process
        kw = json.loads(args._child)
        kind = kw.pop("kind")
        res = run_timing(**kw) if kind == "time" else run_memory(**kw)
        print("RESULT " + json.dumps(res))
        return 0
    if args._worker:
        run_worker(**json.loads(args._worker))
        return 0

    repeats = args.repeats or (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else 1
    load_start = os.getloadavg()
    results = []
    if args.compare:
        results = _main_compare(args, repeats, warmup)
    for name in [] if args.compare else args.models:
        cfg = CONFIGS[name]
        batch = max(1, cfg["batch"] // 4) if args.quick else cfg["batch"]
        batch = args.batch or batch
        points = args.points or cfg["points"]
        common = dict(model_name=name, device=args.device, batch=batch, points=points,
                      threads=args.threads, amp=args.amp)  # fmt: skip
        for phase in args.phases:
            t = _child("time", modes=args.modes, phase=phase, warmup=warmup, repeats=repeats,
                       **common)  # fmt: skip
            for mode in args.modes:
                mem = _child("memory", mode=mode, phase=phase, **common)
                r = dict(
                    model=name, mode=mode, phase=phase, device=args.device, amp=args.amp,
                    batch=batch, points=points, warmup=warmup, repeats=repeats,
                    threads=t["threads"],
                    wall_median_s=statistics.median(t["wall"][mode]), wall_s=t["wall"][mode],
                    cpu_median_s=statistics.median(t["cpu"][mode]), cpu_s=t["cpu"][mode], **mem,
                )  # fmt: skip
                r["samples_per_s"] = batch / r["wall_median_s"]
                results.append(r)
                print(f"{name:18s} {mode:8s} {phase:7s} amp={args.amp:4s} B={batch:2d} "
                      f"N={points:4d} wall {r['wall_median_s']:8.3f} s "
                      f"({r['samples_per_s']:7.1f}/s)  cpu {r['cpu_median_s']:8.3f} s  "
                      f"peak +{r['peak_mem_mib']:8.1f} MiB", flush=True)  # fmt: skip
    meta = dict(
        python=platform.python_version(), platform=platform.platform(),
        cpu_count=os.cpu_count(), loadavg_start=load_start, loadavg=os.getloadavg(),
        argv=sys.argv[1:],
    )  # fmt: skip
    try:
        import torch

        meta["torch"] = torch.__version__
        if args.device.startswith("cuda"):
            meta["gpu"] = torch.cuda.get_device_name()
    except Exception:  # pragma: no cover
        pass
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, results=results), f, indent=2)
    return 0


def _main_compare(args: argparse.Namespace, repeats: int, warmup: int) -> list[dict[str, Any]]:
    """``--compare``: per (model, mode, phase) the base tree against this one."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees: dict[str, str | None] = {"base": args.compare, "new": here}
    results = []
    for name in args.models:
        cfg = CONFIGS[name]
        batch = args.batch or (max(1, cfg["batch"] // 4) if args.quick else cfg["batch"])
        points = args.points or cfg["points"]
        common = dict(model_name=name, device=args.device, batch=batch, points=points,
                      threads=args.threads, amp=args.amp)  # fmt: skip
        for phase in args.phases:
            for mode in args.modes:
                t = run_compare(trees, warmup, repeats, mode=mode, phase=phase, **common)
                row: dict[str, Any] = dict(
                    model=name,
                    mode=mode,
                    phase=phase,
                    amp=args.amp,
                    batch=batch,
                    points=points,
                    warmup=warmup,
                    repeats=repeats,
                )
                for label, tree in trees.items():
                    row[f"{label}_wall_s"] = t[label]["wall"]
                    row[f"{label}_cpu_s"] = t[label]["cpu"]
                    row[f"{label}_wall_median_s"] = statistics.median(t[label]["wall"])
                    row[f"{label}_cpu_median_s"] = statistics.median(t[label]["cpu"])
                    row[f"{label}_first_s"] = t[label]["first_s"]
                    if not args.no_memory and not phase.startswith("compile"):
                        mem = _child("memory", tree=tree, mode=mode, phase=phase, **common)
                        row[f"{label}_peak_mem_mib"] = mem["peak_mem_mib"]
                ratio = row["base_wall_median_s"] / row["new_wall_median_s"]
                cratio = row["base_cpu_median_s"] / row["new_cpu_median_s"]
                row["speedup_wall"], row["speedup_cpu"] = ratio, cratio
                mem_txt = ""
                if "new_peak_mem_mib" in row:
                    mem_txt = (
                        f"  peak +{row['base_peak_mem_mib']:7.1f} -> "
                        f"{row['new_peak_mem_mib']:7.1f} MiB "
                        f"({row['new_peak_mem_mib'] / row['base_peak_mem_mib']:.2f}x)"
                    )
                print(f"{name:18s} {mode:8s} {phase:7s} B={batch:2d} N={points:4d}  "
                      f"wall {row['base_wall_median_s']:7.3f} -> {row['new_wall_median_s']:7.3f} s "
                      f"({ratio:.2f}x)  cpu {row['base_cpu_median_s']:7.3f} -> "
                      f"{row['new_cpu_median_s']:7.3f} s ({cratio:.2f}x)  first "
                      f"{row['base_first_s']:.1f} / {row['new_first_s']:.1f} s{mem_txt}",
                      flush=True)  # fmt: skip
                results.append(row)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
