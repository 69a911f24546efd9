#!/usr/bin/env bash
# Install spnas and what it needs into the current Python environment (activate a venv first if you
# want one). Idempotent: re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# 1. torch: the CPU build pinned here first, so that installing the project (torch>=2.2) pulls nothing
#    bigger. Users with their own torch >= 2.2 (CUDA builds included) keep it.
if ! "$PY" -c 'import torch, sys; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 2))' 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi

# 2. the project with its test tools
"$PY" -m pip install --quiet -e ".[dev]"

# 3. the default dataset: Fashion-MNIST from Debian's package, where apt exists
DATA=/usr/share/datasets/fashion-mnist
if [ ! -e "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -e "$DATA/train-images-idx3-ubyte" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  else
    echo "note: Fashion-MNIST is not in $DATA; install it with 'sudo apt-get install dataset-fashion-mnist'" >&2
    echo "      or point SPNAS_DATA_DIR / --data-dir at a directory with the four IDX files." >&2
  fi
fi
echo "spnas is installed: $("$PY" -m spnas --version)"
