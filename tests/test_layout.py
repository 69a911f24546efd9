"""On a GPU the supernet runs channels_last under bf16 autocast; the depthwise convolutions, whose weights
the superkernels mask, must keep that layout and dtype, or every layer converts its activations (a copy
per layer each way). Checked with forward hooks on the CPU, which follows the same memory-format rules."""

from __future__ import annotations

import torch

from spnas.model.space import get_space
from spnas.nn.network import SinglePathNet


def test_supernet_depthwise_keeps_channels_last_and_bf16_under_autocast():
    torch.manual_seed(0)
    net = SinglePathNet(get_space("small", width=0.35)).to(memory_format=torch.channels_last).train()
    seen: list[tuple[str, torch.Tensor]] = []
    for i, block in enumerate(net.searchable_blocks()):
        # the depthwise input is ReLU(bn1(...)) (bn1's output, same layout and dtype); its output is bn2's input
        block.bn1.register_forward_hook(lambda m, args, out, i=i: seen.append((f"L{i} depthwise input", out)))
        block.bn2.register_forward_pre_hook(lambda m, args, i=i: seen.append((f"L{i} depthwise output", args[0])))
    x = torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
    logits.float().sum().backward()
    assert len(seen) == 2 * len(net.searchable_blocks())
    for name, t in seen:
        assert t.dtype == torch.bfloat16, f"{name} is {t.dtype}"
        assert t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous(), f"{name} lost channels_last"
    assert net.indicators().dtype == torch.float32  # the decisions and the latency term stay float32
    assert all(b.conv_dw.weight.grad is not None for b in net.searchable_blocks())
