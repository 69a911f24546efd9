"""``spnas export RUN_DIR``: ONNX / TorchScript, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from spnas.deploy.export import FORMATS, export_model
from spnas.jobs.rundir import check_output_file
from spnas.train.loop import load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained model (ONNX, TorchScript)")
    p.add_argument("run_dir", help="a 'spnas train' run directory (or its model.pt)")
    p.add_argument("--format", default="onnx", choices=FORMATS)
    p.add_argument("--out", required=True, help="file to write (model.onnx / model.pt)")
    p.add_argument("--data-dir", help="where the dataset is, for the check on real images")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, args.force)
    net, meta = load_model(args.run_dir)
    info = export_model(net, meta, args.format, Path(args.out), args.data_dir)
    print(f"wrote {args.out} ({args.format}); max |logit difference| vs PyTorch {info['max_abs_diff']:.2e} "
          f"on {info['checked_on']} images")
    return 0
