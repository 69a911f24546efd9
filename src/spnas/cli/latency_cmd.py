"""``spnas latency ...``: profile, import, predict, measure, validate, bundle."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spnas.model.arch import resolve_arch
from spnas.cli.arch_cmd import ARCH_HELP
from spnas.cli.space_cmd import add_space_overrides, space_from_args
from spnas.errors import SpnasError
from spnas.outputs.files import read_json
from spnas.deploy.quantize import CALIBRATION_IMAGES, PRECISIONS, ModelFormat, format_of_table, int8_format
from spnas.latency.bundle import VALIDATION_NETWORKS, calibrate_from_bundle_results, write_bundle
from spnas.latency.device_profiler import CACHE_STATES, Protocol
from spnas.latency.lut import LatencyTable, import_pixel1
from spnas.latency.predict import predict_ms
from spnas.latency.parts import Part
from spnas.latency.profile import lut_from_bundle_results, measure_parts, profile_space
from spnas.latency.backends import BACKENDS, get_backend
from spnas.latency.validate import SAMPLINGS, VALIDATION_FILES, ValidationResult, validate
from spnas.nn.network import SinglePathNet
from spnas.jobs.rundir import check_output_file, checked_out_path, run_directory
from spnas.model.space import SPACES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="build, check and use latency lookup tables (LUTs)")
    lsub = p.add_subparsers(dest="latency_cmd", required=True,
                            metavar="{profile,import-pixel1,predict,measure,validate,bundle}")

    prof = lsub.add_parser("profile", help="measure every op of every layer on a backend -> LUT")
    prof.add_argument("--space", default="small", help=f"search space ({', '.join(SPACES)})")
    add_space_overrides(prof)
    _add_backend_args(prof, repeats=100)
    prof.add_argument("--from-bundle-results", metavar="FILE",
                      help="build the LUT from a device bundle's results.json instead of measuring here; the whole "
                      "networks the device timed calibrate it, and their accuracy report goes to --validation-out")
    prof.add_argument("--validation-out", metavar="DIR", help="with --from-bundle-results: directory for "
                      "validation.json/.csv/.png (default: beside --out, named after it with -validation)")
    prof.add_argument("--out", required=True, help="LUT file to write (JSON)")
    prof.add_argument("--force", action="store_true", help="replace --out if it exists")
    prof.set_defaults(func=run_profile)

    imp = lsub.add_parser("import-pixel1", help="convert the paper's released Pixel 1 table to a LUT")
    imp.add_argument("file", help="pixel1_runtime_model.json (keys '0'..'21')")
    imp.add_argument("--out", required=True, help="LUT file to write")
    imp.add_argument("--force", action="store_true", help="replace --out if it exists")
    imp.set_defaults(func=run_import)

    pred = lsub.add_parser("predict", help="predicted latency of one architecture from a LUT")
    pred.add_argument("arch", help=ARCH_HELP)
    pred.add_argument("--lut", required=True, help="LUT file")
    pred.add_argument("--json", action="store_true")
    pred.set_defaults(func=run_predict)

    meas = lsub.add_parser("measure", help="measure one whole architecture end to end on a backend")
    meas.add_argument("arch", help=ARCH_HELP)
    meas.add_argument("--space", help="space (default: the one the architecture names)")
    add_space_overrides(meas)
    _add_backend_args(meas, repeats=100)
    meas.add_argument("--lut", help="also print this LUT's prediction")
    meas.add_argument("--json", action="store_true")
    meas.set_defaults(func=run_measure)

    val = lsub.add_parser("validate", help="predicted vs measured latency of random architectures")
    val.add_argument("--lut", required=True, help="LUT file (its backend is re-measured here)")
    val.add_argument("--samples", type=int, default=VALIDATION_NETWORKS,
                     help=f"networks to time, half to calibrate and half held out (default {VALIDATION_NETWORKS}, as "
                     "every measurement of BENCHMARKS.md, earlier results)")
    val.add_argument("--sampling", choices=SAMPLINGS, default="stratified",
                     help="stratified (default): from the smallest to the largest net, the number of skipped layers "
                     "and the op sizes spread evenly; uniform: each layer's op uniform (all nets mid-range)")
    val.add_argument("--seed", type=int, default=0)
    val.add_argument("--warmup", type=int, default=5)
    val.add_argument("--repeats", type=int, default=60)
    _add_cache_args(val)
    val.add_argument("--data-dir", help="an INT8 table: where the dataset that calibrated it is now (default: as recorded)")
    val.add_argument("--write-calibration", action="store_true",
                     help="store the fitted calibration in the LUT file (atomically)")
    val.add_argument("--out", required=True, help="directory for validation.json/.csv/.png")
    val.add_argument("--force", action="store_true", help="replace the validation files in --out")
    val.set_defaults(func=run_validate)

    bun = lsub.add_parser("bundle", help="write ONNX models + a standalone profiler for another device")
    bun.add_argument("--space", default="small", help=f"search space ({', '.join(SPACES)})")
    add_space_overrides(bun)
    bun.add_argument("--networks", type=int, default=VALIDATION_NETWORKS,
                     help="whole networks to time on the device beside the layers, from the smallest to the largest; "
                     f"half calibrate the table, half check it (default {VALIDATION_NETWORKS}; 0: layers only)")
    _add_precision_args(bun)
    bun.add_argument("--out", required=True, help="new directory for the bundle")
    bun.add_argument("--force", action="store_true", help="empty --out first if spnas created it")
    bun.set_defaults(func=run_bundle)


def _add_precision_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("precision")
    g.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="float32 (default) or int8: every model statically quantized with onnxruntime's tools (QDQ, "
                   "per-channel int8 weights, uint8 activations calibrated on real images), as INT8 deployments run")
    g.add_argument("--calibration-data", default="fashion-mnist", metavar="DATA",
                   help="int8: the dataset whose training images calibrate the quantization (any dataset spec; it must "
                   "match the space's input; default fashion-mnist)")
    g.add_argument("--data-dir", help="int8: directory of --calibration-data (env SPNAS_DATA_DIR)")
    g.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES,
                   help=f"int8: how many training images calibrate it (default {CALIBRATION_IMAGES})")


def _format(args: argparse.Namespace, space) -> ModelFormat:
    if args.precision == "float32":
        return ModelFormat()
    return int8_format(space, args.calibration_data, args.data_dir, args.calibration_images)


def _add_backend_args(p: argparse.ArgumentParser, repeats: int) -> None:
    _add_precision_args(p)
    g = p.add_argument_group("measurement")
    g.add_argument("--backend", default="onnxruntime-cpu", help=f"where to measure: one of {', '.join(BACKENDS)}")
    g.add_argument("--target", dest="backend", default="onnxruntime-cpu", help=argparse.SUPPRESS)  # its old name
    g.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    g.add_argument("--warmup", type=int, default=10, help="untimed runs per model first")
    g.add_argument("--repeats", type=int, default=repeats, help="timed rounds (interleaved)")
    g.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    _add_cache_args(g)


def _add_cache_args(p) -> None:
    p.add_argument("--cache", choices=CACHE_STATES, default=None,
                   help="warm (default): each model timed in a burst after an untimed run, as when it "
                        "runs in a loop; cold: one run per visit, caches evicted by the other models. "
                        "validate defaults to the LUT's own setting")
    p.add_argument("--burst", type=int, default=Protocol.burst, help="timed runs per visit when warm")


def _protocol(args: argparse.Namespace, default_cache: str = Protocol.cache) -> Protocol:
    if getattr(args, "threads", 1) < 1:
        raise SpnasError(f"--threads must be >= 1, got {args.threads}")
    try:
        return Protocol(warmup=args.warmup, repeats=args.repeats, seed=args.seed,
                        cache=args.cache or default_cache, burst=args.burst)
    except ValueError as err:
        raise SpnasError(str(err)) from None


def run_profile(args: argparse.Namespace) -> int:
    check_output_file(args.out, args.force)
    if args.from_bundle_results:
        results = read_json(args.from_bundle_results, "bundle results file")
        lut = lut_from_bundle_results(results, args.from_bundle_results)
        out = checked_out_path(args.validation_out or str(Path(args.out).with_suffix("")) + "-validation")
        for name in VALIDATION_FILES:
            check_output_file(out / name, args.force)
        validation = calibrate_from_bundle_results(lut, results, args.from_bundle_results, out)
        if validation is None:
            print("spnas: note: this bundle has no whole networks (made by an older spnas): the table is "
                  "neither validated nor calibrated", file=sys.stderr)
        else:
            _print_validation(validation, lut.backend)
    else:
        space = space_from_args(args)
        protocol = _protocol(args)
        lut = profile_space(space, get_backend(args.backend, args.threads, _format(args, space)), protocol)
    lut.save(args.out)
    print(f"wrote {args.out}: {lut.backend} {lut.precision}, {len(lut.layers)} layers, constant {lut.constant_ms:.3f} ms, "
          f"range {min(min(r.values()) for r in lut.layers):.3f}-{max(max(r.values()) for r in lut.layers):.3f} ms/layer")
    return 0


def run_import(args: argparse.Namespace) -> int:
    check_output_file(args.out, args.force)
    lut = import_pixel1(args.file, SPACES["imagenet"]())
    lut.save(args.out)
    print(f"wrote {args.out}: Pixel 1 table for space imagenet, constant {lut.constant_ms} ms")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    lut = LatencyTable.load(args.lut)
    space = lut.search_space()
    arch = resolve_arch(args.arch, space.name)
    lut.check(space, args.lut)
    raw, ms = predict_ms(lut, arch, calibrated=False), predict_ms(lut, arch)
    if args.json:
        print(json.dumps({"arch": arch.to_string(), "predicted_ms": ms, "predicted_raw_ms": raw,
                          "backend": lut.backend}))
    else:
        extra = f" (plain sum {raw:.3f} ms, calibrated)" if lut.calibration else ""
        print(f"{arch.to_string()}\npredicted {ms:.3f} ms on {lut.backend}{extra}")
    return 0


def run_measure(args: argparse.Namespace) -> int:
    arch = resolve_arch(args.arch, args.space)
    space = space_from_args(args, arch.space)
    lut = LatencyTable.load(args.lut) if args.lut else None
    if lut:
        lut.check(space, args.lut)
    if lut:
        lut.require_precision(args.precision, args.lut)
    protocol = _protocol(args, lut.timing_cache if lut else Protocol.cache)
    backend = get_backend(args.backend, args.threads, _format(args, space))
    part = Part("net", SinglePathNet(space, arch).eval(), [1, space.in_channels, space.input_size, space.input_size])
    stats = measure_parts(backend, [part], protocol)[0]["net"]
    result = {"arch": arch.to_string(), "backend": backend.name, "threads": args.threads, "cache": protocol.cache,
              "measured_ms": stats.median, "iqr_ms": stats.iqr, "min_ms": stats.min, "n": stats.n}
    if lut:
        result["predicted_ms"] = predict_ms(lut, arch)
    if args.json:
        print(json.dumps(result))
    else:
        line = f"measured {stats.median:.3f} ms (IQR {stats.iqr:.3f}, n={stats.n}) on {backend.name}"
        if "predicted_ms" in result:
            err = (result["predicted_ms"] - stats.median) / stats.median * 100
            line += f"; predicted {result['predicted_ms']:.3f} ms ({err:+.1f}%)"
        print(f"{arch.to_string()}\n{line}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    lut = LatencyTable.load(args.lut)
    space = lut.search_space()
    lut.check(space, args.lut)
    if lut.backend not in BACKENDS:
        raise SpnasError(f"{args.lut}: backend {lut.backend!r} cannot be measured here; "
                         f"validate on the device it was profiled on")
    if args.samples < 4:
        raise SpnasError("--samples must be at least 4 (half calibrate, half are held out)")
    out = checked_out_path(args.out)
    if out.exists() and not out.is_dir():
        raise SpnasError(f"{out}: exists and is not a directory; --out names a directory")
    for name in VALIDATION_FILES:
        check_output_file(out / name, args.force)
    protocol = _protocol(args, lut.timing_cache)
    backend = get_backend(lut.backend, lut.threads, format_of_table(lut, space, args.data_dir))
    result = validate(lut, space, backend, args.samples, args.seed, protocol, out, args.sampling)
    _print_validation(result, lut.backend)
    if args.write_calibration:
        lut.calibration = result.calibration
        lut.save(args.lut)
        print(f"stored the calibration in {args.lut}")
    print(f"wrote {args.out}/validation.json, validation.csv, validation.png")
    return 0


def _print_validation(result: ValidationResult, backend: str) -> None:
    raw, cal = result.report["held_out_raw"], result.report["held_out_calibrated"]
    print(f"held-out {cal['n']} architectures on {backend}:")
    for name, m in (("plain sum", raw), ("calibrated", cal)):
        print(f"  {name:10s} MAPE {m['mape_pct']:.2f}%  RMSE {m['rmse_ms']:.3f} ms  max {m['max_abs_error_pct']:.1f}%  "
              f"within 5% {m['within_5pct'] * 100:.0f}%  within 10% {m['within_10pct'] * 100:.0f}%  "
              f"Spearman {m['spearman']:.3f}")
    for name, m in result.report["held_out_calibrated_by_range"].items():
        print(f"  {name.replace('_', ' '):14s} MAPE {m['mape_pct']:.2f}%  within 5% {m['within_5pct'] * 100:.0f}%  "
              f"mean error {m['mean_error_pct']:+.2f}%")
    c = result.calibration
    terms = (f" + per present layer {', '.join(f'{t:.4f}' for t in c.per_present_layer)} ms" if c.per_present_layer
             else "")
    terms += "".join(f" + {value:.4f} ms per present {kind} layer" for kind, value in
                     (("5x5", c.per_k5_layer), ("e6", c.per_e6_layer)) if value)
    square = f" {c.q:+.4f} * predicted²" if c.q else ""
    print(f"calibration ({c.note}): measured = {c.a:.4f} * predicted{square} + {c.b:.4f} ms{terms}")


def run_bundle(args: argparse.Namespace) -> int:
    space = space_from_args(args)
    if args.networks != 0 and args.networks < 4:
        raise SpnasError("--networks must be 0 or at least 4 (half calibrate, half are held out)")
    fmt = _format(args, space)  # the calibration data is checked before the bundle's directory exists
    with run_directory(args.out, force=args.force) as out:
        write_bundle(space, out, networks=args.networks, fmt=fmt)
    print(f"wrote {out}: copy it to the device and run 'python3 profile_device.py --out results.json'")
    return 0
