import json
import math
from pathlib import Path

import pytest
import torch

from conftest import fake_lut
from spnas.errors import SpnasError
from spnas.latency.predict import predict_ms
from spnas.jobs.runs import read_metrics
from spnas.search.config import SearchConfig
from spnas.jobs.engine import Interrupted
from spnas.search.loop import run_search
from spnas.search.objective import TargetController
from spnas.model.space import get_space

DATA = "synthetic:320:1:16:4"


@pytest.fixture
def tiny_lut(tmp_path):
    space = get_space("small", width=0.25, input_size=16, num_classes=4)
    path = tmp_path / "lut.json"
    fake_lut(space).save(path)
    return str(path)


def cfg(tmp_path, lut, name, **kw):
    base = dict(data=DATA, lut=lut, width=0.25, out=str(tmp_path / name), epochs=2, batch_size=16,
                val_fraction=0.2, log_every=1, eval_every_epoch=False, warmup_fraction=0.25)
    return SearchConfig(**{**base, **kw})


def final_thresholds(result):
    return json.loads((Path(result.run_dir) / "summary.json").read_text())["thresholds"]


def test_thresholds_move_and_larger_lambda_means_faster_net(tmp_path, tiny_lut):
    results = {}
    for lam in (0.0, 1.0):
        results[lam] = run_search(cfg(tmp_path, tiny_lut, f"lam{lam}", lambda_=lam, lr_per_256=0.5,
                                      indicator_scale="init-norm"))
    assert results[1.0].predicted_ms < results[0.0].predicted_ms
    pushed, free = final_thresholds(results[1.0]), final_thresholds(results[0.0])
    assert sum(t["k5"] for t in pushed) > sum(t["k5"] for t in free) + 5.0
    run_dir = Path(results[1.0].run_dir)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "arch.json", "progress.png"):
        assert (run_dir / name).exists()
    assert json.loads((run_dir / "arch.json").read_text())["predicted_ms"] == pytest.approx(results[1.0].predicted_ms)
    # lambda is 0 during warm-up and the configured value afterwards
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "lambda" in r]
    assert all(r["lambda"] == 0 for r in rows if r["warmup"]) and rows[-1]["lambda"] == 1.0


def test_faithful_absolute_scale_thresholds_still_respond(tmp_path, tiny_lut):
    """With the paper's absolute scale the latency term moves thresholds too, only much more slowly."""
    pushed = run_search(cfg(tmp_path, tiny_lut, "abs1", lambda_=1.0, lr_per_256=0.5))
    free = run_search(cfg(tmp_path, tiny_lut, "abs0", lambda_=0.0, lr_per_256=0.5))
    assert sum(t["k5"] for t in final_thresholds(pushed)) > sum(t["k5"] for t in final_thresholds(free)) + 0.1


def test_kill_and_resume_gives_identical_result(tmp_path, tiny_lut):
    kw = dict(lambda_=1.0, lr_per_256=0.5, indicator_scale="init-norm", target_ms=0.8)
    full = run_search(cfg(tmp_path, tiny_lut, "full", **kw))
    assert set(full.arch.ops) != {"k5e6"}  # decisions moved, so equality below means something
    with pytest.raises(Interrupted):
        run_search(cfg(tmp_path, tiny_lut, "part", max_steps=21, **kw))
    # resume continues from the checkpoint written at the stop (the stored config has max_steps)
    part_dir = tmp_path / "part"
    conf = json.loads((part_dir / "config.json").read_text())
    conf["max_steps"] = None
    (part_dir / "config.json").write_text(json.dumps(conf))
    resumed = run_search(SearchConfig(), resume_dir=str(part_dir))
    assert resumed.arch == full.arch
    a = torch.load(part_dir / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [r["step"] for r in read_metrics(part_dir / "metrics.jsonl") if "ops" in r]
    assert steps == sorted(set(steps))  # no duplicated steps after resuming


def test_refuses_non_empty_run_dir_and_mismatched_lut(tmp_path, tiny_lut):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(SpnasError, match="not empty"):
        run_search(cfg(tmp_path, tiny_lut, "busy"))
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    other = tmp_path / "other.json"
    fake_lut(get_space("small", width=0.5, input_size=16, num_classes=4)).save(other)
    with pytest.raises(SpnasError, match="field 'space_fingerprint'"):
        run_search(cfg(tmp_path, str(other), "mismatch"))
    assert not (tmp_path / "mismatch").exists()  # refused before anything was written


def test_target_controller_moves_lambda_towards_target():
    c = TargetController(target_ms=10.0, lam=0.02, margin=0.02, rate=0.01, gain=0.0)
    for _ in range(10):
        c.update(20.0)
    assert c.lam == pytest.approx(0.02 + 10 * 0.01 * math.log(20 / 9.8))
    for _ in range(40):
        c.update(5.0)
    assert c.lam < 0  # far under the target: the runtime term gives capacity back
    assert TargetController(10.0, lam=0.5).update(9.8) == pytest.approx(0.5)  # at the aim: unchanged


def test_proportional_gain_turns_lambda_as_soon_as_latency_crosses_the_aim():
    pure = TargetController(target_ms=10.0, lam=0.0, margin=0.0, rate=0.002)
    pi = TargetController(target_ms=10.0, lam=0.0, margin=0.0, rate=0.002, gain=0.5)
    for _ in range(50):  # a long stretch over the target winds both integrals up
        pure.update(13.0), pi.update(13.0)
    assert pi.lam == pytest.approx(50 * 0.002 * math.log(1.3) + 0.5 * math.log(1.3))
    assert pure.update(9.0) > 0  # pure integral: still pushing latency down under the aim
    assert pi.update(9.0) < 0  # PI: already giving capacity back
    restored = TargetController(target_ms=10.0, margin=0.0, rate=0.002, gain=0.5)
    restored.load_state_dict(pi.state_dict())
    assert restored.update(11.0) == pi.update(11.0)


def test_target_mode_lands_in_the_band(tmp_path, tiny_lut):
    result = run_search(cfg(tmp_path, tiny_lut, "target", target_ms=0.8, lr_per_256=0.5,
                            indicator_scale="init-norm"))
    assert 0.8 * 0.96 <= result.predicted_ms <= 0.8
    saved = json.loads((Path(result.run_dir) / "arch.json").read_text())
    assert {"last_step_arch", "last_step_predicted_ms", "repair_flips"} <= set(saved)


def test_repair_flips_least_confident_decisions(small_space):
    from conftest import fake_lut
    from spnas.nn.network import SinglePathNet
    from spnas.search.repair import repair_to_budget

    torch.manual_seed(0)
    net = SinglePathNet(small_space)
    lut = fake_lut(small_space)
    full = predict_ms(lut, net.architecture())
    # make layer 7's e6 group the least confident "on" decision
    block = net.searchable_blocks()[7]
    with torch.no_grad():
        block.superkernel.t_e6.fill_(block.superkernel.group_norms(block.conv_dw.weight)["e6"] - 1e-3)
    repaired = repair_to_budget(net, lut, target_ms=full - 1e-6, margin=0.5)
    assert repaired.flips[0] == {"layer": 7, "group": "e6", "to": 0, "predicted_ms": pytest.approx(repaired.flips[0]["predicted_ms"])}
    assert predict_ms(lut, repaired.arch) <= full - 1e-6
    assert repaired.arch.ops[7] == "k5e3"


def test_repair_prices_the_network_as_reported_in_canonical_form(small_space):
    """Two layers of one stage with equal shapes are timed separately, so a skip in the middle of a
    stage and the same network with the skip last are priced slightly apart; the repair must meet
    the band at the canonical price, which is what the search reports."""
    from conftest import fake_lut
    from spnas.model.arch import Architecture
    from spnas.nn.network import SinglePathNet
    from spnas.search.repair import repair_to_budget

    layers = small_space.layers()
    first, middle = next((l, m) for l, m in zip(layers, layers[1:]) if m.stage == l.stage and m.skippable)
    ops = ["k5e6"] * len(layers)
    ops[middle.index] = "skip"  # a skip in the middle: canonical form moves it to the stage's end
    arch = Architecture(small_space.name, tuple(ops))
    assert arch.canonical() != arch
    torch.manual_seed(0)
    net = SinglePathNet(small_space)
    net.force_architecture(arch)
    lut = fake_lut(small_space)
    lut.layers[middle.index] = {op: ms * 1.5 for op, ms in lut.layers[middle.index].items()}  # priced apart
    raw = predict_ms(lut, arch)
    assert predict_ms(lut, arch.canonical()) > raw  # the canonical net pays the dearer middle position
    repaired = repair_to_budget(net, lut, target_ms=raw, margin=0.02)
    assert repaired.flips  # at the canonical price the unrepaired net is over the target
    assert predict_ms(lut, repaired.arch.canonical()) <= raw
