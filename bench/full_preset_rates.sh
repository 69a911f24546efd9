#!/usr/bin/env bash
# Step rates behind the `--preset full` time estimate: profile + validate a LUT at the preset's width,
# 80 search steps, and 80 training steps of each model `spnas run` trains, one after another.
# Usage: bash bench/full_preset_rates.sh OUT_DIR [WIDTH]   (about 6 minutes at width 1.0)
# Prints the measured rates and the estimate for 8 search epochs and 15 training epochs of 54,000 images.
set -euo pipefail
out=$1; width=${2:-1.0}
searched="small:k5e3,skip,k3e3,skip|k5e6,k5e6,k5e6,k5e6|k5e6,k5e6,k5e6,k5e6|k5e6,k5e6,k5e6,k5e6|k5e6,k5e6,k5e6,skip"
mkdir -p "$out"
timed() {  # NAME COMMAND...: wall seconds to $out/times.txt, stderr (the progress bar) to $out/NAME.err
  local name=$1; shift
  local t0 rc=0; t0=$(date +%s)
  "$@" > /dev/null 2> "$out/$name.err" || rc=$?
  # --max-steps stops like an interrupt (exit 130, checkpoint saved): expected here
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ]; then tail -n 3 "$out/$name.err" >&2; exit "$rc"; fi
  echo "$name $(( $(date +%s) - t0 ))" >> "$out/times.txt"
}
: > "$out/times.txt"
timed profile spnas latency profile --space small --width "$width" --warmup 5 --repeats 200 --out "$out/lut.json"
timed validate spnas latency validate --lut "$out/lut.json" --samples 100 --warmup 3 --repeats 100 \
  --write-calibration --out "$out/validation"
timed search spnas search --data fashion-mnist --lut "$out/lut.json" --width "$width" --target-ms 0.3 \
  --max-steps 80 --out "$out/search" --force
for model in uniform-k3e3 uniform-k3e6 uniform-k5e6 "$searched"; do
  name=train_${model#uniform-}; name=${name%%:*}
  timed "$name" spnas train "$model" --data fashion-mnist --width "$width" --epochs 15 --max-steps 80 \
    --out "$out/$name" --force
done
python3 - "$out" <<'PY'
import pathlib, re, statistics, sys
out = pathlib.Path(sys.argv[1])
walls = dict(line.split() for line in (out / "times.txt").read_text().splitlines())
steps = {"search": 8 * 421, "train_k3e3": 15 * 421, "train_k3e6": 15 * 421, "train_k5e6": 15 * 421,
         "train_small": 15 * 421}
total = int(walls["profile"]) + int(walls["validate"])
print(f"LUT profile {walls['profile']} s, validation {walls['validate']} s")
print("| stage | steps/s (median of the last 20 readings) | steps in --preset full | estimated min |")
print("| --- | --- | --- | --- |")
for name, n in steps.items():
    rates = [float(r) for r in re.findall(r"([0-9.]+)step/s", (out / f"{name}.err").read_text())][-20:]
    rate = statistics.median(rates)
    total += n / rate
    print(f"| {name} | {rate:.2f} | {n} | {n / rate / 60:.0f} |")
print(f"total about {total / 3600:.1f} h (plus per-epoch validation and the final measurements)")
PY
