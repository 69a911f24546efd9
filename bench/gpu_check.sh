#!/usr/bin/env bash
# The GPU check (issue 29): one command, at most 8 minutes on a machine with a CUDA GPU, writing
# gpu_check.json, gpu_check.md (one table), profile_top15.txt and spnas_run.log into OUT.
#
#   bash bench/gpu_check.sh --prepare      # here, once: Fashion-MNIST and the simplejpeg wheel into .gpu_data/
#   bash bench/gpu_check.sh [OUT] [gpu_check.py options...]   # there (OUT default: bench/results/gpu_check)
#
# The GPU machine needs torch with CUDA, numpy, tqdm, pyyaml, matplotlib, onnx, onnxruntime, onnxscript and
# Pillow (spnas runs from src/, uninstalled). A machine that cannot download gets the data and wheels from
# .gpu_data/ (carry that folder along).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p .gpu_data/fashion-mnist .gpu_data/wheels
  cp /usr/share/datasets/fashion-mnist/*-ubyte* .gpu_data/fashion-mnist/ 2>/dev/null \
    || echo "note: Fashion-MNIST is not in /usr/share/datasets/fashion-mnist; the small-space checks will fail" >&2
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu_data/wheels simplejpeg || echo "note: no simplejpeg wheel; PIL decodes the folder" >&2
  du -sh .gpu_data
  exit 0
fi

OUT=${1:-bench/results/gpu_check}
shift || true
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -d .gpu_data/wheels ] && ls .gpu_data/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site .gpu_data/wheels/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/gpu_check_site"
fi
[ -d .gpu_data/fashion-mnist ] && export SPNAS_DATA_DIR="$PWD/.gpu_data/fashion-mnist"
python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu_check: no CUDA GPU visible to torch" >&2; exit 2; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
timeout 470 python3 bench/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log" | grep -v "it/s\]\|img/s\]"
exit "${PIPESTATUS[0]}"
