"""``spnas run``: profile -> search -> train the result and the baselines -> export -> measure -> report.

Each stage is one method of :class:`Pipeline` and records its outcome in ``pipeline.json``; running the
same command again skips finished stages and resumes an interrupted search or training from its
checkpoint. The dataset is read once; searches and trainings run in this process, or under torchrun
with one process per GPU. With a latency table from another device (``--lut``), nothing is profiled
or measured here and the report compares predicted latencies.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from spnas.model.arch import Architecture, uniform
from spnas.data.device_decode import check_decode
from spnas.data.datasets import DataSplits, load_data, with_train_subset
from spnas.jobs.engine import Interrupted
from spnas.jobs.device import Precision, resolve_device
from spnas.errors import SpnasError
from spnas.deploy.export import export_int8, export_model
from spnas.deploy.quantize import PRECISIONS, int8_format
from spnas.model.costs import arch_costs
from spnas.outputs.files import read_json, write_json
from spnas.latency.device_profiler import Protocol, measure_until_stable
from spnas.latency.fresh_process import measure_onnx_models
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import predict_ms
from spnas.latency.profile import profile_space
from spnas.latency.backends import Backend, get_backend
from spnas.latency.validate import validate
from spnas.jobs.progress import RoundProgress
from spnas.workflows.report import comparison_warnings, prediction_offset_warnings, write_report
from spnas.jobs.rundir import check_new_run_dir, run_directory
from spnas.jobs.runs import CHECKPOINT
from spnas.search.config import SearchConfig
from spnas.search.loop import run_search
from spnas.model.space import SearchSpace, space_for_data
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
RUN_PRESETS = {
    "smoke": Preset("synthetic:320:1:16:4", 0.25, 5, 6, 2, None, 1, None, 32, 5,
                    "seconds; synthetic data; for tests only", search_min_steps=18, train_min_steps=9),
    # 80 validation nets: 40 calibrate (the full form needs 26) and 40 are held out, as in every measurement
    # that met the bar of BENCHMARKS.md at 061b308, §10; with 60, a fresh run's held-out 30 gave 2.04% / 93% within ±5%
    "quick": Preset("fashion-mnist", 0.5, 100, 80, 5, 12000, 3, 20000, 128, 100,
                    "17-36 minutes on 2 CPU cores (measured on three VMs); subsets of Fashion-MNIST",
                    search_min_steps=460, train_min_steps=460),
    # width 1.0: at width 0.5 a searched net fits its own training images only to 94% and tests at
    # 92.3%; at width 1.0 it tests at 93.0% (BENCHMARKS.md at 061b308, §4d-4e)
    "full": Preset("fashion-mnist", 1.0, 200, 100, 8, None, 15, None, 128, 200,
                   "about 5.5 h on 2 CPU cores (stage times of one run); all of Fashion-MNIST",
                   search_min_steps=3360, train_min_steps=6300),
}


def lut_cache_dir() -> Path:
    return Path(os.environ.get("SPNAS_CACHE", Path.home() / ".cache" / "spnas")) / "luts"


@dataclass(frozen=True)
class PipelineOptions:
    """What ``spnas run`` takes; everything else comes from the preset."""

    preset: str = "quick"
    out: str = "runs/spnas-run"
    data: str | None = None
    data_dir: str | None = None
    space: str = "small"
    target_ms: float | None = None
    #: where the latency table is profiled and the models measured
    backend: str = "onnxruntime-cpu"
    #: a latency table made elsewhere (a phone's, from a bundle): nothing is profiled or measured here
    lut: str | None = None
    threads: int = 1
    force: bool = False
    cache: bool = True
    device: str = "auto"
    amp: str = "off"
    #: who decodes a streamed image folder's JPEGs (:mod:`spnas.data.device_decode`)
    decode: str = "auto"
    #: processes for search and training (torchrun); None: one per GPU on CUDA, else 1
    nproc_per_node: int | None = None
    #: searches and trainings refuse nondeterministic kernels (bit-identical reruns)
    deterministic: bool = False
    #: epochs of the search and of every training instead of the preset's (exactly these: no minimum steps)
    search_epochs: int | None = None
    train_epochs: int | None = None
    #: float32, or int8: the table, the measured models and the reported accuracy are those of INT8 models
    precision: str = "float32"
    #: budgets beside latency (``spnas search --max-params`` ...), None: none
    max_params: float | None = None
    max_macs: float | None = None
    max_memory: float | None = None


def run_pipeline(options: PipelineOptions) -> dict:
    """Check every option and the data before anything is written, then run the stages not yet done."""
    with open_pipeline(options, "run") as pipeline:
        return pipeline.run()


@contextmanager
def open_pipeline(options: PipelineOptions, command: str) -> Iterator["Pipeline"]:
    """The checked options, the data read once and the locked run directory of ``spnas run`` or
    ``spnas sweep`` (``command``, recorded so that one never resumes the other's directory)."""
    preset = RUN_PRESETS.get(options.preset)
    if preset is None:
        raise SpnasError(f"unknown preset {options.preset!r}; choose one of: {', '.join(RUN_PRESETS)}")
    if options.target_ms is not None and not (math.isfinite(options.target_ms) and options.target_ms > 0):
        raise SpnasError(f"--target-ms must be a positive number of ms, got {options.target_ms!r}")
    device = resolve_device(options.device)
    Precision(device, options.amp)  # refused here, before any stage starts
    nproc = options.nproc_per_node
    if nproc is None:
        nproc = torch.cuda.device_count() if device.type == "cuda" and device.index is None else 1
    if nproc < 1:
        raise SpnasError(f"--nproc-per-node must be >= 1, got {nproc}")
    if preset.batch_size % nproc:
        raise SpnasError(f"--nproc-per-node {nproc} does not divide the {options.preset} preset's batch of "
                         f"{preset.batch_size} (the global batch): use a divisor of it")
    data_name = options.data or preset.data
    resume = (Path(options.out) / STATE).is_file() and not options.force
    if not resume:
        check_new_run_dir(options.out, options.force)
    if options.precision not in PRECISIONS:
        raise SpnasError(f"--precision must be one of: {', '.join(PRECISIONS)}, got {options.precision!r}")
    full = load_data(data_name, options.data_dir, 0.1, 0)  # once; each job takes its subset of it
    splits = with_train_subset(full, preset.train_subset, 0)
    if len(splits.train) < preset.batch_size:
        raise SpnasError(f"{data_name}: {len(splits.train)} training images, fewer than one batch of "
                         f"{preset.batch_size}; use a larger dataset")
    if options.decode == "gpu":  # refused before any stage (each job says so again for itself)
        check_decode(options.decode, device, splits)
    space = space_for_data(options.space, splits, preset.width)
    fmt = int8_format(space, data_name, options.data_dir) if options.precision == "int8" else None
    backend = get_backend(options.backend, options.threads, fmt)
    foreign_lut = _foreign_lut(options.lut, space, options.precision) if options.lut else None
    for option, value in (("--search-epochs", options.search_epochs), ("--train-epochs", options.train_epochs)):
        if value is not None and value < 1:
            raise SpnasError(f"{option} must be at least 1, got {value}")
    search_epochs, train_epochs = preset.epochs(len(splits.train))
    search_epochs, train_epochs = options.search_epochs or search_epochs, options.train_epochs or train_epochs
    if (options.search_epochs, options.train_epochs) == (None, None) and \
            (search_epochs, train_epochs) != (preset.search_epochs, preset.train_epochs):
        print(f"spnas: note: {len(splits.train):,} training images make few steps an epoch at batch "
              f"{preset.batch_size}: searching {search_epochs} epochs and training {train_epochs} (the "
              f"{options.preset} preset's minimum of {preset.search_min_steps} and {preset.train_min_steps} steps)",
              file=sys.stderr)
    with run_directory(options.out, resume=resume, force=options.force) as run_dir:
        epochs = {"search": search_epochs, "train": train_epochs}
        yield Pipeline(options, preset, run_dir, _open_state(run_dir, command, options.preset, data_name, epochs, resume),
                       data_name, full, space, backend, foreign_lut, nproc, epochs)


@dataclass
class Pipeline:
    """The stages of one ``spnas run``, each a method; ``state`` (pipeline.json) records what is done."""

    options: PipelineOptions
    preset: Preset
    run_dir: Path
    state: dict
    data_name: str
    data: DataSplits
    space: SearchSpace
    backend: Backend
    foreign_lut: LatencyTable | None
    nproc: int
    epochs: dict

    @property
    def lut_path(self) -> Path:
        return self.run_dir / "lut.json"

    @property
    def measured_here(self) -> bool:
        """Models are measured where the table was profiled; a foreign table's device is not here."""
        return self.foreign_lut is None

    def run(self) -> dict:
        self.stage("lut", self.make_lut)
        lut = LatencyTable.load(self.lut_path)
        lut.check(self.space, str(self.lut_path))
        target_ms = self.options.target_ms or self.state["stages"].get("search", {}).get("target_ms")
        if target_ms is None:  # between the fastest uniform net and the MobileNetV2-like one
            target_ms = round((predict_ms(lut, uniform(self.space, "k3e3"))
                               + predict_ms(lut, uniform(self.space, "k3e6"))) / 2, 4)
        searched = self.stage("search", lambda: self.search(target_ms))
        models = {"searched": searched["arch"],
                  **{f"uniform-{op}": uniform(self.space, op).to_string() for op in BASELINES}}
        for name, arch_text in models.items():
            self.stage(f"train:{name}", lambda name=name, arch_text=arch_text: self.train(name, arch_text))
        measured = self.stage("measure", lambda: self.measure(list(models))) if self.measured_here else None
        return self.report(lut, models, measured, target_ms)

    @staticmethod
    def measured_models(measured: dict | None) -> dict | None:
        """Each model's timing from the measure stage (directories of older versions hold only those)."""
        return None if measured is None else measured.get("models", measured)

    def stage(self, name: str, work):
        if name not in self.state["stages"]:
            self.state["stages"][name] = work()
            write_json(self.run_dir / STATE, self.state)
        return self.state["stages"][name]

    def jobs(self) -> dict:
        return {"device": self.options.device, "amp": self.options.amp, "deterministic": self.options.deterministic,
                "decode": self.options.decode}

    def make_lut(self) -> dict:
        if self.foreign_lut is not None:
            self.foreign_lut.save(self.lut_path)
            return {"source": str(Path(self.options.lut).absolute()), "cached": False,
                    "backend": self.foreign_lut.backend}
        space, backend, cached = self.space, self.backend, None
        if self.options.cache:
            tag = "".join(f"-{t}" for t in (backend.cache_tag, "int8" if self.options.precision == "int8" else "") if t)
            cached = lut_cache_dir() / f"{backend.name}{tag}-t{backend.threads}-{Protocol.cache}-{space.fingerprint()}.json"
            if _usable_cache(cached, space):
                shutil.copyfile(cached, self.lut_path)
                return {"source": str(cached), "cached": True, "backend": backend.name}
        repeats = self.preset.lut_repeats
        lut = profile_space(space, backend, Protocol(warmup=5, repeats=repeats))
        lut.save(self.lut_path)
        result = validate(lut, space, backend, self.preset.validate_samples, 0,
                          Protocol(warmup=3, repeats=max(5, repeats // 2)), self.run_dir / "latency")
        lut.calibration = result.calibration
        lut.save(self.lut_path)
        if cached is not None:
            lut.save(cached)
        return {"source": "profiled", "cached": False, "backend": backend.name,
                "validation": result.report["held_out_calibrated"]}

    def search_config(self, target_ms: float, out: Path, **settings) -> SearchConfig:
        """The preset's search at ``target_ms``; ``settings``: other SearchConfig fields (method, seed)."""
        return SearchConfig(data=self.data_name, data_dir=self.options.data_dir, lut=str(self.lut_path),
                            space=self.options.space, width=self.preset.width, epochs=self.epochs["search"],
                            batch_size=self.preset.batch_size, train_subset=self.preset.search_subset,
                            target_ms=target_ms, indicator_scale="init-norm", out=str(out), eval_every_epoch=False,
                            **{"max_params": self.options.max_params, "max_macs": self.options.max_macs,
                               "max_memory": self.options.max_memory, **self.jobs(), **settings})

    def search(self, target_ms: float, out: Path | None = None, max_steps: int | None = None, **settings) -> dict:
        """Search at ``target_ms`` into ``out`` (default run_dir/search); with ``max_steps``, only its
        first steps (a checkpoint to branch from, see :mod:`spnas.search.branch`)."""
        out = out or self.run_dir / "search"
        cfg = dataclasses.replace(self.search_config(target_ms, out, **settings), max_steps=max_steps)
        self.run_job("search", cfg, out, lambda resume: run_search(
            cfg, resume_dir=resume, force=resume is None, overrides={"max_steps": max_steps} if max_steps else None,
            data=self.search_data()), max_steps)
        if max_steps is not None:
            return {"steps": max_steps}
        summary = read_json(out / "summary.json", "search summary")
        return {"arch": summary["arch"], "predicted_ms": summary["predicted_ms"], "target_ms": target_ms,
                "wall_s": summary["wall_s"], "last_step_arch": summary["last_step_arch"],
                "last_step_predicted_ms": summary["last_step_predicted_ms"], "repair_flips": summary["repair_flips"],
                "diagnostics": summary.get("diagnostics"), "warnings": summary.get("warnings", []),
                "costs": summary.get("costs"), "budgets": summary.get("budgets", {}), "bound_by": summary.get("bound_by"),
                "landed_step": (summary.get("landing") or {}).get("step"),
                "landed_within_step": (summary.get("landing") or {}).get("within_step")}

    def search_data(self) -> DataSplits:
        return with_train_subset(self.data, self.preset.search_subset, 0)

    def train(self, name: str, arch_text: str, seed: int = 0, out: Path | None = None) -> dict:
        out = out or self.run_dir / "train" / name
        cfg = TrainConfig(arch=arch_text, data=self.data_name, data_dir=self.options.data_dir, width=self.preset.width,
                          epochs=self.epochs["train"], batch_size=self.preset.batch_size,
                          train_subset=self.preset.train_subset, out=str(out), seed=seed, **self.jobs())
        self.run_job("train", cfg, out, lambda resume: run_train(
            cfg, resume_dir=resume, force=resume is None,
            data=with_train_subset(self.data, self.preset.train_subset, 0)))
        metrics = read_json(out / "results.json", "training results")
        net, meta = load_model(out)
        onnx_path = self.run_dir / "models" / f"{out.relative_to(self.run_dir / 'train').as_posix().replace('/', '-')}.onnx"
        check = export_model(net, meta, "onnx", onnx_path, self.options.data_dir)
        int8 = {}
        if self.options.precision == "int8":
            q = export_int8(net, meta, onnx_path.with_suffix(".int8.onnx"), self.options.data_dir)
            int8 = {"onnx_int8": q["path"], "test_top1_int8": q["test_top1_int8"],
                    "test_top1_float_onnx": q["test_top1_float"], "int8_drop_points": q["drop_points"],
                    "int8_warning": q["warning"]}
        return {**metrics, **int8, "arch": arch_text, "onnx": str(onnx_path), "export_max_abs_diff": check["max_abs_diff"],
                "seed": seed, "out": str(out)}

    def run_job(self, kind: str, cfg, out: Path, in_process, max_steps: int | None = None) -> None:
        """A search or training: in this process, or under torchrun with ``nproc`` processes; either
        resumes from the job's checkpoint when there is one. ``max_steps``: stop there (exit 0)."""
        resume = str(out) if (out / CHECKPOINT).is_file() else None
        if self.nproc == 1:
            try:
                in_process(resume)
            except Interrupted as stop:
                if not (max_steps is not None and stop.exit_code == 0):
                    raise
            return
        if resume:
            args = ["--resume", resume, *(["--max-steps", str(max_steps)] if max_steps else [])]
        else:
            config = self.run_dir / f"{kind}-{out.relative_to(self.run_dir).as_posix().replace('/', '-')}.config.json"
            write_json(config, {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None})
            args = ["--config", str(config), "--force"]
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={self.nproc}",
                   "-m", "spnas", kind, *args]
        with subprocess.Popen(command) as launched, _signals_passed_to(launched) as received:
            code = launched.wait()
        if received or code in (128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM):
            # torchrun itself exits 1 when stopped by a signal; its workers have checkpointed
            raise Interrupted(f"{kind} stopped", 128 + (received[-1] if received else abs(code) % 128))
        if code != 0:
            raise SpnasError(f"the {kind} in {out} failed under torchrun (exit {code}; its lines are above); fix "
                             "the cause and run the same command to resume")

    def measure(self, names: list[str], stages: dict[str, str] | None = None) -> dict:
        """All ``names`` measured interleaved until their medians are stable; ``stages``: the training
        stage of each (default train:NAME). ONNX models are timed in a fresh process; a measurement
        that the machine's load made unreliable is taken once more, and warned about if it still is."""
        space, backend = self.space, self.backend
        shape = [1, space.in_channels, space.input_size, space.input_size]
        trained = {name: self.state["stages"][(stages or {}).get(name, f"train:{name}")] for name in names}
        protocol = Protocol(warmup=10, repeats=self.preset.measure_repeats)
        for attempt in (1, 2):
            if backend.name == "onnxruntime-cpu":
                key = "onnx_int8" if self.options.precision == "int8" else "onnx"
                stats, conditions = measure_onnx_models({n: t[key] for n, t in trained.items()}, shape,
                                                        backend.threads, protocol, self.run_dir / "measure")
            else:
                runners = {n: backend.runner(load_model(Path(t.get("out", self.run_dir / "train" / n)))[0], shape)
                           for n, t in trained.items()}
                stats, conditions = measure_until_stable(runners, protocol, RoundProgress("measuring models"))
            if not conditions.get("warnings"):
                break
            if attempt == 1:
                print("spnas: note: the machine was busy or unsteady while measuring "
                      f"({'; '.join(conditions['warnings'])}); measuring again", file=sys.stderr)
        return {"models": {name: s.to_dict() for name, s in stats.items()}, "conditions": conditions}

    def report(self, lut: LatencyTable, models: dict, measure_stage: dict | None, target_ms: float) -> dict:
        measured = self.measured_models(measure_stage)
        rows = []
        for name, arch_text in models.items():
            t = self.state["stages"][f"train:{name}"]
            predicted = predict_ms(lut, Architecture.from_string(arch_text))
            rows.append({"model": name, "arch": arch_text, "predicted_ms": predicted,
                         "measured_ms": measured[name]["median"] if measured else None,
                         "measured_iqr_ms": measured[name]["iqr"] if measured else None,
                         "latency_ms": measured[name]["median"] if measured else predicted,
                         "test_top1": t["test_top1"], "test_top5": t.get("test_top5"),
                         "test_top1_raw": t["test_top1_raw"], "test_top1_ema": t["test_top1_ema"],
                         "train_wall_s": t["train_wall_s"], "export_max_abs_diff": t["export_max_abs_diff"],
                         **{k: t[k] for k in ("test_top1_int8", "test_top1_float_onnx", "int8_drop_points") if k in t},
                         **{k: v for k, v in arch_costs(self.space, Architecture.from_string(arch_text).ops,
                                                        self.options.precision).items()}})
        summary = {"preset": self.options.preset, "data": self.data_name, "space": self.space.to_dict(),
                   "target_ms": target_ms, "latency_backend": lut.backend,
                   "latency": "measured" if measured else "predicted", "lut": self.state["stages"]["lut"],
                   "search": self.state["stages"]["search"], "models": rows,
                   "settings": dataclasses.asdict(self.preset), "epochs": self.epochs,
                   "threads": self.backend.threads, "processes": self.nproc, "precision": self.options.precision}
        conditions = (measure_stage or {}).get("conditions", {})
        summary["measurement_conditions"] = conditions
        summary["warnings"] = [*(f"search: {w}" for w in self.state["stages"]["search"].get("warnings", [])),
                               *(f"measured latencies may be off: {w}" for w in conditions.get("warnings", [])),
                               *prediction_offset_warnings(rows), *comparison_warnings(rows, self.space.num_classes),
                               *(f"{name}: {self.state['stages'][f'train:{name}']['int8_warning']}" for name in models
                                 if self.state["stages"][f"train:{name}"].get("int8_warning"))]
        for warning in summary["warnings"]:
            print(f"spnas: warning: {warning}", file=sys.stderr)
        write_report(self.run_dir, summary, self.space)
        return summary


@contextmanager
def _signals_passed_to(child: subprocess.Popen):
    """While torchrun runs a job: SIGTERM to this process is passed on (its workers checkpoint and
    stop); Ctrl-C reaches the child from the terminal itself, so this process only waits for it.
    Yields the signals received, so the job's end can be told apart from its failure."""
    received: list[int] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        if signum == signal.SIGTERM:
            child.send_signal(signum)

    old = {signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
           signal.SIGINT: signal.signal(signal.SIGINT, forward)}
    try:
        yield received
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _foreign_lut(path: str, space: SearchSpace, precision: str) -> LatencyTable:
    lut = LatencyTable.load(path)
    lut.check(space, path)
    lut.require_precision(precision, path)
    return lut


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


def _open_state(run_dir: Path, command: str, preset: str, data: str, epochs: dict, resume: bool) -> dict:
    """Resume a directory of the same command, preset, data and epochs; refuse anything else."""
    path = run_dir / STATE
    if resume:
        state = read_json(path, "pipeline state")
        if not isinstance(state, dict) or not isinstance(state.get("stages"), dict):
            raise SpnasError(f"{path}: corrupt pipeline state; pass --force to start over")
        made_by = state.get("command", "run")  # directories of older versions: spnas run
        if made_by != command:
            raise SpnasError(f"{run_dir}: holds a 'spnas {made_by}' directory, not a 'spnas {command}' one; "
                             "choose another --out")
        if state.get("preset") != preset or state.get("data") != data:
            raise SpnasError(f"{run_dir}: holds a run of preset {state.get('preset')!r} on {state.get('data')!r}; "
                             "choose another --out or pass --force")
        recorded = state.setdefault("epochs", epochs)  # directories of older versions: the preset's epochs
        if recorded != epochs:
            raise SpnasError(f"{run_dir}: holds a run of {recorded['search']} search and {recorded['train']} training "
                             f"epochs, not {epochs['search']} and {epochs['train']}; give the same --search-epochs "
                             "and --train-epochs, or choose another --out")
        return state
    state = {"command": command, "preset": preset, "data": data, "epochs": epochs, "stages": {}}
    write_json(path, state)
    return state
