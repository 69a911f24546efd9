"""Do two ``spnas run`` directories hold the same results? (issue 19: behaviour unchanged by a refactor)

Compares what a run decides and learns, not how long it took or where it was written: every stage of
pipeline.json (wall times, paths and timings dropped) and every tensor of every model.pt and search
checkpoint, compared as a multiset of (dtype, shape, bytes) so that renamed or reordered state-dict
keys (issue 19's named MBConv layers) still compare. Exit 0 when all is identical, 1 with the first differences otherwise.

    python3 bench/same_outputs.py RUN_BEFORE RUN_AFTER
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

#: fields that say when, where or how fast, not what
IGNORED = {"wall_s", "train_wall_s", "onnx", "out", "source", "date", "environment", "conditions", "spread"}
#: fields renamed by issue 19 (the device side of latency became a backend)
RENAMED = {"target": "backend"}


def scrub(value):
    """``value`` without the IGNORED fields, with the RENAMED ones under their new name, and without
    fields that are None (added since, and saying nothing happened)."""
    if isinstance(value, dict):
        return {RENAMED.get(k, k): scrub(v) for k, v in value.items() if k not in IGNORED and v is not None}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def tensors(path: Path) -> list[str]:
    """Every tensor of the file's network, as a sorted list of digests of its dtype, shape and bytes."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    state = blob.get("state_dict") or blob.get("model") or blob
    return sorted(hashlib.sha1(f"{v.dtype}{tuple(v.shape)}".encode() + v.contiguous().numpy().tobytes()).hexdigest()
                  for v in state.values() if isinstance(v, torch.Tensor))


def compare(before: Path, after: Path) -> list[str]:
    problems = []
    a, b = (scrub(json.loads((d / "pipeline.json").read_text())) for d in (before, after))
    for stage in sorted(set(a["stages"]) | set(b["stages"])):
        if a["stages"].get(stage) != b["stages"].get(stage):
            problems.append(f"pipeline.json stage {stage!r} differs:\n  {a['stages'].get(stage)}\n  {b['stages'].get(stage)}")
    files = sorted(p.relative_to(before) for p in before.rglob("*") if p.name in ("model.pt", "checkpoint.pt"))
    if not files:
        problems.append(f"{before}: no model.pt or checkpoint.pt to compare")
    for rel in files:
        if tensors(before / rel) != tensors(after / rel):
            problems.append(f"{rel}: tensors differ")
    return problems


def main() -> int:
    before, after = (Path(p) for p in sys.argv[1:3])
    problems = compare(before, after)
    for p in problems:
        print(p)
    print("identical" if not problems else f"{len(problems)} difference(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
