"""``spnas arch show ARCH``: layers, parameters and multiply-adds of an architecture."""

from __future__ import annotations

import argparse
import json

from spnas.model.arch import ARCH_PRESETS, resolve_arch
from spnas.cli.space_cmd import add_space_overrides, space_from_args
from spnas.model.model_size import count_macs, count_params
from spnas.nn.network import SinglePathNet
from spnas.outputs.text_table import format_table

ARCH_HELP = (
    f"a preset ({', '.join(ARCH_PRESETS)}), 'uniform-OP' (e.g. uniform-k3e6), an arch.json file, "
    "or a string such as 'small:k3e3,k3e3,k3e3,skip|k5e6,...'"
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("arch", help="inspect architectures")
    asub = p.add_subparsers(dest="arch_cmd", required=True, metavar="{show}")
    show = asub.add_parser("show", help="print an architecture's layers, params and multiply-adds")
    show.add_argument("arch", help=ARCH_HELP)
    show.add_argument("--space", help="space the architecture belongs to (default: the one it names)")
    add_space_overrides(show)
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    arch = resolve_arch(args.arch, args.space)
    space = space_from_args(args, arch.space)
    net = SinglePathNet(space, arch)
    params, macs = count_params(net), count_macs(net, space)
    if args.json:
        print(json.dumps({**arch.to_dict(), "params": params, "macs": macs,
                          "num_classes": space.num_classes, "input_size": space.input_size}))
        return 0
    print(arch.to_string())
    rows = [
        (l.index, l.stage + 1, f"{l.input_size}x{l.input_size}", l.in_channels, l.out_channels, l.stride, op)
        for l, op in zip(space.layers(), arch.ops)
    ]
    print(format_table(("layer", "stage", "input", "in", "out", "stride", "op"), rows))
    print(f"params {params:,}  multiply-adds {macs / 1e6:.1f}M  ({space.num_classes} classes, "
          f"{space.input_size}x{space.input_size} input)")
    return 0
