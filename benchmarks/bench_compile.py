"""``torch.compile(model)`` against eager: compile time and step time of one model and mode.

One process: builds the model (seeded), times ``--repeats`` eager steps, then compiles the same
model with ``--backend`` and reports the first compiled step (tracing + compilation + one step)
and the median of ``--repeats`` further compiled steps. ``--phase train`` is forward +
cross-entropy + backward + Adam in ``train()``; ``--phase forward`` is ``eval()`` under
``torch.no_grad``. Prints one JSON line (also written to ``--json``).

Usage::

    timeout 900 python benchmarks/bench_compile.py --model risurconv_cls_tiny --backend inductor
    python benchmarks/bench_compile.py --model risurconv_cls_tiny --backend aot_eager --faithful
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="risurconv_cls_tiny")
    p.add_argument("--backend", default="inductor")
    p.add_argument("--faithful", action="store_true")
    p.add_argument("--phase", default="train", choices=["train", "forward"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    from pointlib.models import create_model
    from pointlib.testing import make_cloud

    if args.threads:
        torch.set_num_threads(args.threads)
    seg = "partseg" in args.model
    kw = dict(num_parts=50, num_categories=16) if seg else dict(num_classes=40)
    torch.manual_seed(0)
    model = create_model(args.model, faithful=args.faithful, **kw)
    B, N = args.batch, args.points
    xyz, nrm = make_cloud(B, N, generator=torch.Generator().manual_seed(0))
    extra = [torch.arange(B) % 16] if seg else []
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 50 if seg else 40, (B, N) if seg else (B,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(run) -> float:
        t0 = time.perf_counter()
        if args.phase == "train":
            model.train()
            opt.zero_grad(set_to_none=True)
            out = run(xyz, nrm, *extra)
            logits = out.reshape(-1, out.shape[-1])
            torch.nn.functional.cross_entropy(logits, target.reshape(-1)).backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad():
                run(xyz, nrm, *extra)
        return time.perf_counter() - t0

    step(model)  # warm-up
    eager = [step(model) for _ in range(args.repeats)]
    compiled = torch.compile(model, backend=args.backend)
    first = step(compiled)
    comp = [step(compiled) for _ in range(args.repeats)]
    res = dict(
        model=args.model, faithful=args.faithful, backend=args.backend, phase=args.phase,
        batch=B, points=N, threads=torch.get_num_threads(), torch=torch.__version__,
        eager_median_s=statistics.median(eager), compiled_first_s=first,
        compiled_median_s=statistics.median(comp), loadavg=os.getloadavg(),
    )  # fmt: skip
    res["speedup"] = res["eager_median_s"] / res["compiled_median_s"]
    print(json.dumps(res), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
