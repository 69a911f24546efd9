"""The training run's weight EMA (train.ema.WeightEMA) computes what torch's AveragedModel computed with
TF's warm-up decay, bit for bit, and resumes from either's state dict."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

from spnas.model.arch import uniform
from spnas.model.space import get_space
from spnas.nn.network import SinglePathNet
from spnas.train.ema import WeightEMA


def _tf_warmup_avg(decay: float):
    """The per-tensor average training used with AveragedModel: decay_t = min(decay, (1 + t) / (10 + t))."""
    def avg(averaged, current, num_averaged):
        d = torch.clamp((1 + num_averaged) / (10 + num_averaged), max=decay)
        return averaged + (current - averaged) * (1 - d)
    return avg


def _train_a_little(net, steps: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    net.train()
    net(torch.randn(8, 1, 16, 16, generator=g))  # moves BatchNorm's running statistics


def test_weight_ema_equals_averaged_model_with_tf_warmup_bit_for_bit():
    space = get_space("small", width=0.25, input_size=16, num_classes=4)
    torch.manual_seed(0)
    net = SinglePathNet(space, uniform(space, "k3e6"))
    ours, theirs = WeightEMA(net, 0.998), AveragedModel(net, avg_fn=_tf_warmup_avg(0.998), use_buffers=True)
    for step in range(12):
        _train_a_little(net, 1, step)
        ours.update_parameters(net)
        theirs.update_parameters(net)
    for (name, a), (_, b) in zip(ours.module.state_dict().items(), theirs.module.state_dict().items()):
        if a.is_floating_point():
            assert torch.equal(a, b), name
    assert int(ours.n_averaged) == int(theirs.n_averaged) == 12
    assert ours.state_dict().keys() == theirs.state_dict().keys()  # checkpoints load either way

    resumed = WeightEMA(net, 0.998)
    resumed.load_state_dict(theirs.state_dict())
    assert resumed.updates == 12
    _train_a_little(net, 1, 99)
    resumed.update_parameters(net)
    theirs.update_parameters(net)
    assert all(torch.equal(a, b) for a, b in zip(resumed.module.parameters(), theirs.module.parameters()))
