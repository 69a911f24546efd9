"""Could the reference kernel explain how far a `spnas run`'s measured models sat from their predictions?

For each run directory given: the fixed numpy reference kernel's ms during the table's validation and
during the final measurement (both recorded by the run), the measured/predicted ratio of its models,
and the same ratio after scaling the predictions by the reference kernel's change. Used for the offset
paragraph of docs/measurements.md (five fresh-clone runs on a 2-core Xeon VM; their output is
bench/results/reference_scaling/refscale.txt).

    python3 bench/reference_scaling.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def scaling(run_dir: Path) -> str:
    validation = json.loads((run_dir / "latency" / "validation.json").read_text())["conditions"]
    results = json.loads((run_dir / "results.json").read_text())
    measured = results["measurement_conditions"]
    ref_validation = (validation["reference_ms_before"] + validation["reference_ms_after"]) / 2
    ref_measured = (measured["reference_ms_before"] + measured["reference_ms_after"]) / 2
    k = ref_measured / ref_validation
    ratios = [m["measured_ms"] / m["predicted_ms"] for m in results["models"]]
    mean = sum(ratios) / len(ratios)
    return (f"{run_dir}: reference {ref_validation:.3f} -> {ref_measured:.3f} ms (x{k:.3f}); measured/predicted "
            f"{min(ratios):.3f}-{max(ratios):.3f} (mean {mean:.3f}); after scaling {min(ratios) / k:.3f}-"
            f"{max(ratios) / k:.3f} (mean {mean / k:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", help="directories of finished `spnas run`s")
    for run_dir in parser.parse_args().run_dirs:
        print(scaling(run_dir))


if __name__ == "__main__":
    main()
