"""Bit-identical reruns (``--deterministic``) and a record of what each run ran on.

Why both: a rerun reproduces bit for bit only with the same code, library versions, hardware, thread
count and seeds, and with PyTorch told to refuse nondeterministic kernels (some CUDA kernels use
atomics; cuDNN's autotuner picks kernels by timing). ``environment.json`` in every run directory says
what a run ran on, one record per start and per resume, so a difference can be traced to its cause.
"""

from __future__ import annotations

import os
import platform
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch

from spnas import __version__
from spnas.errors import SpnasError
from spnas.outputs.files import read_json, write_json
from spnas.latency.device_profiler import device_info

ENVIRONMENT = "environment.json"
#: what cuBLAS needs for deterministic results (PyTorch's reproducibility notes)
CUBLAS_WORKSPACE = ":4096:8"


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Refuse nondeterministic kernels while a job runs (an op without a deterministic kernel raises),
    and restore the process's settings after it (``spnas run`` runs several jobs in one process)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # read when cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]


def environment(device: torch.device, deterministic: bool) -> dict:
    """Versions, machine and settings that decide a run's numbers bit for bit."""
    cuda = device.type == "cuda"
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spnas": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
        "platform": platform.platform(), "cpu": device_info()["cpu"], "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "deterministic": deterministic,
    }


def record_environment(run_dir: Path, device: torch.device, deterministic: bool) -> list[str]:
    """Append this start's environment to the run's record; returns what changed since the last one
    (fields whose change breaks bit-identity), for a note."""
    path = run_dir / ENVIRONMENT
    try:  # a record, not a setting: a damaged one is started afresh rather than blocking a resume
        history = read_json(path, "environment record") if path.is_file() else []
    except SpnasError:
        history = []
    history = history if isinstance(history, list) else []
    now = environment(device, deterministic)
    changed = []
    if history and isinstance(history[-1], dict):
        changed = [k for k in ("spnas", "torch", "cpu", "torch_threads", "device", "gpu", "cuda", "cudnn")
                   if history[-1].get(k) != now[k]]
    write_json(path, [*history, now])
    return changed
