"""Where each search of a `spnas sweep` ended, from its searches' records in pipeline.json alone (before any training):
target, method, search seed, the last step's predicted ms (canonical) and its distance to the target,
whether the search met the budget band by itself (no repair flips), the flips, the landed step.

Why a script beside the sweep's report: the report is written when every training is done, and the
landing question of issue 18 (item 3) is answered by the searches; this reads them as soon as they
exist. The report's "How each search ended" section gives the same columns with accuracy.

    python3 bench/search_endings.py RUN_DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spnas.workflows.sweep_report import BAND_LOW, in_band_by_itself, landed_at


def endings(run_dir: Path) -> list[dict]:
    """One row per target-mode search, from the sweep's ``pipeline.json``: each search stage records
    its method and search seed beside its summary's figures."""
    state = json.loads((run_dir / "pipeline.json").read_text())
    rows = []
    for stage, s in state["stages"].items():
        if not stage.startswith("search:searched-") or not isinstance(s, dict) or "arch" not in s:
            continue
        if "method" not in s:
            raise SystemExit(f"{run_dir}/pipeline.json: stage {stage!r} does not record its method (a sweep of an "
                             "earlier version); read its report's 'How each search ended' section instead")
        if s.get("target_ms") is None or s["method"] == "random":
            continue  # faithful mode has no target; random search only draws inside the band
        row = {"method": s["method"], "target_ms": s["target_ms"], "predicted_ms": s["predicted_ms"],
               "repair_flips": len(s["repair_flips"]) if s["method"] != "multipath" else None}
        rows.append({**row, "search_seed": s["search_seed"], "last_step_ms": s["last_step_predicted_ms"],
                     "last_step_off_pct": (s["last_step_predicted_ms"] / s["target_ms"] - 1) * 100,
                     # the landing rule "last" may return an earlier in-band step than the last one
                     "last_step_in_band": BAND_LOW * s["target_ms"] <= s["last_step_predicted_ms"] <= s["target_ms"],
                     "in_band_by_itself": in_band_by_itself(row),
                     "landed_step": s.get("landed_step"), "landed_within_step": s.get("landed_within_step")})
    return sorted(rows, key=lambda r: (r["method"], r["target_ms"], r["search_seed"]))


def markdown(rows: list[dict]) -> str:
    lines = ["| method | target ms | search seed | last step ms (vs target) | last step in band | result in band without "
             "repair | repair flips | landed at step | result ms |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['method']} | {r['target_ms']:.3f} | {r['search_seed']} | {r['last_step_ms']:.3f} "
              f"({r['last_step_off_pct']:+.1f}%) | {'yes' if r['last_step_in_band'] else 'no'} | "
              f"{'yes' if r['in_band_by_itself'] else 'no'} | "
              f"{'' if r['repair_flips'] is None else r['repair_flips']} | "
              f"{landed_at(r['landed_step'], r.get('landed_within_step'))} | {r['predicted_ms']:.3f} |" for r in rows]
    counts: dict[str, list[dict]] = {}
    for r in rows:
        counts.setdefault(r["method"], []).append(r)
    lines.append("")
    lines += [f"- {method}: {sum(r['in_band_by_itself'] for r in v)} of {len(v)} results in the band without repair, "
              f"{sum(r['last_step_in_band'] for r in v)} of {len(v)} last steps in the band" for method, v in counts.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = endings(args.run_dir)
    if not rows:
        raise SystemExit(f"{args.run_dir}/pipeline.json: no finished target-mode searches")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
