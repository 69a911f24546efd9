#!/usr/bin/env bash
# Real searches on Fashion-MNIST (small space, onnxruntime-cpu LUT of this machine) at several targets,
# two at a time, one core each.
# Usage: bash bench/search_targets.sh LUT OUT_DIR EPOCHS TRAIN_SUBSET TARGET_MS...
# Extra `spnas search` options go in SEARCH_ARGS, e.g. SEARCH_ARGS='--lambda-gain 0'.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one core per search; two run side by side
lut=$1; out=$2; epochs=$3; subset=$4; shift 4
mkdir -p "$out"
search() {
  /usr/bin/time -f "%e s wall" -o "$out/time_$1.txt" \
    spnas search --lut "$lut" --epochs "$epochs" --train-subset "$subset" --target-ms "$1" \
      --indicator-scale init-norm --out "$out/target_$1" --force ${SEARCH_ARGS:-} 2> "$out/log_$1.txt"
}
running=0
for t in "$@"; do
  search "$t" &
  running=$((running + 1))
  if [ "$running" -ge 2 ]; then wait -n; running=$((running - 1)); fi
done
wait
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| target ms | predicted ms | in [0.95 T, T] | last-step ms | repair flips | wall | architecture |")
print("|---|---|---|---|---|---|---|")
for d in sorted(out.glob("target_*")):
    a = json.loads((d / "arch.json").read_text())
    t, p = a["target_ms"], a["predicted_ms"]
    ok = 0.95 * t <= p <= t
    print(f"| {t} | {p:.3f} | {'yes' if ok else 'NO'} | {a['last_step_predicted_ms']:.3f} | {len(a['repair_flips'])} "
          f"| {a['search_wall_s'] / 60:.1f} min | `{a['string'].split(':', 1)[1]}` |")
PY
