"""What every long job shares: its run directory, config file, checkpoints, metrics log and signals."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml

from spnas.errors import SpnasError
from spnas.io import atomic_path, read_json, write_json

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"

C = TypeVar("C")


def prepare_run_dir(out: str | Path, force: bool = False) -> Path:
    """A new run directory; an existing non-empty one is refused unless ``force`` (then emptied)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SpnasError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise SpnasError(f"{out}: run directory is not empty; resume it with --resume {out}, "
                             "choose another --out, or pass --force to start over")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def load_config_file(path: str | Path) -> dict:
    """A YAML or JSON file of config keys (dashes or underscores)."""
    try:
        text = Path(path).read_text()
        data = yaml.safe_load(text) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
    except FileNotFoundError:
        raise SpnasError(f"{path}: no such config file") from None
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise SpnasError(f"{path}: cannot parse config ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SpnasError(f"{path}: config must be a mapping of keys to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type[C], file_values: dict, cli_values: dict, source: str = "config") -> C:
    """Dataclass from defaults <- config file <- CLI (only options the user actually gave)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(file_values) - names)
    if unknown:
        raise SpnasError(f"{source}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(names))}")
    merged = {**file_values, **{k: v for k, v in cli_values.items() if k in names and v is not None}}
    return cls(**merged)


def save_config(run_dir: Path, config: Any) -> None:
    write_json(run_dir / CONFIG, dataclasses.asdict(config))


def load_run_config(cls: type[C], run_dir: Path) -> C:
    data = read_json(run_dir / CONFIG, "run config")
    return build_config(cls, data, {}, str(run_dir / CONFIG))


def save_checkpoint(path: Path, step: int, wall_s: float, parts: dict[str, Any]) -> None:
    """Atomically save ``step``, ``wall_s`` and the state_dict of every non-None part."""
    state = {"step": step, "wall_s": wall_s,
             **{name: obj.state_dict() for name, obj in parts.items() if obj is not None}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def restore_checkpoint(path: Path, parts: dict[str, Any]) -> tuple[int, float]:
    """Load every non-None part's state from the checkpoint; return (step, wall seconds so far)."""
    state = load_checkpoint(path)
    for name, obj in parts.items():
        if obj is not None:
            obj.load_state_dict(state[name])
    return state["step"], state.get("wall_s", 0.0)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise SpnasError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: say so in one line
        raise SpnasError(f"{path}: unreadable checkpoint ({type(err).__name__})") from None


class MetricsLog:
    """Append-only JSON lines; on resume, lines from steps after the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        if resume_step is not None and path.exists():
            kept = [l for l in path.read_text().splitlines() if l and json.loads(l).get("step", 0) <= resume_step]
            with atomic_path(path) as tmp:
                tmp.write_text("".join(l + "\n" for l in kept))
        self.file = open(path, "a")
        self.tb = _tensorboard(path.parent)

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(key, value, record.get("step", 0))

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []


def _tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(log_dir / "tb"))


class StopFlag:
    """Ctrl-C / SIGTERM set a flag instead of killing the process, so the loop can checkpoint first."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.stop:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
