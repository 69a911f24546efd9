import json, sys
sys.path.insert(0, "/work/main/src")
from spnas.model.arch import Architecture
root = "/work/bench_runs/landing6_quick"
sw = {r["model"]: r for r in json.load(open(f"{root}/sweep.json"))["models"]}
print("| target ms | seed | last: landed at (last step ms) | top-1 % | hold: landed at, held from | last step ms (vs target) | repair flips | top-1 % | same net as last |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for t in ("0.420", "0.460", "0.500"):
    for s in ("", "-s1", "-s2"):
        a, b = sw[f"searched-{t}ms{s}"], sw[f"searched-{t}ms-single-path-landing-hold{s}"]
        sb = json.load(open(f"{root}/search/searched-{t}ms-single-path-landing-hold{s}/summary.json"))
        land = sb.get("landing") or {}
        same = Architecture.from_string(a["arch"]).canonical() == Architecture.from_string(b["arch"]).canonical()
        within = f" ({land['within_step']} of its flips)" if land.get("within_step") else ""
        la = f"{a['landed_step']}" if a["landed_step"] is not None else "—"
        lb = f"{land['step']}{within}, {land['frozen_at']}" if land.get("frozen_at") is not None else "—"
        off = (b["last_step_predicted_ms"] / float(t) - 1) * 100
        print(f"| {t} | {s[2:] or 0} | {la} ({a['last_step_predicted_ms']:.3f}) | {a['test_top1_mean']*100:.2f} | {lb} | "
              f"{b['last_step_predicted_ms']:.3f} ({off:+.1f}%) | {b['repair_flips']} | {b['test_top1_mean']*100:.2f} | {'yes' if same else 'no'} |")
