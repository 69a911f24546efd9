import random

import pytest
import torch

from conftest import random_arch
from spnas.model.arch import Architecture
from spnas.nn.derive import derive
from spnas.nn.indicator import indicator, indicator_dropout
from spnas.nn.network import SinglePathNet
from spnas.nn.superkernel import Decision, SuperKernel


def test_indicator_is_hard_with_sigmoid_gradient():
    x = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0, 25.0, 40.0], requires_grad=True)
    y = indicator(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    x64 = x.detach().double()
    exact = torch.exp(-x64) / (1 + torch.exp(-x64)) ** 2  # sigmoid'(x), in float64
    assert torch.allclose(x.grad.double(), exact, rtol=1e-5, atol=0)
    assert x.grad[-1] > 0  # no float32 underflow far from the threshold


def test_indicator_dropout_keeps_scaled_values():
    torch.manual_seed(0)
    d = torch.ones(20000)
    out = indicator_dropout(d, 0.6)
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.6))
    assert abs(kept.numel() / d.numel() - 0.6) < 0.02


def test_thresholds_and_kernel_receive_gradient():
    sk = SuperKernel(skippable=True)
    weight = (torch.randn(48, 1, 5, 5) * 0.3).requires_grad_()
    eff, d = sk(weight)
    (eff.sum() + d.sum()).backward()
    for t in (sk.t_k5, sk.t_e3, sk.t_e6):
        assert t.grad is not None and t.grad.abs() > 0
    assert weight.grad.abs().sum() > 0


def test_masking_follows_decisions():
    sk = SuperKernel(skippable=True)
    weight = torch.randn(12, 1, 5, 5)
    with torch.no_grad():
        sk.t_k5.fill_(1e9)
    eff, d = sk(weight)
    assert d.tolist() == [0.0, 1.0, 1.0]
    assert torch.all(eff[:, :, 0, :] == 0) and torch.equal(eff[:, :, 1:4, 1:4], weight[:, :, 1:4, 1:4])
    with torch.no_grad():
        sk.t_e6.fill_(1e9)
    eff, d = sk(weight)
    assert d.tolist() == [0.0, 1.0, 0.0] and torch.all(eff[6:] == 0) and eff[:6].abs().sum() > 0


def test_unskippable_layer_ignores_e3_threshold():
    sk = SuperKernel(skippable=False)
    with torch.no_grad():
        sk.t_e3.fill_(1e9)
    _, d = sk(torch.randn(12, 1, 5, 5))
    assert d[1] == 1.0


def test_decisions_start_at_k5e6_and_flip_one_at_a_time(supernet):
    assert all(d == Decision(1, 1, 1) for d in supernet.decisions())
    norms = supernet.group_norms()
    blocks = supernet.searchable_blocks()
    with torch.no_grad():
        blocks[3].superkernel.t_k5.fill_(norms[3]["k5"] + 1e-3)
    assert supernet.decisions()[3] == Decision(0, 1, 1)
    assert all(d == Decision(1, 1, 1) for i, d in enumerate(supernet.decisions()) if i != 3)
    with torch.no_grad():
        blocks[5].superkernel.t_e6.fill_(norms[5]["e6"] + 1e-3)
    assert supernet.decisions()[5] == Decision(1, 1, 0)
    with torch.no_grad():
        blocks[6].superkernel.t_e3.fill_(norms[6]["e3"] + 1e-3)
    assert supernet.decisions()[6].op == "skip"
    with torch.no_grad():  # just below the norm: still on (>=)
        blocks[7].superkernel.t_e6.fill_(norms[7]["e6"] - 1e-3)
    assert supernet.decisions()[7] == Decision(1, 1, 1)


def test_depthwise_init_scale_matches_spec():
    torch.manual_seed(0)
    from spnas.model.space import get_space

    net = SinglePathNet(get_space("imagenet"))
    ring0 = net.group_norms()[0]["k5"]
    ring_last = net.group_norms()[-1]["k5"]
    assert 9 < ring0 < 13 and 33 < ring_last < 43  # SPEC §2: ~11 (C=96) to ~38 (C=1152)


@pytest.mark.parametrize("seed", range(6))
def test_supernet_equals_derived_net(supernet, seed):
    rng = random.Random(seed)
    arch = random_arch(supernet.space, rng)
    if seed == 0:  # every skippable layer skipped
        arch = Architecture(arch.space, tuple("skip" if l.skippable else "k3e3" for l in supernet.space.layers()))
    supernet.force_architecture(arch)
    supernet.eval()
    net = derive(supernet).eval()
    assert net.arch == arch
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref, out = supernet(x), net(x)
    assert ref.abs().max() > 0.1
    assert (ref - out).abs().max() < 1e-4
    skipped = {f"L{i}" for i, op in enumerate(arch.ops) if op == "skip"}
    assert skipped.isdisjoint(dict(net.layers.named_children()))
    assert not any("superkernel" in n or n.startswith("t_") for n, _ in net.named_parameters())


def test_derived_net_has_no_masks_and_right_kernels(supernet):
    arch = Architecture(supernet.space.name, tuple("k3e3" if i % 2 else "k5e6" for i in range(20)))
    net = SinglePathNet(supernet.space, arch)
    assert net.layers.L0.conv_dw.kernel_size == (5, 5) and net.layers.L1.conv_dw.kernel_size == (3, 3)
    assert net.layers.L1.conv_dw.out_channels == net.layers.L1.in_ch * 3
    assert all(b.superkernel is None for b in net.layers)


class _OneBatch:
    """The smallest training source: one fixed batch."""

    steps_per_epoch = 1

    def __init__(self, x: torch.Tensor):
        self.x = x

    def batch(self, epoch: int, step: int):
        return self.x, torch.zeros(len(self.x), dtype=torch.long)


def test_batchnorm_recalibration_measures_the_current_decisions_and_puts_everything_back(supernet):
    from spnas.jobs.evaluate import recalibrated_batchnorm

    supernet.set_indicator_keep(0.6)
    supernet.train()
    bns = [m for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    x = torch.randn(16, supernet.space.in_channels, supernet.space.input_size, supernet.space.input_size)
    seen = {}
    hook = bns[0].register_forward_hook(lambda m, inp, out: seen.update(mean=inp[0].mean(dim=(0, 2, 3))))
    with recalibrated_batchnorm(supernet, _OneBatch(x)) as calibrated:
        assert not calibrated.training
        assert supernet.searchable_blocks()[0].superkernel.indicator_keep is None
        torch.testing.assert_close(bns[0].running_mean, seen["mean"])
    hook.remove()
    assert supernet.training and supernet.searchable_blocks()[0].superkernel.indicator_keep == 0.6
    assert all(m.momentum == 0.01 for m in bns)
    after = supernet.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_batchnorm_reestimate_is_the_plain_average_of_batch_statistics():
    from spnas.jobs.evaluate import reestimate_batchnorm

    bn = torch.nn.BatchNorm2d(3, momentum=0.01)
    net = torch.nn.Sequential(bn).eval()
    batches = [torch.randn(8, 3, 4, 4) + i for i in range(3)]

    class Source:
        steps_per_epoch = len(batches)

        def batch(self, epoch, step):
            return batches[step], None

    reestimate_batchnorm(net, Source(), num_batches=10)  # more than the source has: all of them
    torch.testing.assert_close(bn.running_mean, torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0))
    torch.testing.assert_close(bn.running_var,
                               torch.stack([b.transpose(0, 1).flatten(1).var(1) for b in batches]).mean(0))
    assert bn.momentum == 0.01 and not net.training


def test_checkpoints_with_the_old_positional_names_still_load():
    from spnas.nn.blocks import _OLD_NAMES
    from spnas.model.space import get_space

    space = get_space("small", width=0.25, input_size=16, num_classes=4)
    torch.manual_seed(0)
    net = SinglePathNet(space).eval()
    new_to_old = {new: old for old, new in _OLD_NAMES.items()}

    def old_name(key: str) -> str:
        for new, old in new_to_old.items():
            marker = f".{new}"
            if marker in key:
                return key.replace(marker, f".{old}", 1)
        return key

    old_state = {old_name(k): v.clone() for k, v in net.state_dict().items()}
    assert any(".expand_conv.0.weight" in k for k in old_state) and any(".project.1.bias" in k for k in old_state)
    torch.manual_seed(1)
    fresh = SinglePathNet(space).eval()
    fresh.load_state_dict(old_state)  # strict: every old key found its new home
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(fresh(x), net(x))
