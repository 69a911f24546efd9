#!/usr/bin/env bash
# Held-out accuracy of the runtime model on this machine (onnxruntime-cpu, 1 thread).
# Usage: bash bench/latency_accuracy.sh [OUT_DIR]   (both spaces: about 72 s on 2 cores; warm-cache protocol)
set -euo pipefail
out=${1:-bench/results/latency}
mkdir -p "$out"
spnas latency profile --space small --repeats 200 --out "$out/lut_small.json"
spnas latency validate --lut "$out/lut_small.json" --samples 100 --repeats 100 --out "$out/small"
spnas latency profile --space imagenet --num-classes 1000 --repeats 30 --warmup 3 --out "$out/lut_imagenet.json"
spnas latency validate --lut "$out/lut_imagenet.json" --samples 40 --repeats 15 --warmup 2 --out "$out/imagenet"
