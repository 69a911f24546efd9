"""``spnas run``: the whole pipeline with defaults that work on a fresh machine."""

from __future__ import annotations

import argparse

from spnas.data.device_decode import DECODE_MODES
from spnas.jobs.engine import Interrupted
from spnas.latency.backends import BACKENDS
from spnas.workflows.pipeline import RUN_PRESETS, PipelineOptions, run_pipeline
from spnas.model.space import SPACES


def add_parser(sub: argparse._SubParsersAction) -> None:
    presets = "; ".join(f"{k}: {v.note}" for k, v in RUN_PRESETS.items())
    p = sub.add_parser(
        "run", help="the main job: profile, search, train, export, measure, report",
        description="Profile a latency table for this machine (cached), search at a target latency, train "
        "the result and three uniform baselines, export them to ONNX, measure them, and write report.md "
        f"with plots to --out. Re-running the same command resumes. Presets: {presets}.")
    add_pipeline_arguments(p, "runs/spnas-run")
    p.add_argument("--target-ms", type=float,
                   help="latency budget (default: halfway between the all-k3e3 and all-k3e6 nets)")
    p.set_defaults(func=run)


def add_pipeline_arguments(p: argparse.ArgumentParser, default_out: str) -> None:
    """The options ``spnas run`` and ``spnas sweep`` share (see :class:`~spnas.workflows.pipeline.PipelineOptions`)."""
    p.add_argument("--preset", default="quick", choices=list(RUN_PRESETS), help="run size (default quick)")
    p.add_argument("--out", default=default_out, help=f"run directory (default {default_out})")
    p.add_argument("--data", help="dataset: fashion-mnist, mnist, cifar10, cifar100, imagefolder[:SIZE[:MODE]] "
                   "(with --data-dir ROOT holding train/ and val/; MODE memory, stream or auto), synthetic:N:C:SIZE:CLASSES (default: the preset's, "
                   "Fashion-MNIST)")
    p.add_argument("--data-dir", help="directory with the dataset files (env SPNAS_DATA_DIR)")
    p.add_argument("--space", default="small", choices=list(SPACES),
                   help="search space, adapted to the data's size, channels and classes (default small)")
    p.add_argument("--target", dest="backend", default="onnxruntime-cpu", choices=list(BACKENDS),
                   help=argparse.SUPPRESS)  # its old name
    p.add_argument("--backend", default="onnxruntime-cpu", choices=list(BACKENDS),
                   help="where the latency table is profiled and the models measured (default onnxruntime-cpu)")
    p.add_argument("--lut", help="a latency table made on another device (e.g. a phone, with 'spnas latency "
                   "bundle'): nothing is profiled or measured here, and the report compares predicted latencies")
    p.add_argument("--nproc-per-node", type=int, help="processes for search and training, under torchrun "
                   "(default: one per GPU when running on CUDA, else 1)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads for latency (default 1)")
    p.add_argument("--device", default="auto", help="where search and training run: auto (CUDA when present), "
                   "cpu, cuda or cuda:N (default auto)")
    p.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"),
                   help="mixed precision of search and training (fp16: CUDA only; default off)")
    p.add_argument("--decode", default="auto", choices=DECODE_MODES,
                   help="who decodes a streamed image folder's JPEGs: auto (nvJPEG on the GPU where torchvision can, "
                   "else the DataLoader workers), cpu, or gpu (default auto)")
    p.add_argument("--deterministic", action="store_true", help="searches and trainings refuse nondeterministic "
                   "kernels, so the same command on the same machine gives the same architectures and weights")
    p.add_argument("--no-cache", action="store_true", help="profile a new latency table even if one is cached")
    p.add_argument("--force", action="store_true", help="start over in a non-empty --out that spnas created")
    p.add_argument("--precision", default="float32", choices=("float32", "int8"),
                   help="int8: profile the table on INT8 layers, search on it, export every trained model as INT8 too "
                   "(static quantization, calibrated on training images), measure the INT8 models and report float "
                   "and INT8 top-1 (onnxruntime backend only; default float32)")
    for measure, what in (("params", "parameters"), ("macs", "multiply-adds for one image"),
                          ("memory", "bytes of peak activation memory at batch 1 (float32: 4 bytes a value)")):
        p.add_argument(f"--max-{measure}", type=float, help=f"also keep the searched net at or under this many {what}, "
                       "beside the latency target (refused if no network of the space is that small)")
    p.add_argument("--search-epochs", type=int, help="search epochs instead of the preset's (exactly these; a "
                   "resume must give the same)")
    p.add_argument("--train-epochs", type=int, help="epochs of every training instead of the preset's (exactly "
                   "these; a resume must give the same)")


def pipeline_options(args: argparse.Namespace) -> PipelineOptions:
    return PipelineOptions(
        preset=args.preset, out=args.out, data=args.data, data_dir=args.data_dir, space=args.space,
        target_ms=getattr(args, "target_ms", None), backend=args.backend, lut=args.lut, threads=args.threads,
        force=args.force, cache=not args.no_cache, device=args.device, amp=args.amp, decode=args.decode,
        nproc_per_node=args.nproc_per_node, deterministic=args.deterministic, search_epochs=args.search_epochs,
        train_epochs=args.train_epochs, precision=args.precision, max_params=args.max_params, max_macs=args.max_macs,
        max_memory=args.max_memory)


def resumable(stop: Interrupted, out: str) -> Interrupted:
    """What a stopped ``spnas run`` or ``spnas sweep`` says: the same command resumes."""
    return Interrupted(f"stopped; finished stages and checkpoints in {out} are kept: run the same command "
                       "(same --out, --preset and options) to resume", stop.exit_code)


def run(args: argparse.Namespace) -> int:
    try:
        summary = run_pipeline(pipeline_options(args))
    except Interrupted as stop:
        raise resumable(stop, args.out) from None
    bound = summary["search"].get("bound_by")
    print(f"\ntarget {summary['target_ms']:.3f} ms; searched {summary['search']['arch']}"
          + (f" (bound by {bound})" if bound else ""))
    for r in summary["models"]:
        measured = f"measured {r['measured_ms']:.3f} ms  " if r["measured_ms"] is not None else ""
        int8 = f"(INT8 {r['test_top1_int8'] * 100:6.2f}%)  " if "test_top1_int8" in r else ""
        print(f"  {r['model']:14s} top-1 {r['test_top1'] * 100:6.2f}% {int8} {measured}predicted {r['predicted_ms']:.3f} ms")
    print(f"report: {args.out}/report.md")
    return 0
