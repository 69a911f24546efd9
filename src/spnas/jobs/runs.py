"""What every long job shares: its run directory, config file, checkpoints, metrics log and signals."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar

import torch
import yaml

from spnas.errors import SpnasError
from spnas.outputs.files import atomic_path, read_json, write_json
from spnas.data.datasets import DATA_DIR_ENV
from spnas.jobs.divergence import first_non_finite
from spnas.jobs.jobconfig import RESUME_OPTIONS
from spnas.jobs.limits import option_name
from spnas.jobs.rundir import run_directory

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"

C = TypeVar("C")


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


def load_run_config(cls: type, run_dir: Path) -> Any:
    """The config of a run to resume, checked like a new one (a hand-edited file can be wrong)."""
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise SpnasError(f"{run_dir}: no such run directory to resume")
    data = read_json(path, "run config")
    if not isinstance(data, dict):
        raise SpnasError(f"{path}: corrupt run config, expected a JSON object")
    return build_config(cls, {**cls.LEGACY_DEFAULTS, **data}, {}, str(path)).check(str(path))


def save_checkpoint(path: Path, step: int, wall_s: float, parts: dict[str, Any], kind: str) -> None:
    """Atomically save ``step``, ``wall_s``, the job ``kind``, the torch thread count and the
    state_dict of every non-None part."""
    state = {"step": step, "wall_s": wall_s, "kind": kind, "threads": torch.get_num_threads(),
             **{name: obj.state_dict() for name, obj in parts.items() if obj is not None}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


#: parts that checkpoints written before they existed lack (their defaults are right for such runs)
OPTIONAL_PARTS = ("precision", "landing", "budgets")


def restore_checkpoint(path: Path, parts: dict[str, Any], kind: str) -> tuple[int, float]:
    """Load every non-None part's state from the checkpoint; return (step, wall seconds so far).

    A checkpoint of another job kind or architecture, or one holding nan/inf, is refused in one line.
    """
    state = load_checkpoint(path)
    if state.get("kind", kind) != kind:
        raise SpnasError(f"{path}: checkpoint of a {state['kind']} run, not of a {kind} run")
    bad = first_non_finite({k: v for k, v in state.items() if k in parts})
    if bad:
        raise SpnasError(f"{path}: checkpoint holds non-finite values ({bad}); it cannot be resumed")
    for name, obj in parts.items():
        if obj is None or (name in OPTIONAL_PARTS and name not in state):
            continue
        try:
            obj.load_state_dict(state[name])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SpnasError(f"{path}: its {name} does not fit this run's config.json (another architecture "
                             f"or space?): {detail[:200]}") from None
    return state["step"], state.get("wall_s", 0.0)


def checkpoint_threads(path: Path) -> int | None:
    """The torch thread count a checkpoint was written with (None for checkpoints from before it)."""
    return load_checkpoint(path).get("threads") if path.is_file() else None


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise SpnasError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: say so in one line
        raise SpnasError(f"{path}: unreadable checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise SpnasError(f"{path}: not an spnas checkpoint (no step count in it)")
    return state


class MetricsLog:
    """Append-only JSON lines. On resume, records of steps the checkpoint has not seen (step >= the
    resume step: they will be written again) and a line torn by a kill are dropped. A log that is not
    ``enabled`` (on ranks other than 0) writes nothing."""

    def __init__(self, path: Path, resume_step: int | None = None, enabled: bool = True) -> None:
        self.path, self.file, self.tb = path, None, None
        if not enabled:
            return
        if resume_step is not None and path.exists():
            kept = [json.dumps(r) for r in read_metrics(path) if r.get("step", 0) < resume_step]
            with atomic_path(path) as tmp:
                tmp.write_text("".join(l + "\n" for l in kept))
        self.file = open(path, "a")
        self.tb = _tensorboard(path.parent)

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(key, value, record.get("step", 0))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: Path) -> list[dict]:
    """Every whole record; a line torn by a killed process (not JSON) is skipped."""
    records = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


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
        self.signum = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.stop and signum == signal.SIGINT:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop, self.signum = True, signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def note(message: str) -> None:
    """A one-line note on stderr (not an error: the job goes on); under torchrun, from rank 0 only."""
    if os.environ.get("RANK", "0") != "0":
        return
    print(f"spnas: note: {message}", file=sys.stderr)


def resumed_config(cls: type, run_dir: Path, overrides: dict) -> Any:
    """The run's own config.json with the :data:`RESUME_OPTIONS` the user gave applied.

    ``max_steps`` is a one-time stop: a run stopped by it resumes to the end unless it is given again.
    """
    unsafe = sorted(set(overrides) - set(RESUME_OPTIONS))
    if unsafe:
        raise SpnasError(f"{option_name(unsafe[0])} cannot be changed on --resume (the run keeps the settings in "
                         f"{run_dir / CONFIG}); allowed with --resume: "
                         f"{', '.join(option_name(o) for o in RESUME_OPTIONS)}")
    cfg = load_run_config(cls, run_dir)
    recorded, run_device = cfg.threads or checkpoint_threads(run_dir / CHECKPOINT), cfg.device
    cfg = dataclasses.replace(cfg, max_steps=overrides.get("max_steps"),
                              threads=overrides.get("threads") or recorded,
                              checkpoint_minutes=overrides.get("checkpoint_minutes", cfg.checkpoint_minutes),
                              device=overrides.get("device", cfg.device),
                              workers=overrides.get("workers", cfg.workers),
                              compile=overrides.get("compile", cfg.compile))
    if recorded and cfg.threads != recorded:
        note(f"resuming with {cfg.threads} torch threads where the run used {recorded}: "
             "it will not reproduce an uninterrupted run bit for bit")
    if "device" in overrides and overrides["device"] != run_device:
        note(f"resuming on --device {overrides['device']}: another device does not reproduce an uninterrupted "
             "run bit for bit")
    return cfg.check(str(run_dir / CONFIG))


def new_config(cfg: Any) -> Any:
    """A new run's config as it is stored: paths absolute (so resume works from any directory) and the
    torch thread count the run uses (results depend on it bit for bit)."""
    def absolute(value: str | None) -> str | None:
        return str(Path(value).expanduser().absolute()) if value else value

    data_dir = cfg.data_dir or os.environ.get(DATA_DIR_ENV)
    changes = {"out": absolute(cfg.out), "data_dir": absolute(data_dir),
               "threads": cfg.threads or torch.get_num_threads()}
    if getattr(cfg, "lut", None):
        changes["lut"] = absolute(cfg.lut)
    return dataclasses.replace(cfg, **changes)


@contextmanager
def job_directory(cfg: Any, resume_dir: str | None, force: bool) -> Iterator[Path]:
    """The locked run directory of a job: a new run's (``cfg`` from :func:`new_config`, written as
    config.json) or the one being resumed."""
    with run_directory(resume_dir or cfg.out, resume=resume_dir is not None, force=force) as run_dir:
        if resume_dir is None:
            save_config(run_dir, cfg)
        yield run_dir
