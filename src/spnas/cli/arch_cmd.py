"""``spnas arch show ARCH``: layers, and the four figures a search can be budgeted on: parameters,
multiply-adds, peak activation memory and (with a latency table) predicted latency."""

from __future__ import annotations

import argparse
import json

from spnas.model.arch import ARCH_PRESETS, resolve_arch
from spnas.cli.space_cmd import add_space_overrides, space_from_args
from spnas.model.costs import BYTES_PER_VALUE, arch_costs
from spnas.outputs.text_table import format_table

ARCH_HELP = (
    f"a preset ({', '.join(ARCH_PRESETS)}), 'uniform-OP' (e.g. uniform-k3e6), an arch.json file, "
    "or a string such as 'small:k3e3,k3e3,k3e3,skip|k5e6,...'"
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("arch", help="inspect architectures")
    asub = p.add_subparsers(dest="arch_cmd", required=True, metavar="{show}")
    show = asub.add_parser("show", help="print an architecture's layers, params, multiply-adds, peak activation "
                           "memory and (with --lut) predicted latency")
    show.add_argument("arch", help=ARCH_HELP)
    show.add_argument("--space", help="space the architecture belongs to (default: the one it names)")
    show.add_argument("--lut", help="a latency table of the space: also print the predicted latency")
    add_space_overrides(show)
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    arch = resolve_arch(args.arch, args.space)
    space = space_from_args(args, arch.space)
    arch.validate(space)
    costs = arch_costs(space, arch.ops)
    memory_int8 = costs["memory"] // BYTES_PER_VALUE["float32"] * BYTES_PER_VALUE["int8"]
    predicted = None
    if args.lut:
        from spnas.latency.predict import predict_ms
        from spnas.search.loop import load_lut_for

        predicted = predict_ms(load_lut_for(space, args.lut), arch)
    if args.json:
        print(json.dumps({**arch.to_dict(), "params": costs["params"], "macs": costs["macs"],
                          "memory_bytes": {"float32": costs["memory"], "int8": memory_int8},
                          "predicted_ms": predicted, "num_classes": space.num_classes, "input_size": space.input_size}))
        return 0
    print(arch.to_string())
    rows = [
        (l.index, l.stage + 1, f"{l.input_size}x{l.input_size}", l.in_channels, l.out_channels, l.stride, op)
        for l, op in zip(space.layers(), arch.ops)
    ]
    print(format_table(("layer", "stage", "input", "in", "out", "stride", "op"), rows))
    latency = f"  predicted {predicted:.3f} ms" if predicted is not None else "  (latency: give --lut)"
    print(f"params {costs['params']:,}  multiply-adds {costs['macs'] / 1e6:.1f}M  peak activation memory "
          f"{costs['memory'] / 1024:,.1f} KiB (float32; {memory_int8 / 1024:,.1f} KiB int8){latency}  "
          f"({space.num_classes} classes, {space.input_size}x{space.input_size} input, batch 1)")
    return 0
