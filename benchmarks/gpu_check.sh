#!/usr/bin/env bash
# GPU check of pointlib's CUDA half (issue 12): build, correctness, sanitizer, op and model
# benchmarks, a short real-data training and the z/SO3 evaluation, in one run of <= 8 minutes.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine (repository root)
#   bash benchmarks/gpu_check.sh --dry-run       # CPU: every step's code path, tiny sizes
#   bash benchmarks/gpu_check.sh --prepare-data  # CPU: fill .device/data (run before `run`)
#
# Results go to $OUT when set (the device tool's result folder), else gpu_check_out/<UTC time>:
#   build.log, backends.txt, pytest_cuda.log, sweep.json, sanitizer.log, bench_ops_{1024,2048}.json,
#   bench_models_{fp32,bf16}.json, train/ (run folder), eval_fp32/, eval_bf16/, summary.txt.
#
# Data: only the working tree travels to the GPU machine (../shared does not), so the training
# step reads .device/data (git-ignored: `.device/` in .gitignore). `--prepare-data` copies a
# subset of the ModelNet40 mini from $POINTLIB_DATA_ROOT (default ../shared/data): airplane and
# bathtub, at most 100 train + 25 test shapes each, the first 1024 of their 2048 points (~15 MiB),
# with trimmed split files. Without it the training step falls back to SyntheticShapes
# generated on the machine (configs/risurconv_tiny_synthetic.yaml). With the device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".device/data"], timeout_s=540)
#
# GPU_CHECK_STEPS=<bash regex> runs only the matching steps (e.g. 'train|eval' for a rerun).
# Every step has its own time limit (`timeout`, SIGINT first) and all of them share one deadline,
# 470 s after the start (GPU_CHECK_BUDGET_S): a step gets min(its limit, time left) and is skipped
# when under 5 s are left, so the whole run stays within 8 minutes. A failing step is recorded
# and the script goes on; the exit status is the number of failed or skipped steps. Limits (s):
# build 120, backends 20, cuda tests 40, sweep 40, sanitizer 40, bench_ops 2 x 30,
# bench_models 2 x 45, train 120 (the "2-minute training"), eval 2 x 25.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=gpu
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --prepare-data) MODE=prepare ;;
  "") ;;
  *) echo "usage: $0 [--dry-run|--prepare-data]" >&2; exit 2 ;;
esac

DATA="$ROOT/.device/data"
MINI=modelnet40_normal_resampled_mini

if [ "$MODE" = prepare ]; then
  SRC="${POINTLIB_DATA_ROOT:-$ROOT/../shared/data}/$MINI"
  [ -d "$SRC" ] || { echo "no ModelNet40 mini at $SRC (set POINTLIB_DATA_ROOT)" >&2; exit 1; }
  rm -rf "${DATA:?}/$MINI" && mkdir -p "$DATA/$MINI"
  python - "$SRC" "$DATA/$MINI" <<'EOF'
import sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
classes, per = ["airplane", "bathtub"], {"train": 100, "test": 25}
# all 40 names (the loader checks them); only the two classes' shapes are copied
(dst / "modelnet40_shape_names.txt").write_text((src / "modelnet40_shape_names.txt").read_text())
for split, limit in per.items():
    names = (src / f"modelnet40_{split}.txt").read_text().split()
    keep = []
    for c in classes:
        keep += [n for n in names if n.rsplit("_", 1)[0] == c][:limit]
    (dst / f"modelnet40_{split}.txt").write_text("".join(n + "\n" for n in keep))
    for n in keep:
        c = n.rsplit("_", 1)[0]
        (dst / c).mkdir(exist_ok=True)
        lines = (src / c / f"{n}.txt").read_text().splitlines()[:1024]
        (dst / c / f"{n}.txt").write_text("\n".join(lines) + "\n")
print(f"wrote {sum(1 for _ in dst.rglob('*_*.txt'))} shapes to {dst}")
EOF
  du -sh "$DATA"
  exit 0
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES="${OUT:-$ROOT/gpu_check_out/$STAMP}"
mkdir -p "$RES"
SUMMARY="$RES/summary.txt"
: >"$SUMMARY"
FAILED=0
T_START=$(date +%s)
DEADLINE=$((T_START + ${GPU_CHECK_BUDGET_S:-470}))

if [ "$MODE" = dry ]; then
  # CPU dry run: tiny sizes; a shared CPU is slower than the GPU machine, so limits scale by 3
  # and the 8-minute deadline does not apply (GPU_CHECK_BUDGET_S still caps it).
  DEV=cpu BATCH=2 SIZES="128" SCALE=3
  DEADLINE=$((T_START + ${GPU_CHECK_BUDGET_S:-1800}))
  export POINTLIB_DATA_ROOT="${POINTLIB_DATA_ROOT:-$ROOT/../shared/data}"
else
  DEV=cuda BATCH=32 SIZES="1024 2048" SCALE=1
fi

# step NAME LIMIT_S CMD...: run with a time limit, log to $RES/NAME.log, record the outcome.
step() {
  local name=$1 limit=$2
  shift 2
  local t0 rc left
  if [ -n "${GPU_CHECK_STEPS:-}" ] && ! [[ $name =~ $GPU_CHECK_STEPS ]]; then
    echo "=== [$name] not selected (GPU_CHECK_STEPS=$GPU_CHECK_STEPS)" | tee -a "$SUMMARY"
    return 0
  fi
  t0=$(date +%s)
  left=$((DEADLINE - t0))
  if [ "$left" -lt 5 ]; then
    echo "=== [$name] SKIPPED: the 8-minute budget is spent" | tee -a "$SUMMARY"
    FAILED=$((FAILED + 1))
    return 0
  fi
  limit=$((limit * SCALE))
  [ "$limit" -le "$left" ] || limit=$left
  echo "=== [$name] (limit ${limit}s) $*" | tee -a "$SUMMARY"
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$RES/$name.log" 2>&1
  rc=$?
  tail -n 25 "$RES/$name.log"
  echo "--- [$name] rc=$rc in $(($(date +%s) - t0))s (total $(($(date +%s) - T_START))s)" |
    tee -a "$SUMMARY"
  [ $rc -eq 0 ] || FAILED=$((FAILED + 1))
  return 0
}

{
  echo "mode=$MODE device=$DEV date=$STAMP host=$(hostname)"
  python -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'
  command -v nvcc >/dev/null && nvcc --version | tail -n 2
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
} 2>&1 | tee -a "$SUMMARY"

# 1. Build the extension with CUDA kernels for sm_90 (dry run: the CPU build that exists).
if [ "$MODE" = gpu ]; then
  step build 120 env POINTLIB_BUILD_EXT=cuda TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 \
    pip install --no-deps --no-build-isolation -e .
else
  echo "dry run: would run POINTLIB_BUILD_EXT=cuda TORCH_CUDA_ARCH_LIST=9.0 pip install" \
    "--no-deps --no-build-isolation -e . ; using the extension already built here" | tee -a "$SUMMARY"
fi
step backends 20 python -c 'import pointlib, pointlib._ext as e, pointlib.ops as o
print(e.describe()); print("cpu:", o.available_backends(device="cpu"))
print("cuda:", o.available_backends(device="cuda"))
for op in ("knn", "ball_query", "fps", "knn_ragged", "ball_query_ragged", "fps_ragged"):
    print(op, o.available_backends(op, device="cuda"))'
cp "$RES/backends.log" "$RES/backends.txt"

# 2. cuda-marked tests, the seeded sweep against the reference, compute-sanitizer memcheck.
if [ "$MODE" = gpu ]; then
  step pytest_cuda 40 env POINTLIB_REQUIRE_EXT=1 python -m pytest -q -p no:xdist -m cuda \
    tests/ops tests/features tests/interop -rs
  step sweep 40 python benchmarks/cuda_sweep.py --backend cuda --seeds 3 --json "$RES/sweep.json"
  if command -v compute-sanitizer >/dev/null; then
    step sanitizer 40 compute-sanitizer --tool memcheck --error-exitcode 1 \
      python benchmarks/cuda_sweep.py --backend cuda --one-call
  else
    echo "compute-sanitizer not found: memcheck skipped" | tee -a "$SUMMARY"
    FAILED=$((FAILED + 1))
  fi
else
  step pytest_cuda 60 python -m pytest -q -p no:xdist -m cuda --co tests/ops tests/features \
    tests/interop
  step sweep 120 python benchmarks/cuda_sweep.py --backend cpu --seeds 1 --json "$RES/sweep.json"
  step sanitizer 60 python benchmarks/cuda_sweep.py --backend cpu --one-call
fi

# 3. Point ops: pointlib CUDA vs pure-torch CUDA (and torch-cluster / PyG if importable).
for n in $SIZES; do
  step "bench_ops_$n" 30 python benchmarks/bench_ops.py --device "$DEV" --batch "$BATCH" \
    --sizes "$n" --repeat 5 --json "$RES/bench_ops_$n.json"
done

# 4. Models: forward and train step, fp32 and bf16 autocast, fixed and faithful modes.
if [ "$MODE" = gpu ]; then
  MB=""
else
  # risurconv_cls needs N >= 1024; on the shared CPU one fixed-mode model is all that fits
  MB="--batch 2 --points 1024 --repeats 1 --warmup 0 --models risurconv_cls --modes fixed"
fi
for amp in none bf16; do
  tag=$([ $amp = none ] && echo fp32 || echo bf16)
  # shellcheck disable=SC2086
  step "bench_models_$tag" "$([ "$MODE" = dry ] && echo 120 || echo 45)" python benchmarks/bench_models.py --device "$DEV" --amp "$amp" \
    $MB --json "$RES/bench_models_$tag.json"
done

# 5. Train on real shapes (2 minutes), then z/SO3 evaluation in fp32 and under bf16 autocast.
if [ -d "$DATA/$MINI" ]; then
  CFG=configs/risurconv_tiny_modelnet40_mini.yaml
  SETS=(--set "data.root=$DATA/$MINI")
else
  echo "no $DATA/$MINI (run --prepare-data on the CPU machine): SyntheticShapes instead" |
    tee -a "$SUMMARY"
  CFG=configs/risurconv_tiny_synthetic.yaml
  SETS=(--set "data.root=$RES/synthetic_cache")
fi
if [ "$MODE" = gpu ]; then
  SETS+=(--set train.device=cuda --set train.epochs=40 --set train.progress=false)
  TRAIN_S=120
else
  SETS+=(--set train.device=cpu --set train.max_steps=2 --set train.epochs=1
    --set train.progress=false --set data.max_train_samples=32 --set data.max_test_samples=16)
  TRAIN_S=120
fi
# SIGINT at the limit: the trainer stops, writes last.pt and the results of the steps done.
step train "$TRAIN_S" python -m pointlib train --config "$CFG" "${SETS[@]}" \
  --set train.tensorboard=false --set "eval.rotations=[none]" --set eval.angle_sweep=false \
  --out "$RES/train" --overwrite
CKPT="$RES/train/best.pt"
[ -f "$CKPT" ] || CKPT="$RES/train/last.pt"
EVSETS=()
[ "$MODE" = dry ] && EVSETS=(--set data.max_test_samples=16)
step eval_fp32 25 python -m pointlib eval --checkpoint "$CKPT" -r z -r so3 -R 3 \
  --device "$DEV" "${SETS[@]:0:2}" "${EVSETS[@]}" --out "$RES/eval_fp32"
step eval_bf16 25 python -m pointlib eval --checkpoint "$CKPT" -r z -r so3 -R 3 \
  --device "$DEV" "${SETS[@]:0:2}" "${EVSETS[@]}" --set eval.amp=true \
  --set train.amp_dtype=bfloat16 --out "$RES/eval_bf16"
python - "$RES" <<'EOF' 2>&1 | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
res = Path(sys.argv[1])
for tag in ("fp32", "bf16"):
    f = res / f"eval_{tag}" / "eval.json"
    if not f.exists():
        print(f"eval_{tag}: no eval.json"); continue
    data = json.loads(f.read_text())
    for rot, r in data.get("protocols", data).items():
        if isinstance(r, dict) and "invariance_error" in r:
            acc = {k: v for k, v in r.items() if k.endswith("_mean")}
            print(f"eval_{tag} {rot}: {acc} invariance_error={r['invariance_error']:.3g}")
m = res / "train" / "metrics.csv"
if m.exists():
    print("train metrics.csv (last rows):", *m.read_text().splitlines()[-3:], sep="\n  ")
EOF

echo "done: $FAILED failed step(s), $(($(date +%s) - T_START))s, results in $RES" | tee -a "$SUMMARY"
exit "$FAILED"
