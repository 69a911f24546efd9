"""``spnas export RUN_DIR``: ONNX / TorchScript checked against PyTorch, or an INT8 ONNX model with its
test accuracy beside the float model's."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spnas.deploy.export import FORMATS, export_int8, export_model
from spnas.deploy.quantize import CALIBRATION_IMAGES
from spnas.errors import SpnasError
from spnas.jobs.rundir import check_output_file
from spnas.train.loop import load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained model (ONNX, TorchScript)")
    p.add_argument("run_dir", help="a 'spnas train' run directory (or its model.pt)")
    p.add_argument("--format", default="onnx", choices=FORMATS)
    p.add_argument("--out", required=True, help="file to write (model.onnx / model.pt)")
    p.add_argument("--data-dir", help="where the dataset is, for the check on real images")
    p.add_argument("--int8", action="store_true",
                   help="write the INT8 ONNX model (static post-training quantization: QDQ, per-channel int8 weights, "
                   "uint8 activations calibrated on training images) and report its test top-1 through onnxruntime "
                   "beside the float model's; more than 1 point lower is flagged")
    p.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES,
                   help=f"--int8: training images that calibrate the activations (default {CALIBRATION_IMAGES})")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, args.force)
    if args.int8 and args.format != "onnx":
        raise SpnasError("--int8 writes an ONNX model; leave out --format or give --format onnx")
    net, meta = load_model(args.run_dir)
    if args.int8:
        info = export_int8(net, meta, Path(args.out), args.data_dir, args.calibration_images)
        print(f"wrote {args.out} (int8, calibrated on {info['calibration_images']} training images); test top-1 through "
              f"onnxruntime: float {info['test_top1_float'] * 100:.2f}%, int8 {info['test_top1_int8'] * 100:.2f}% "
              f"({-info['drop_points']:+.2f} points) on {info['test_images']} images")
        if info["warning"]:
            print(f"spnas: warning: {info['warning']}", file=sys.stderr)
        return 0
    info = export_model(net, meta, args.format, Path(args.out), args.data_dir)
    print(f"wrote {args.out} ({args.format}); max |logit difference| vs PyTorch {info['max_abs_diff']:.2e} "
          f"on {info['checked_on']} images")
    return 0
