"""``spnas space show SPACE``: the searchable layers of a space as a table."""

from __future__ import annotations

import argparse
import json

from spnas.model.space import SPACES, get_space
from spnas.outputs.text_table import format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("space", help="inspect search spaces")
    ssub = p.add_subparsers(dest="space_cmd", required=True, metavar="{show,list}")
    show = ssub.add_parser("show", help="print a space's layers as a table")
    show.add_argument("space", help=f"a preset: {', '.join(SPACES)}")
    add_space_overrides(show)
    show.add_argument("--json", action="store_true", help="print the space definition as JSON")
    show.set_defaults(func=run_show)
    lst = ssub.add_parser("list", help="list the preset spaces")
    lst.set_defaults(func=run_list)


def add_space_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("space overrides")
    g.add_argument("--num-classes", type=int, help="classifier outputs (default: the preset's)")
    g.add_argument("--input-size", type=int, help="input height/width in pixels")
    g.add_argument("--in-channels", type=int, help="input channels (1 for grey, 3 for RGB)")
    g.add_argument("--width", type=float, help="width multiplier of the body")


def space_from_args(args: argparse.Namespace, name: str | None = None):
    return get_space(
        name or args.space,
        num_classes=getattr(args, "num_classes", None),
        input_size=getattr(args, "input_size", None),
        in_channels=getattr(args, "in_channels", None),
        width=getattr(args, "width", None),
    )


def run_show(args: argparse.Namespace) -> int:
    space = space_from_args(args)
    if args.json:
        print(json.dumps({**space.to_dict(), "fingerprint": space.fingerprint()}, indent=2))
        return 0
    print(f"space {space.name} ({space.fingerprint()}): {space.description}")
    print(
        f"input {space.input_size}x{space.input_size}x{space.in_channels}, {space.num_classes} classes, "
        f"stem {space.stem_out} ch stride {space.stem_stride}, head {space.head_out} ch, width {space.width}"
    )
    rows = [
        (l.index, l.stage + 1, f"{l.input_size}x{l.input_size}", l.in_channels, l.out_channels,
         l.stride, " ".join(l.candidates))
        for l in space.layers()
    ]
    print(format_table(("layer", "stage", "input", "in", "out", "stride", "candidates"), rows))
    print(f"final feature map {space.final_size()}x{space.final_size()}; "
          "{:.3g} encodings, {:.3g} distinct networks (a skip inside a stage is an identity, so where "
          "it sits does not matter)".format(*space.network_count()))
    return 0


def run_list(args: argparse.Namespace) -> int:
    for name in SPACES:
        space = get_space(name)
        print(f"{name:10s} {space.fingerprint()}  {space.description}")
    return 0
