import math

import pytest
import torch

from spnas.jobs.optim import TFRMSprop, staircase_schedule


def test_tf_rmsprop_matches_its_formula_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = TFRMSprop([p], lr=0.1, decay=0.9, momentum=0.9, eps=1e-3)
    grads = [torch.tensor([0.5, -1.0]), torch.tensor([0.2, 0.3])]
    ms, mom, w = [1.0, 1.0], [0.0, 0.0], [1.0, -2.0]
    for g in grads:
        p.grad = g.clone()
        opt.step()
        for i in range(2):
            ms[i] = 0.9 * ms[i] + 0.1 * g[i].item() ** 2
            mom[i] = 0.9 * mom[i] + 0.1 * g[i].item() / math.sqrt(ms[i] + 1e-3)
            w[i] -= mom[i]
    assert p.tolist() == pytest.approx(w, rel=1e-6)
    # first step by hand: ms = 0.9 + 0.1*0.25 = 0.925; update = 0.1*0.5/sqrt(0.926)
    q = torch.nn.Parameter(torch.tensor([1.0]))
    o = TFRMSprop([q], lr=0.1)
    q.grad = torch.tensor([0.5])
    o.step()
    assert q.item() == pytest.approx(1.0 - 0.05 / math.sqrt(0.926), rel=1e-6)


def test_tf_rmsprop_differs_from_torch_rmsprop():
    a = torch.nn.Parameter(torch.ones(1))
    b = torch.nn.Parameter(torch.ones(1))
    oa, ob = TFRMSprop([a], lr=0.1, momentum=0.0), torch.optim.RMSprop([b], lr=0.1, alpha=0.9, eps=1e-3)
    for o, p in ((oa, a), (ob, b)):
        p.grad = torch.tensor([1e-4])
        o.step()
    # accumulator starting at 1 makes TF's first step ~1000x smaller for a tiny gradient
    assert abs(1 - a.item()) < abs(1 - b.item()) / 100


def test_staircase_schedule():
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = staircase_schedule(opt, steps_per_epoch=10, decay=0.97, decay_epochs=2.4)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == lrs[23] == 1.0 and lrs[24] == pytest.approx(0.97) and lrs[48] == pytest.approx(0.97**2)
    warm = staircase_schedule(torch.optim.SGD([p], lr=1.0), 10, warmup_epochs=1)
    assert warm.get_last_lr()[0] == pytest.approx(0.1)
