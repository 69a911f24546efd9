"""landing5_quick (names of dc61b0e: single-path = plain, -single-path-landing = rule first,
-single-path-landing-last = rule last) copied to landing6_quick under today's names (single-path-repair,
single-path-landing-first, single-path), so that today's sweep reuses its warm-ups, searches and trainings
and adds the single-path-landing-hold variant."""
import json, os, re, shutil
from pathlib import Path
OLD, NEW = Path("/work/bench_runs/landing5_quick"), Path("/work/bench_runs/landing6_quick")
MAP = {"": "-single-path-repair", "-single-path-landing": "-single-path-landing-first", "-single-path-landing-last": ""}
PAT = re.compile(r"searched-(\d\.\d{3})ms(-single-path-landing-last|-single-path-landing)?(-s\d)?(?![\w.-]*ms)(?=[/\":-]|$)")
# careful: the seed suffix of an onnx file (-seed0.onnx) follows a name: the lookahead allows '-'

def rename(text: str) -> str:
    return PAT.sub(lambda m: f"searched-{m[1]}ms{MAP[m[2] or '']}{m[3] or ''}", text)

assert rename("searched-0.420ms") == "searched-0.420ms-single-path-repair"
assert rename("searched-0.420ms-s1") == "searched-0.420ms-single-path-repair-s1"
assert rename("search:searched-0.420ms-single-path-landing-s2") == "search:searched-0.420ms-single-path-landing-first-s2"
assert rename("/x/searched-0.500ms-single-path-landing-last-s1/arch.json") == "/x/searched-0.500ms-s1/arch.json"
assert rename("train:searched-0.460ms-single-path-landing-last:seed1") == "train:searched-0.460ms:seed1"
assert rename("models/searched-0.420ms-s1-seed0.onnx") == "models/searched-0.420ms-single-path-repair-s1-seed0.onnx"
assert rename("models/searched-0.420ms-seed0.onnx") == "models/searched-0.420ms-single-path-repair-seed0.onnx"

shutil.copytree(OLD, NEW)
for sub in ("search", "train", "models"):
    d = NEW / sub
    if not d.exists():
        continue
    entries = sorted(d.iterdir())
    tmp = {e: d / f".tmp-{e.name}" for e in entries}
    for e, t in tmp.items():
        e.rename(t)
    for e, t in tmp.items():
        t.rename(d / rename(e.name))
state = json.loads((NEW / "pipeline.json").read_text())
text = rename(json.dumps(state)).replace(str(OLD), str(NEW))
state = json.loads(text)
state["stages"]["methods"] = ["single-path-repair", "single-path", "single-path-landing-first", "single-path-landing-hold"]
(NEW / "pipeline.json").write_text(json.dumps(state, indent=2))
print(sorted(k for k in state["stages"] if k.startswith("search:")))
print(sorted(p.name for p in (NEW / "search").iterdir()))
