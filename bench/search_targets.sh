#!/usr/bin/env bash
# Real searches on Fashion-MNIST (small space, onnxruntime-cpu LUT of this machine) at three targets.
# Usage: bash bench/search_targets.sh LUT [OUT_DIR] [EPOCHS] [TRAIN_SUBSET]
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one core per search; two can run side by side
lut=$1; out=${2:-runs/bench_search}; epochs=${3:-6}; subset=${4:-20000}
mkdir -p "$out"
for t in 0.46 0.52 0.58; do
  /usr/bin/time -f "%e s wall" -o "$out/time_$t.txt" \
    spnas search --lut "$lut" --epochs "$epochs" --train-subset "$subset" --target-ms "$t" \
      --indicator-scale init-norm --out "$out/target_$t" --force
done
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| target ms | predicted ms | within 5% under | wall | architecture |")
print("|---|---|---|---|---|")
for d in sorted(out.glob("target_*")):
    a = json.loads((d / "arch.json").read_text())
    t = a["target_ms"]; p = a["predicted_ms"]
    ok = 0.95 * t <= p <= t
    print(f"| {t} | {p:.3f} | {'yes' if ok else 'NO'} | {a['search_wall_s'] / 60:.1f} min | `{a['string']}` |")
PY
