"""``spnas run``: profile -> search -> train the result and the baselines -> export -> measure -> report.

Each stage records its outcome in ``pipeline.json``; running the same command again skips finished
stages and resumes an interrupted search or training from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from spnas.arch import Architecture, uniform
from spnas.data.datasets import load_data
from spnas.device import Precision, resolve_device
from spnas.errors import SpnasError
from spnas.export import export_model
from spnas.io import read_json, write_json
from spnas.latency.device_profiler import Protocol, Stats, measure_interleaved, ort_runner
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import predict_ms
from spnas.latency.profile import profile_space
from spnas.latency.targets import get_target
from spnas.latency.validate import validate
from spnas.progress import RoundProgress
from spnas.report import comparison_warnings, write_report
from spnas.rundir import check_new_run_dir, run_directory
from spnas.runs import CHECKPOINT
from spnas.search.config import SearchConfig
from spnas.search.loop import run_search
from spnas.space import space_for_data
from spnas.train.config import TrainConfig
from spnas.train.loop import load_model, run_train

STATE = "pipeline.json"
BASELINES = ("k3e3", "k3e6", "k5e6")


@dataclass(frozen=True)
class Preset:
    """Budgets of one ``spnas run`` size. Epoch counts are minimums: on a small dataset the epochs grow
    until search and each training reach at least ``*_min_steps`` optimiser steps, so a 1,400-image
    folder is not trained for 30 steps and then compared (issue 16)."""

    data: str
    width: float
    lut_repeats: int
    validate_samples: int
    search_epochs: int
    search_subset: int | None
    train_epochs: int
    train_subset: int | None
    batch_size: int
    measure_repeats: int
    note: str
    search_min_steps: int = 0
    train_min_steps: int = 0

    def __post_init__(self) -> None:
        if self.search_subset is not None and (self.train_subset is None or self.search_subset > self.train_subset):
            raise ValueError("a preset's search subset must not exceed its training subset")

    def epochs(self, train_images: int) -> tuple[int, int]:
        """(search epochs, training epochs) for ``train_images`` training images (after the training
        subset): the preset's, or more where they would fall short of the minimum steps."""
        search_images = train_images if self.search_subset is None else min(self.search_subset, train_images)

        def at_least(epochs: int, images: int, min_steps: int) -> int:
            return max(epochs, math.ceil(min_steps / max(1, images // self.batch_size)))

        return (at_least(self.search_epochs, search_images, self.search_min_steps),
                at_least(self.train_epochs, train_images, self.train_min_steps))


# the minimum steps sit at or just under what each preset does on Fashion-MNIST (quick: 93 x 5 search
# and 156 x 3 training steps; full: 421 x 8 and 421 x 15), so those runs keep their epochs
PRESETS = {
    "smoke": Preset("synthetic:320:1:16:4", 0.25, 5, 6, 2, None, 1, None, 32, 5,
                    "seconds; synthetic data; for tests only", search_min_steps=18, train_min_steps=9),
    "quick": Preset("fashion-mnist", 0.5, 100, 40, 5, 12000, 3, 20000, 128, 100,
                    "about 17 minutes on 2 CPU cores; subsets of Fashion-MNIST",
                    search_min_steps=460, train_min_steps=460),
    # width 1.0: at width 0.5 a searched net fits its own training images only to 94% and tests at
    # 92.3%; at width 1.0 it tests at 93.0% (BENCHMARKS.md §4d-4e)
    "full": Preset("fashion-mnist", 1.0, 200, 100, 8, None, 15, None, 128, 200,
                   "about 5.5 h on 2 CPU cores (stage times of one run); all of Fashion-MNIST",
                   search_min_steps=3360, train_min_steps=6300),
}


def lut_cache_dir() -> Path:
    return Path(os.environ.get("SPNAS_CACHE", Path.home() / ".cache" / "spnas")) / "luts"


def run_pipeline(preset_name: str, out: str, data: str | None = None, data_dir: str | None = None,
                 target_ms: float | None = None, threads: int = 1, force: bool = False,
                 cache: bool = True, device: str = "auto", amp: str = "off") -> dict:
    if preset_name not in PRESETS:
        raise SpnasError(f"unknown preset {preset_name!r}; choose one of: {', '.join(PRESETS)}")
    if target_ms is not None and not (math.isfinite(target_ms) and target_ms > 0):
        raise SpnasError(f"--target-ms must be a positive number of ms, got {target_ms!r}")
    Precision(resolve_device(device), amp)  # refused here, before any stage starts
    jobs = {"device": device, "amp": amp}
    preset = PRESETS[preset_name]
    data_name = data or preset.data
    resume = (Path(out) / STATE).is_file() and not force
    if not resume:
        check_new_run_dir(out, force)
    target = get_target("onnxruntime-cpu", threads)
    splits = load_data(data_name, data_dir, 0.1, 0, preset.train_subset)
    if len(splits.train) < preset.batch_size:
        raise SpnasError(f"{data_name}: {len(splits.train)} training images, fewer than one batch of "
                         f"{preset.batch_size}; use a larger dataset")
    space = space_for_data("small", splits, preset.width)
    search_epochs, train_epochs = preset.epochs(len(splits.train))
    if (search_epochs, train_epochs) != (preset.search_epochs, preset.train_epochs):
        print(f"spnas: note: {len(splits.train):,} training images make few steps an epoch at batch "
              f"{preset.batch_size}: searching {search_epochs} epochs and training {train_epochs} (the "
              f"{preset_name} preset's minimum of {preset.search_min_steps} and {preset.train_min_steps} steps)",
              file=sys.stderr)
    jobs["epochs"] = {"search": search_epochs, "train": train_epochs}
    with run_directory(out, resume=resume, force=force) as run_dir:
        state = _open_state(run_dir, preset_name, data_name, resume)
        return _run_stages(run_dir, state, preset_name, data_name, data_dir, space, target, target_ms, cache, jobs)


def _run_stages(run_dir: Path, state: dict, preset_name: str, data_name: str, data_dir: str | None,
                space, target, target_ms: float | None, cache: bool, jobs: dict) -> dict:
    """Every stage not yet recorded in ``state``, in order; then the report."""
    preset, threads = PRESETS[preset_name], target.threads
    jobs = dict(jobs)
    epochs = jobs.pop("epochs")

    def stage(name: str, fn):
        if name not in state["stages"]:
            state["stages"][name] = fn()
            write_json(run_dir / STATE, state)
        return state["stages"][name]

    lut_path = run_dir / "lut.json"

    def make_lut() -> dict:
        cached = lut_cache_dir() / f"{target.name}-t{threads}-{Protocol.cache}-{space.fingerprint()}.json"
        if cache and _usable_cache(cached, space):
            shutil.copyfile(cached, lut_path)
            return {"source": str(cached), "cached": True}
        lut = profile_space(space, target, Protocol(warmup=5, repeats=preset.lut_repeats))
        lut.save(lut_path)
        result = validate(lut, space, target, preset.validate_samples, 0,
                          Protocol(warmup=3, repeats=max(5, preset.lut_repeats // 2)), run_dir / "latency")
        lut.calibration = result.calibration
        lut.save(lut_path)
        if cache:
            lut.save(cached)
        return {"source": "profiled", "cached": False, "validation": result.report["held_out_calibrated"]}

    stage("lut", make_lut)
    lut = LatencyTable.load(lut_path)
    lut.check(space, str(lut_path))
    baseline_ms = {op: predict_ms(lut, uniform(space, op)) for op in BASELINES}
    if target_ms is None:  # between the fastest uniform net and the MobileNetV2-like one
        target_ms = round((baseline_ms["k3e3"] + baseline_ms["k3e6"]) / 2, 4)

    def search() -> dict:
        cfg = SearchConfig(data=data_name, data_dir=data_dir, lut=str(lut_path), width=preset.width,
                           epochs=epochs["search"], batch_size=preset.batch_size,
                           train_subset=preset.search_subset, target_ms=target_ms,
                           indicator_scale="init-norm", out=str(run_dir / "search"), eval_every_epoch=False, **jobs)
        resume = str(run_dir / "search") if (run_dir / "search" / CHECKPOINT).is_file() else None
        result = run_search(cfg, resume_dir=resume, force=resume is None)
        return {"arch": result.arch.to_string(), "predicted_ms": result.predicted_ms, "target_ms": target_ms,
                "wall_s": result.wall_s, "last_step_arch": result.last_step.to_string(),
                "last_step_predicted_ms": result.last_step_ms, "repair_flips": result.repair_flips}

    searched = stage("search", search)
    models = {"searched": searched["arch"], **{f"uniform-{op}": uniform(space, op).to_string() for op in BASELINES}}

    for name, arch_text in models.items():
        def train(name=name, arch_text=arch_text) -> dict:
            tdir = run_dir / "train" / name
            cfg = TrainConfig(arch=arch_text, data=data_name, data_dir=data_dir, width=preset.width,
                              epochs=epochs["train"], batch_size=preset.batch_size,
                              train_subset=preset.train_subset, out=str(tdir), **jobs)
            resume = str(tdir) if (tdir / CHECKPOINT).is_file() else None
            result = run_train(cfg, resume_dir=resume, force=resume is None)
            net, meta = load_model(tdir)
            onnx_path = run_dir / "models" / f"{name}.onnx"
            check = export_model(net, meta, "onnx", onnx_path, data_dir)
            return {**result.metrics, "arch": arch_text, "onnx": str(onnx_path),
                    "export_max_abs_diff": check["max_abs_diff"]}

        stage(f"train:{name}", train)

    def measure() -> dict:
        shape = [1, space.in_channels, space.input_size, space.input_size]
        runners = {name: ort_runner(state["stages"][f"train:{name}"]["onnx"], shape, threads) for name in models}
        stats: dict[str, Stats] = measure_interleaved(
            runners, Protocol(warmup=10, repeats=preset.measure_repeats), RoundProgress("measuring exported models"))
        return {name: s.to_dict() for name, s in stats.items()}

    measured = stage("measure", measure)
    rows = []
    for name, arch_text in models.items():
        t = state["stages"][f"train:{name}"]
        arch = Architecture.from_string(arch_text)
        rows.append({"model": name, "arch": arch_text, "predicted_ms": predict_ms(lut, arch),
                     "measured_ms": measured[name]["median"], "measured_iqr_ms": measured[name]["iqr"],
                     "test_top1": t["test_top1"], "test_top5": t.get("test_top5"),
                     "test_top1_raw": t["test_top1_raw"], "test_top1_ema": t["test_top1_ema"],
                     "train_wall_s": t["train_wall_s"], "export_max_abs_diff": t["export_max_abs_diff"]})
    summary = {"preset": preset_name, "data": data_name, "space": space.to_dict(), "target_ms": target_ms,
               "lut": state["stages"]["lut"], "search": searched, "models": rows,
               "settings": dataclasses.asdict(preset), "epochs": epochs, "threads": threads}
    summary["warnings"] = comparison_warnings(rows, space.num_classes)
    for warning in summary["warnings"]:
        print(f"spnas: warning: {warning}", file=sys.stderr)
    write_report(run_dir, summary, space)
    return summary


def _usable_cache(path: Path, space) -> bool:
    """Whether a cached LUT loads and fits ``space``; a broken one is re-profiled (with a note), not
    copied into the run where it would fail every resume."""
    if not path.is_file():
        return False
    try:
        LatencyTable.load(path).check(space, str(path))
    except SpnasError as err:
        print(f"spnas: note: ignoring the cached latency table ({err}); profiling a new one", file=sys.stderr)
        return False
    return True


def _open_state(run_dir: Path, preset: str, data: str, resume: bool) -> dict:
    """Resume a pipeline directory of the same preset and data; refuse anything else."""
    path = run_dir / STATE
    if resume:
        state = read_json(path, "pipeline state")
        if not isinstance(state, dict) or not isinstance(state.get("stages"), dict):
            raise SpnasError(f"{path}: corrupt pipeline state; pass --force to start over")
        if state.get("preset") != preset or state.get("data") != data:
            raise SpnasError(f"{run_dir}: holds a run of preset {state.get('preset')!r} on {state.get('data')!r}; "
                             "choose another --out or pass --force")
        return state
    state = {"preset": preset, "data": data, "stages": {}}
    write_json(path, state)
    return state
