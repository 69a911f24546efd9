# Five fresh-clone spnas runs (quick preset, 2-core Xeon VM, 2026-11-30): could the reference kernel, timed during
# the table's validation and during the final measurement, explain how far the measured models sat from their
# predictions? The run directories were scratch clones (paths below); the output is refscale.txt.
import json,os
runs = {"fresh_run (11-30 17:19)": "/work/fresh_run/runs/spnas-run", "fresh2 (11-30 15:14)": "/tmp/fresh2/main/runs/spnas-run",
        "fresh7 (11-30 20:05)": "/work/fresh7/runs/spnas-run", "s8 run 1 (11-30 22:28)": "/tmp/tmp.HQUGtxLnc8/p/runs/spnas-run",
        "s8 run 2 (11-30 23:36)": "/tmp/tmp.G5dQTkZ9bD/p/runs/spnas-run"}
for name, d in runs.items():
    v = json.load(open(d + "/latency/validation.json"))["conditions"]
    r = json.load(open(d + "/results.json")); m = r["measurement_conditions"]
    ref_v = (v["reference_ms_before"] + v["reference_ms_after"]) / 2
    ref_m = (m["reference_ms_before"] + m["reference_ms_after"]) / 2
    k = ref_m / ref_v
    ratios = [x["measured_ms"] / x["predicted_ms"] for x in r["models"]]
    mean = sum(ratios) / len(ratios)
    print(f"{name}: reference {ref_v:.3f} -> {ref_m:.3f} ms (x{k:.3f}); measured/predicted {min(ratios):.3f}-{max(ratios):.3f} (mean {mean:.3f}); "
          f"after scaling {min(ratios)/k:.3f}-{max(ratios)/k:.3f} (mean {mean/k:.3f})")
