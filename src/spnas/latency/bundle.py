"""Device bundles: per-part ONNX models + manifest + a standalone profiler script for any edge box.

    spnas latency bundle --space small --out bundle/      # here
    python3 profile_device.py --out results.json          # on the device (numpy + onnxruntime only)
    spnas latency profile --from-bundle-results results.json --out lut.json   # back here
"""

from __future__ import annotations

import shutil
from pathlib import Path

from spnas.io import atomic_path, atomic_write_text, write_json
from spnas.latency import device_profiler
from spnas.latency.parts import all_parts
from spnas.onnx_io import onnx_bytes
from spnas.progress import bar
from spnas.space import SearchSpace

SCRIPT_NAME = "profile_device.py"

README = """spnas latency bundle for space {space} ({fingerprint})

On the device (Python 3 with numpy and onnxruntime):
    python3 {script} --threads 1 --out results.json
Then, where spnas is installed:
    spnas latency profile --from-bundle-results results.json --out lut.json
"""


def write_bundle(space: SearchSpace, out_dir: Path, target_name: str = "onnxruntime-device") -> Path:
    """Write the bundle into ``out_dir`` (the caller makes it a fresh, locked run directory)."""
    out_dir = Path(out_dir)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    models = {}
    parts = all_parts(space)
    with bar(len(parts), "exporting ONNX", "model") as progress:
        for part in parts:
            name = f"models/{part.key.replace('/', '_')}.onnx"
            with atomic_path(out_dir / name) as tmp:
                tmp.write_bytes(onnx_bytes(part.module, part.input_shape))
            models[part.key] = {"file": name, "input_shape": part.input_shape}
            progress.update()
    shutil.copyfile(device_profiler.__file__, out_dir / SCRIPT_NAME)
    atomic_write_text(out_dir / "README.txt",
                      README.format(space=space.name, fingerprint=space.fingerprint(), script=SCRIPT_NAME))
    manifest = {"format": "spnas-bundle/1", "target": target_name, "space": space.to_dict(),
                "space_fingerprint": space.fingerprint(), "models": models}
    write_json(out_dir / "manifest.json", manifest)
    return out_dir
