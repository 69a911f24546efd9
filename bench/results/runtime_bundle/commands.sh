#!/usr/bin/env bash
# the exact script run in session 8 (BENCHMARKS.md section 10); its paths are that machine's
# issue 18 item 6, the device half: the bundle's profiler in a torch-free environment (numpy + onnxruntime
# only, as on a board), on this machine as the device, 60 whole networks; then --from-bundle-results
set -eu
B=/tmp/s8/bundle
rm -rf $B /tmp/s8/bundle_lut.json /tmp/s8/bundle_val
cd /work/main
spnas latency bundle --space small --width 0.5 --input-size 28 --in-channels 1 --num-classes 10 --networks ${NETWORKS:-60} --out $B 2>&1 | tail -2
sleep 60
echo "== device $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
(cd $B && /usr/bin/time -f "%e s" /tmp/s8/edge/bin/python profile_device.py --threads 1 --out results.json 2>&1 | tail -5)
spnas latency profile --from-bundle-results $B/results.json --out /tmp/s8/bundle_lut.json --validation-out /tmp/s8/bundle_val 2>&1 | tail -12
