"""The multi-path supernet baseline (issue 17): same space, same blocks, same function when its
architecture weights are one-hot, so comparing its cost and results with single-path is fair."""

import json
import random

import pytest
import torch

from conftest import fake_lut, random_arch
from spnas.model.arch import Architecture
from spnas.latency.lut import Calibration
from spnas.latency.predict import lut_tensor, predict_ms
from spnas.nn.derive import derive
from spnas.nn.multipath import MultiPathNet
from spnas.search.methods import METHODS


def _multipath_like(supernet, arch: Architecture) -> MultiPathNet:
    """A multi-path net holding the weights of ``arch``'s derived net in the chosen branches."""
    derived = derive(supernet, arch)
    multi = MultiPathNet(supernet.space)
    for name in ("stem", "blocks_before", "blocks_after", "head", "classifier"):
        getattr(multi, name).load_state_dict(getattr(derived, name).state_dict())
    for spec, op in zip(supernet.space.layers(), arch.ops):
        if op != "skip":
            layer = getattr(multi.layers, f"L{spec.index}")
            layer.branches[op].load_state_dict(getattr(derived.layers, f"L{spec.index}").state_dict())
    multi.fix_architecture(arch)
    return multi


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_hot_multipath_computes_the_single_path_supernet_of_the_same_decisions(supernet, seed):
    arch = random_arch(supernet.space, random.Random(seed))
    if seed == 0:  # every skippable layer skipped
        arch = Architecture(arch.space, tuple("skip" if l.skippable else "k5e6" for l in supernet.space.layers()))
    supernet.force_architecture(arch)
    multi = _multipath_like(supernet, arch)
    supernet.eval(), multi.eval()
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref, out = supernet(x), multi(x)
    assert ref.abs().max() > 0.1
    assert (ref - out).abs().max() < 1e-4


def test_every_branch_runs_and_the_expected_latency_follows_the_weights(supernet):
    space = supernet.space
    multi = MultiPathNet(space)
    assert all(len(l.branches) == 4 and len(l.ops) == 4 + l.ops.count("skip") for l in multi.mixed_layers())
    assert sum(p.numel() for p in multi.parameters()) > 2 * sum(p.numel() for p in supernet.parameters())
    lut = fake_lut(space)
    arch = random_arch(space, random.Random(5))
    multi.fix_architecture(arch)
    multi.train()
    logits = multi(torch.randn(4, 1, 28, 28))
    expected = multi.expected_ms(lut_tensor(lut), lut.constant_ms)
    assert abs(expected.item() - predict_ms(lut, arch, calibrated=False)) < 1e-5  # one-hot: the table's sum
    lut.calibration = Calibration(1.1, 0.01, per_present_layer=[0.002] * space.num_layers, per_k5_layer=0.003,
                                  per_e6_layer=-0.001)  # its terms weigh each op by its probability
    calibrated = METHODS["multipath"].latency_ms(multi, lut, lut_tensor(lut), None)
    assert abs(calibrated.item() - predict_ms(lut, arch)) < 1e-5
    lut.calibration = None
    multi.fix_architecture(None)
    multi(torch.randn(4, 1, 28, 28))
    soft = multi.expected_ms(lut_tensor(lut), lut.constant_ms)
    soft.backward()
    assert all(l.alpha.grad is not None and l.alpha.grad.abs().sum() > 0 for l in multi.mixed_layers())
    assert logits.shape == (4, space.num_classes)


def test_multipath_search_learns_the_logits_and_resumes_exactly(tmp_path):
    """``spnas search --method multipath``: the same loop, loss and controller; the logits move once
    the uniform warm-up ends; a run stopped mid-way resumes to the same result."""
    from spnas.jobs.engine import Interrupted
    from spnas.search.config import SearchConfig
    from spnas.search.loop import run_search
    from spnas.model.space import get_space

    lut = tmp_path / "lut.json"
    fake_lut(get_space("small", width=0.25, input_size=16, num_classes=4)).save(lut)

    def cfg(name: str, **extra) -> SearchConfig:
        return SearchConfig(data="synthetic:96:1:16:4", lut=str(lut), width=0.25, epochs=3, batch_size=16,
                            method="multipath", target_ms=0.5, warmup_fraction=1 / 3, threads=1, log_every=1,
                            out=str(tmp_path / name), eval_every_epoch=False, **extra)

    whole = run_search(cfg("whole"))
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["method"] == "multipath" and len(summary["alphas"]) == 20
    assert any(abs(a) > 1e-3 for row in summary["alphas"] for a in row)  # learned after the warm-up
    records = [json.loads(l) for l in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    warm = [r for r in records if r.get("warmup")]
    assert warm and all(a == 0.0 for r in warm for row in r["alphas"] for a in row)  # frozen in warm-up
    with pytest.raises(Interrupted):
        run_search(cfg("cut", max_steps=8))
    resumed = run_search(SearchConfig(), resume_dir=str(tmp_path / "cut"))
    assert resumed.arch == whole.arch
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["alphas"] == summary["alphas"]




def test_random_search_spends_the_search_budget_on_candidates_in_the_band_and_resumes_exactly(tmp_path):
    from spnas.jobs.engine import Interrupted
    from spnas.search.config import SearchConfig
    from spnas.search.loop import run_search
    from spnas.model.space import get_space

    lut = tmp_path / "lut.json"
    fake_lut(get_space("small", width=0.25, input_size=16, num_classes=4)).save(lut)

    def cfg(name: str, **extra) -> SearchConfig:
        return SearchConfig(data="synthetic:96:1:16:4", lut=str(lut), width=0.25, epochs=3, batch_size=16,
                            method="random", candidates=3, target_ms=0.8, target_margin=0.1, threads=1,
                            log_every=1, out=str(tmp_path / name), **extra)

    whole = run_search(cfg("whole"))
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["budget_steps"] == 3 * 5 and summary["steps"] == 15 and summary["proxy_steps"] == 5
    assert len(summary["candidates"]) == 3
    assert all(0.8 * 0.8 <= c["predicted_ms"] <= 0.8 for c in summary["candidates"])
    best = max(summary["candidates"], key=lambda c: (c["val_acc"], -c["predicted_ms"]))
    assert summary["arch"] == best["arch"] == whole.arch.to_string()
    with pytest.raises(Interrupted):
        run_search(cfg("cut", max_steps=7))  # in the middle of the second candidate
    run_search(SearchConfig(), resume_dir=str(tmp_path / "cut"))
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["candidates"] == summary["candidates"]
