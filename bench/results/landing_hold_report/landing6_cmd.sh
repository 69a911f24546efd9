#!/usr/bin/env bash
# issue 18 item 3, landing rule 'hold': landing5_quick's sweep renamed to today's names (rename_landing6.py), plus
# the single-path-landing-hold variant; both training seeds; 2 threads, nothing timed (--lut given)
cd /work/bench_clone_landing6
export PYTHONPATH=/work/bench_clone_landing6/src
exec python -m spnas sweep --preset quick --lut /work/bench_runs/methods_quick/lut.json --targets 0.42,0.46,0.5 \
  --methods single-path-repair,single-path,single-path-landing-first,single-path-landing-hold --search-seeds 0,1,2 \
  --seeds 0,1 --train-epochs 1 --out /work/bench_runs/landing6_quick
