"""Fixed-mode RISurConv cost of this checkout against another one (e.g. the previous commit).

Each repetition runs one fresh subprocess per tree, alternating ``base, this, base, this, ...``
so that the load of a shared machine hits both alike; each subprocess builds the model (seeded),
runs one warm-up, then times one eval forward (``inference_mode``) and one training step
(forward + cross-entropy + backward + Adam) on generic clouds. Reported: the median CPU time
(``time.process_time``; with ``--threads 1`` it is robust to other processes' load) and wall
time per tree, and the ratio this/base.

    git worktree add --detach ../base HEAD~1          # the tree to compare against
    python benchmarks/bench_against.py --base ../base --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from pointlib.models import create_model
from pointlib.testing import make_cloud
name, B, N = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seg = "partseg" in name
torch.manual_seed(0)
kw = dict(num_parts=50, num_categories=16) if seg else dict(num_classes=40)
model = create_model(name, **kw)
xyz, nrm = make_cloud(B, N, generator=torch.Generator().manual_seed(0))
cat = torch.arange(B) % 16
extra = [cat] if seg else []
target = torch.randint(0, 50 if seg else 40, (B, N) if seg else (B,))
opt = torch.optim.Adam(model.parameters(), 1e-3)
def step():
    model.train(); opt.zero_grad()
    out = model(xyz, nrm, *extra)
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))
    loss.backward(); opt.step()
def fwd():
    model.eval()
    with torch.inference_mode():
        model(xyz, nrm, *extra)
res = {}
for phase, fn in (("forward", fwd), ("train", step)):
    fn()
    c, w = time.process_time(), time.perf_counter()
    fn()
    res[phase] = (time.process_time() - c, time.perf_counter() - w)
print("RESULT " + json.dumps(res))
"""


def _run(tree: Path, threads: int, name: str, B: int, N: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), name, str(B), str(N)],
        env=env, capture_output=True, text=True, cwd=tree, check=False,
    )  # fmt: skip
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not line:
        raise SystemExit(f"{tree}: child failed\n{out.stderr[-2000:]}")
    return json.loads(line[0][7:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True, help="the other checkout")
    p.add_argument("--models", nargs="+", default=["risurconv_cls", "risurconv_partseg"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    sizes = {"risurconv_cls": (16, 1024), "risurconv_partseg": (4, 2048)}
    rows = []
    for name in a.models:
        B, N = sizes.get(name, (16, 1024))
        runs: dict[str, list[dict]] = {"base": [], "this": []}
        for _ in range(a.repeats):
            runs["base"].append(_run(a.base.resolve(), a.threads, name, B, N))
            runs["this"].append(_run(HERE, a.threads, name, B, N))
        for phase in ("forward", "train"):
            med = {
                t: [statistics.median(r[phase][i] for r in runs[t]) for i in (0, 1)] for t in runs
            }
            row = dict(model=name, phase=phase, B=B, N=N, threads=a.threads,
                       base_cpu_s=med["base"][0], this_cpu_s=med["this"][0],
                       base_wall_s=med["base"][1], this_wall_s=med["this"][1],
                       cpu_ratio=med["this"][0] / med["base"][0],
                       wall_ratio=med["this"][1] / med["base"][1])  # fmt: skip
            rows.append(row)
            print(f"{name:18s} {phase:7s} B={B} N={N}: cpu {row['base_cpu_s']:.2f} -> "
                  f"{row['this_cpu_s']:.2f} s (x{row['cpu_ratio']:.3f}), wall "
                  f"{row['base_wall_s']:.2f} -> {row['this_wall_s']:.2f} s "
                  f"(x{row['wall_ratio']:.3f})", flush=True)  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(dict(loadavg=os.getloadavg(), rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
