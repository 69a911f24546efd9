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


def _per_parameter_tf_rmsprop(params, state, lr, decay=0.9, momentum=0.9, eps=1e-3):
    """The TF-RMSProp update one parameter at a time: the form the foreach update must reproduce."""
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                continue
            if id(p) not in state:
                state[id(p)] = (torch.full_like(p, 1.0), torch.zeros_like(p))
            ms, mom = state[id(p)]
            ms.mul_(decay).addcmul_(p.grad, p.grad, value=1 - decay)
            mom.mul_(momentum).addcdiv_(p.grad, (ms + eps).sqrt_(), value=lr)
            p.sub_(mom)


def test_tf_rmsprop_foreach_update_equals_the_per_parameter_form_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (5,), (), (6, 1, 5, 5), (2, 3, 1, 1)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt, state = TFRMSprop(ours, lr=0.05), {}
    for step in range(6):
        for i, (a, b) in enumerate(zip(ours, reference)):
            if step == 2 and i == 1:  # a parameter without a gradient this step is left alone
                a.grad = b.grad = None
                continue
            grad = torch.randn(a.shape, generator=g) * 10 ** (-step)  # tiny gradients too, as thresholds get
            a.grad, b.grad = grad.clone(), grad.clone()
        opt.param_groups[0]["lr"] = 0.05 * 0.97 ** step  # the schedule changes lr between steps
        opt.step()
        _per_parameter_tf_rmsprop(reference, state, 0.05 * 0.97 ** step)
        for a, b in zip(ours, reference):
            assert torch.equal(a, b)
    for p, q in zip(ours, reference):
        assert torch.equal(opt.state[p]["ms"], state[id(q)][0]) and torch.equal(opt.state[p]["mom"], state[id(q)][1])


def test_l2_term_gradient_and_value_equal_autograd_of_the_penalty():
    from spnas.jobs.optim import L2Term, l2_penalty

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 4 * 4, 3))
    x = torch.randn(5, 2, 6, 6)
    term = L2Term.of(net, 1e-2)
    assert len(term.params) == 4  # conv weight, linear weight and bias; not BatchNorm's
    (net(x).sum() + 1e-2 * l2_penalty(net)).backward()
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    net(x).sum().backward()
    term.add_gradient()
    for p, want in zip(net.parameters(), expected):
        assert torch.allclose(p.grad, want, rtol=1e-6, atol=1e-7)
    assert term.penalty().item() == pytest.approx(l2_penalty(net).item(), rel=1e-6)
    net.zero_grad(set_to_none=True)
    term.add_gradient()  # parameters no loss reached still get the L2 term's gradient
    assert torch.allclose(term.params[0].grad, 1e-2 * term.params[0])
