"""Cost of one supernet training step for `small`-space variants on this machine (chooses the defaults).

python bench/space_cost.py  -> prints a table: variant, MACs of the all-k5e6 net, ms/step, images/s
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from spnas.model.model_size import count_macs
from spnas.nn.network import SinglePathNet
from spnas.model.space import Stage, get_space
from spnas.outputs.text_table import format_table


def step_ms(space, batch: int = 128, reps: int = 6) -> float:
    net = SinglePathNet(space).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(batch, space.in_channels, space.input_size, space.input_size)
    y = torch.randint(0, space.num_classes, (batch,))
    times = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for strides in ((1, 2, 2, 1, 2), (2, 2, 2, 1, 1), (2, 2, 2, 1, 2)):
        for width in (0.5, 1.0):
            base = get_space("small", width=width)
            stages = tuple(Stage(s.out_channels, s.num_layers, st, s.skippable) for s, st in zip(base.stages, strides))
            space = base.with_overrides(stages=stages)
            ms = step_ms(space)
            macs = count_macs(SinglePathNet(space), space)
            rows.append((",".join(map(str, strides)), width, f"{macs / 1e6:.1f}M", f"{ms:.0f}", f"{128e3 / ms:.0f}"))
            print(rows[-1], flush=True)
    print(format_table(("stage strides", "width", "MACs (k5e6)", "ms/step b128", "img/s"), rows, markdown=True))


if __name__ == "__main__":
    main()
