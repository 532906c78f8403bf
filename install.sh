#!/usr/bin/env bash
# Install pointlib into the current Python environment, building its C++ (and, where CUDA is
# present, CUDA) extension against the torch that is installed.
#
#   bash install.sh          # library + runtime dependencies
#   bash install.sh test     # ... plus test/benchmark dependencies (pytest, scipy, timm, torch-cluster)
#
# Environment: PYTHON (default python3), POINTLIB_BUILD_EXT=auto|none|cpu|cuda (default auto).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"

# Never let pip swap torch: keep the installed build if there is one, else take the pinned one
# (on the project machines that is the local CPU wheel). Every pip call below sees the pin,
# including the dependencies' own requirements (timm -> torchvision -> torch).
torch_version="$("$py" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if [[ -n "$torch_version" ]]; then
  echo "torch==$torch_version" > "$constraints"
else
  cp "$here/constraints.txt" "$constraints"
fi
export PIP_CONSTRAINT="$constraints"
# Source builds (our extension, torch-cluster) compile on two jobs; pip's wheel cache keeps them.
export DIST_EXTRA_CONFIG="$here/.ci/build.cfg"

"$py" -m pip install --quiet torch setuptools wheel ninja numpy
target="$here"
# torch-cluster is only a benchmark peer / optional backend: the test install builds it (once; pip
# caches the wheel), the plain install does not.
[[ "${1:-}" == "test" ]] && target="$here[test,cluster]"
# --no-build-isolation: build against the installed torch (an isolated build would fetch another).
"$py" -m pip install --quiet --no-build-isolation -e "$target"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
"$py" -c 'import pointlib, pointlib.ops as o; print("pointlib", pointlib.__version__, "backends:", ", ".join(o.available_backends()))'
