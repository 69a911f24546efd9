"""Accuracy of a network on an evaluation source (eval mode, no gradients)."""

from __future__ import annotations

import torch
from torch import nn

from spnas.data.loader import BatchSource


@torch.no_grad()
def evaluate(model: nn.Module, source: BatchSource, topk: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies in [0, 1] (k larger than the class count is left out)."""
    was_training = model.training
    model.eval()
    correct = {k: 0 for k in topk}
    seen = 0
    for x, y in source.epoch_batches(0):
        logits = model(x)
        ranked = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
        for k in topk:
            if k <= logits.shape[1]:
                correct[k] += (ranked[:, :k] == y.view(-1, 1)).any(dim=1).sum().item()
        seen += len(y)
    model.train(was_training)
    n_classes = logits.shape[1] if seen else 0
    return {f"top{k}": correct[k] / max(seen, 1) for k in topk if k <= n_classes}


def accuracy(model: nn.Module, source: BatchSource) -> float:
    return evaluate(model, source, (1,))["top1"]
