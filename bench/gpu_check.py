"""Everything issue 29 asks to see on a GPU, in one run of a few minutes: writes ``gpu_check.json`` and
``gpu_check.md`` (one table) into ``--out``, after every check, so a run cut short keeps what it measured.

Checks (each in this process, each caught on its own so one failure costs only its row):
  search/train rates   ``spnas search`` and ``spnas train`` through the real CLI (small space, 28 px, batch 128,
                       fp32 and bf16; imagenet space, 224 px, batch 256, bf16, synthetic tensors; the same
                       from a generated JPEG folder streamed by DataLoader workers, and decoded on the GPU
                       with nvJPEG where torchvision is installed): img/s over the steps
                       after the first few, and the forward/backward/optimiser step's share of them
  bare step            ``bench/throughput.py``'s step (``GlobalBatchStep``) at the same sizes: supernet and
                       all-k5e6, fp32 and bf16; the loop/step and supernet/k5e6 ratios
  data                 the folder loader alone (``FolderBatchSource``, all cores): img/s of 224-px batches,
                       decoded by the workers and by nvJPEG
  compile              the 224-px bf16 supernet step with and without torch.compile (if --compile)
  profile              torch.profiler over a few 224-px bf16 search steps: the top 15 ops by device time
  spnas run            ``spnas run --preset quick --device cuda --backend torch-cuda``: wall time

    bash bench/gpu_check.sh                      # on a machine with a GPU: results in bench/results/gpu_check/
    python3 bench/gpu_check.py --cpu-test --out /tmp/gc   # the same checks, tiny, on the CPU (to test this file)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import flat_lut  # noqa: E402
from data_rate import make_folder  # noqa: E402

from spnas.cli.main import main as spnas  # noqa: E402
from spnas.jobs.opcount import StepCounter  # noqa: E402
from spnas.latency.synthetic import synthetic_table  # noqa: E402
from spnas.model.space import get_space  # noqa: E402

#: the paper's search (SPEC §5): 8 epochs of ImageNet at global batch 1024
PAPER_IMAGES = 10_008 * 1024


class Check:
    """Sizes of the checks: a GPU's, or tiny ones that run on a CPU in a minute (``--cpu-test``)."""

    def __init__(self, cpu_test: bool, out: Path) -> None:
        self.cpu_test, self.out = cpu_test, out
        self.device = "cpu" if cpu_test else "cuda"
        self.small_batch, self.big_batch = (16, 8) if cpu_test else (128, 256)
        self.big_size = 32 if cpu_test else 224
        self.steps = 8 if cpu_test else 64
        self.big_steps = 6 if cpu_test else 40
        self.skip = 2 if cpu_test else 8
        self.workers = min(15, max(1, (os.cpu_count() or 1) - 1))
        self.results: dict = {"meta": meta(self.device), "checks": {}, "errors": {}}
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))

    def run(self, name: str, fn: Callable[[], dict]) -> None:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            self.results["checks"][name] = {**fn(), "check_s": round(time.monotonic() - started, 1)}
        except BaseException as err:  # noqa: BLE001 - one failed check must not cost the others
            if isinstance(err, KeyboardInterrupt):
                raise
            self.results["errors"][name] = f"{type(err).__name__}: {err}"
            traceback.print_exc()
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.results, indent=1, default=str) + "\n")
        (self.out / "gpu_check.md").write_text(table(self.results))

    # ------------------------------------------------------------------ the loops, through the CLI
    def cli_rate(self, argv: list[str], batch: int) -> dict:
        sync = torch.cuda.synchronize if self.device == "cuda" else None
        with StepCounter(timing=True) as counter:
            code = spnas(argv)
        if code:
            raise RuntimeError(f"spnas {' '.join(argv)} exited with {code}")
        if sync:
            sync()
        rows = counter.steps()[self.skip:]
        seconds = sum(r["seconds"] for r in rows)
        inner = sum(r["inner_seconds"] for r in rows)
        return {"steps_timed": len(rows), "steps_per_s": len(rows) / seconds, "images_per_s": len(rows) * batch / seconds,
                "step_share_in_bare_step": inner / seconds, "argv": argv}

    def search_small(self, amp: str) -> dict:
        lut, target = table_file(self.tmp / "lut_small.json", get_space("small"))
        return self.cli_rate(["search", "--lut", str(lut), "--target-ms", target, "--data", "fashion-mnist",
                              "--train-subset", str(self.steps * self.small_batch), "--batch-size",
                              str(self.small_batch), "--epochs", "1", "--device", self.device, "--amp", amp,
                              "--out", str(self.tmp / f"search_small_{amp}"), "--no-eval-every-epoch"],
                             self.small_batch)

    def train_small(self, amp: str) -> dict:
        return self.cli_rate(["train", "uniform-k5e6", "--space", "small", "--data", "fashion-mnist",
                              "--train-subset", str(self.steps * self.small_batch), "--batch-size",
                              str(self.small_batch), "--epochs", "1", "--device", self.device, "--amp", amp,
                              "--out", str(self.tmp / f"train_small_{amp}"), "--precise-bn-batches", "0"],
                             self.small_batch)

    def search_big(self, data: list[str], name: str, classes: int = 10) -> dict:
        lut, target = table_file(self.tmp / f"lut_imagenet_{classes}.json",
                                 get_space("imagenet", input_size=self.big_size, num_classes=classes))
        r = self.cli_rate(["search", "--space", "imagenet", "--lut", str(lut), "--target-ms", target, *data,
                           "--batch-size", str(self.big_batch), "--epochs", "1", "--device", self.device,
                           "--amp", "bf16", "--out", str(self.tmp / name), "--no-eval-every-epoch",
                           "--val-fraction", "0"], self.big_batch)
        r["paper_search_h"] = PAPER_IMAGES / r["images_per_s"] / 3600
        return r

    def synthetic_big(self) -> list[str]:
        n = self.big_steps * self.big_batch
        return ["--data", f"synthetic:{n}:3:{self.big_size}:10"]

    def folder(self) -> Path:
        root = self.tmp / "folder"
        if not root.exists():
            make_folder(root, max(self.big_steps * self.big_batch // 4, 64), 320, 280)
            for cls in ("c0", "c1"):  # four copies of each file: enough images without encoding them all
                for path in list((root / "train" / cls).glob("*.jpg")):
                    for k in range(1, 4):
                        (path.parent / f"{path.stem}_{k}.jpg").write_bytes(path.read_bytes())
        return root

    def folder_big(self, decode: str) -> list[str]:
        """The generated folder streamed from disk; ``decode``: cpu (the workers) or gpu (nvJPEG)."""
        return ["--data", f"imagefolder:{self.big_size}:stream", "--data-dir", str(self.folder()),
                "--workers", str(self.workers), "--decode", decode]

    # ------------------------------------------------------------------ the bare step
    def bare_steps(self) -> dict:
        from throughput import measure

        out = {}
        for space, batch in (("small", self.small_batch), ("imagenet", self.big_batch)):
            for model in ("supernet", "k5e6"):
                for amp in ("off", "bf16"):
                    job = {"device": self.device, "amp": amp, "space": space, "model": model, "threads": 1,
                           "per_process_batch": batch, "steps": 3 if self.cpu_test else 10, "warmup": 1 if
                           self.cpu_test else 3}
                    if self.cpu_test and space == "imagenet":
                        job["per_process_batch"] = 2
                    r = measure(job, 1)
                    out[f"{space} {model} {amp}"] = r["images_per_s"]["median"]
        for space in ("small", "imagenet"):
            for amp in ("off", "bf16"):
                out[f"{space} supernet/k5e6 {amp}"] = out[f"{space} k5e6 {amp}"] / out[f"{space} supernet {amp}"]
        return out

    def data_loader(self) -> dict:
        from data_rate import loader_rates

        rates = loader_rates(self.folder(), self.big_size, self.big_batch, [self.workers],
                             batches=self.big_steps)
        out = {"workers": self.workers, "images_per_s": rates[0]["images_per_s"]}
        try:  # nvJPEG where torchvision has it: the workers only read the files
            gpu = loader_rates(self.folder(), self.big_size, self.big_batch, [self.workers], batches=self.big_steps,
                               device=torch.device(self.device), decode="gpu")
            out["nvjpeg_images_per_s"] = gpu[0]["images_per_s"]
        except Exception as err:  # noqa: BLE001 - reported in the row, the others go on
            out["nvjpeg_error"] = str(err).splitlines()[0][:200]
        return out

    def compiled(self) -> dict:
        """The 224-px bf16 search through the CLI, compiled against eager (eager: the 'synthetic' check)."""
        r = self.search_big([*self.synthetic_big(), "--compile"], "search_big_compiled")
        return r

    def profile(self) -> dict:
        from torch.profiler import ProfilerActivity, profile

        from spnas.jobs.device import Precision
        from spnas.jobs.engine import GlobalBatchStep
        from spnas.jobs.optim import L2Term, make_optimizer
        from spnas.jobs.replicas import Replicas
        from spnas.latency.predict import differentiable_ms, lut_tensor
        from spnas.nn.network import SinglePathNet
        from spnas.search.objective import runtime_term

        device = torch.device(self.device)
        space = get_space("imagenet", input_size=self.big_size, num_classes=10)
        precision = Precision(device, "bf16")
        net = precision.prepare(SinglePathNet(space))
        step = GlobalBatchStep(net, net, make_optimizer("tf-rmsprop", net.parameters(), 0.01), precision, Replicas(), 1,
                               0.1, L2Term.of(net, 1e-5))
        lut = flat_lut(space)
        table = lut_tensor(lut, device)
        x = torch.randn(self.big_batch, 3, self.big_size, self.big_size)
        y = torch.randint(0, 10, (self.big_batch,))
        reg = lambda: runtime_term(differentiable_ms(lut, net.indicators().float(), table=table), 0.02)  # noqa: E731
        for i in range(3):
            step(i, lambda part: (x, y), step_seed=i, regulariser=reg)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device == "cuda" else [])
        with profile(activities=activities) as prof:
            for i in range(3, 6):
                step(i, lambda part: (x, y), step_seed=i, regulariser=reg)
            if self.device == "cuda":
                torch.cuda.synchronize()
        key = "device_time_total" if self.device == "cuda" else "cpu_time_total"
        text = prof.key_averages().table(sort_by=key, row_limit=15)
        (self.out / "profile_top15.txt").write_text(text)
        return {"sort_by": key, "table_file": "profile_top15.txt", "steps": 3}

    def spnas_run(self) -> dict:
        out = self.tmp / "run"
        argv = [sys.executable, "-m", "spnas", "run", "--out", str(out), "--no-cache"]
        argv += (["--preset", "smoke", "--device", "cpu"] if self.cpu_test else
                 ["--preset", "quick", "--device", "cuda", "--backend", "torch-cuda"])
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300 if not self.cpu_test else 600)
        wall = time.monotonic() - started
        (self.out / "spnas_run.log").write_text(done.stdout + done.stderr)
        result = {"wall_s": wall, "exit": done.returncode, "argv": argv[2:]}
        if (out / "results.json").is_file():
            summary = json.loads((out / "results.json").read_text())
            result["models"] = [{k: m.get(k) for k in ("model", "test_top1", "measured_ms", "predicted_ms")}
                                for m in summary.get("models", [])]
        return result


def table_file(path: Path, space) -> tuple[Path, str]:
    """A synthetic latency table for ``space`` and a target between its uniform k3e3 and k3e6 nets."""
    from spnas.latency.predict import predict_ms
    from spnas.model.arch import uniform

    lut = synthetic_table(space)
    lut.save(path)
    return path, f"{(predict_ms(lut, uniform(space, 'k3e3')) + predict_ms(lut, uniform(space, 'k3e6'))) / 2:.4f}"


def meta(device: str) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu_cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "device": device}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    info["commit"] = commit
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def table(results: dict) -> str:
    """The checks as one markdown table (what BENCHMARKS takes)."""
    c, m = results["checks"], results["meta"]
    lines = [f"GPU check: {m.get('gpu', m['device'])}, torch {m['torch']}, {m['cpu_cores']} CPU cores, commit "
             f"{m['commit']}, {m['date']}", "", "| what | measured | note |", "| --- | --- | --- |"]

    def row(what: str, value: str, note: str = "") -> None:
        lines.append(f"| {what} | {value} | {note} |")

    for key, what in (("search small fp32", "`spnas search`, small space, 28 px, batch 128, fp32"),
                      ("search small bf16", "same, bf16"), ("train small fp32", "`spnas train` k5e6, same size, fp32"),
                      ("search 224 synthetic bf16", "`spnas search`, imagenet space, 224 px, batch 256, bf16, tensors"),
                      ("search 224 folder bf16", "same, a generated folder of 320x280 JPEGs, DataLoader workers"),
                      ("search 224 folder bf16 nvjpeg", "same folder, JPEGs decoded on the GPU (`--decode gpu`)"),
                      ("search 224 synthetic bf16 compiled", "same as tensors, `--compile`")):
        if key in c:
            r = c[key]
            note = f"bare step's share {r['step_share_in_bare_step']:.2f}"
            if "paper_search_h" in r:
                note += f"; the paper's search: {r['paper_search_h']:.2f} h"
            row(what, f"{r['steps_per_s']:.2f} steps/s = {r['images_per_s']:.0f} img/s", note)
    if "bare step" in c:
        b = c["bare step"]
        for space in ("small", "imagenet"):
            for amp in ("off", "bf16"):
                row(f"bare step, {space}, {'fp32' if amp == 'off' else amp}",
                    f"supernet {b[f'{space} supernet {amp}']:.0f} img/s, k5e6 {b[f'{space} k5e6 {amp}']:.0f} img/s",
                    f"supernet/k5e6 time {b[f'{space} supernet/k5e6 {amp}']:.2f}x")
        for key, space, amp in (("search small fp32", "small", "off"), ("search 224 synthetic bf16", "imagenet", "bf16")):
            if key in c:
                row(f"loop/step, {key}", f"{b[f'{space} supernet {amp}'] / c[key]['images_per_s']:.2f}",
                    "bare step img/s over the loop's")
    if "data loader" in c:
        d = c["data loader"]
        row("image folder loader alone, 224 px", f"{d['images_per_s']:.0f} img/s", f"{d['workers']} workers")
        row("same, nvJPEG decoding on the GPU (`--decode gpu`)",
            f"{d['nvjpeg_images_per_s']:.0f} img/s" if "nvjpeg_images_per_s" in d else "not run",
            d.get("nvjpeg_error", f"{d['workers']} workers reading files"))
    if "spnas run" in c:
        r = c["spnas run"]
        row("`spnas run --preset quick --device cuda --backend torch-cuda`", f"{r['wall_s'] / 60:.1f} min",
            f"exit {r['exit']}")
    if "profile" in c:
        row("torch.profiler, 224-px bf16 search step", c["profile"]["table_file"], "top 15 ops")
    for name, error in results["errors"].items():
        row(name, "failed", error.replace("|", "/")[:200])
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results/gpu_check")
    p.add_argument("--cpu-test", action="store_true", help="tiny sizes on the CPU: checks this script runs")
    p.add_argument("--compile", action="store_true", help="also the compiled 224-px search (a few minutes more)")
    p.add_argument("--skip", nargs="*", default=[], help="names of checks to leave out")
    args = p.parse_args()
    if not args.cpu_test and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; use --cpu-test to check this script on the CPU")
    c = Check(args.cpu_test, Path(args.out))
    checks: list[tuple[str, Callable[[], dict]]] = [
        ("search small fp32", lambda: c.search_small("off")),
        ("search small bf16", lambda: c.search_small("bf16")),
        ("train small fp32", lambda: c.train_small("off")),
        ("search 224 synthetic bf16", lambda: c.search_big(c.synthetic_big(), "search_big_synthetic")),
        ("bare step", c.bare_steps),
        ("profile", c.profile),
        ("data loader", c.data_loader),
        ("search 224 folder bf16", lambda: c.search_big(c.folder_big("cpu"), "search_big_folder", classes=2)),
        ("spnas run", c.spnas_run),
        # last: new, and a slow nvJPEG path must not cost the rows above their time
        ("search 224 folder bf16 nvjpeg", lambda: c.search_big(c.folder_big("gpu"), "search_big_nvjpeg", classes=2)),
    ]
    if args.compile:
        checks.append(("search 224 synthetic bf16 compiled", c.compiled))
    for name, fn in checks:
        if name not in args.skip:
            c.run(name, fn)
    print(table(c.results))


if __name__ == "__main__":
    main()
