"""Target mode's landing (issue 18, item 3): frozen decisions, the landing rule, a search that lands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import fake_lut
from spnas.model.arch import Architecture
from spnas.jobs.engine import Interrupted
from spnas.nn.network import SinglePathNet
from spnas.jobs.runs import load_run_config, read_metrics
from spnas.search.config import SearchConfig
from spnas.search.landing import Landing, path_within_step
from spnas.nn.superkernel import Decision
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import predict_ms
from spnas.search.loop import run_search
from spnas.model.space import get_space

SPACE = get_space("small", width=0.25, input_size=16, num_classes=4)


def some_arch() -> Architecture:
    ops = ["k3e3", "k5e6", "skip", "k3e6", "k5e3"]
    return Architecture(SPACE.name, tuple(
        op if op != "skip" or spec.skippable else "k3e3"
        for spec, op in zip(SPACE.layers(), (ops * 10)[:len(SPACE.layers())])))


def test_a_frozen_supernet_computes_the_forced_one_and_its_thresholds_learn_nothing():
    torch.manual_seed(0)
    arch, x, y = some_arch(), torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    forced = SinglePathNet(SPACE).eval()
    forced.force_architecture(arch)
    frozen = SinglePathNet(SPACE).eval()
    frozen.load_state_dict(forced.state_dict())
    with torch.no_grad():
        for block in frozen.searchable_blocks():  # thresholds anywhere: a frozen net does not look at them
            for t in (block.superkernel.t_k5, block.superkernel.t_e3, block.superkernel.t_e6):
                t.fill_(1e3)
    assert frozen.architecture() != arch
    frozen.freeze(arch)
    assert frozen.architecture() == arch
    assert torch.equal(frozen(x), forced(x))
    F.cross_entropy(frozen(x), y).backward()
    thresholds = [t for b in frozen.searchable_blocks() for t in (b.superkernel.t_k5, b.superkernel.t_e3, b.superkernel.t_e6)]
    assert all(t.grad is None or not t.grad.any() for t in thresholds)
    assert any(p.grad is not None and p.grad.any() for p in frozen.parameters())  # the weights still learn
    frozen.freeze(None)
    assert frozen.architecture() != arch  # freed: the thresholds decide again


def test_landing_freezes_the_first_in_band_decisions_of_its_window():
    landing = Landing.for_run(target_ms=1.0, margin=0.02, share=0.25, total_steps=100, warmup_steps=60, rule="first")
    assert (landing.start_step, landing.low_ms) == (75, pytest.approx(0.96))
    assert Landing.for_run(1.0, 0.02, 0.5, 100, warmup_steps=60, rule="first").start_step == 60  # never inside the warm-up
    a, b = some_arch(), Architecture(SPACE.name, ("k5e6",) * len(SPACE.layers()))
    assert not landing.update(74, a, 0.98)  # in band, but before the window
    assert not landing.update(75, a, 1.01) and not landing.update(76, a, 0.95)  # over, and under the band
    assert landing.freeze_now(76) is None  # nothing landed yet: nothing to freeze
    assert landing.update(77, a, 0.97) and landing.landed == a and landing.step == 77
    assert landing.freeze_now(77) == a and landing.frozen and landing.freeze_now(78) is None  # frozen once
    assert not landing.update(78, b, 0.99) and landing.landed == a  # landed once, for good
    again = Landing.for_run(1.0, 0.02, 0.25, 100, 60, rule="first")
    again.load_state_dict(landing.state_dict())
    assert (again.landed, again.step, again.frozen) == (a, 77, True)
    # a checkpoint written before rule hold existed (no frozen_at): rule first had frozen at its landing
    old = Landing.for_run(1.0, 0.02, 0.25, 100, 60, rule="first")
    old.load_state_dict({"arch": a.to_string(), "step": 77, "within_step": None})
    assert old.frozen and old.frozen_at == 77 and not old.open_at(80)


def test_the_hold_rule_keeps_the_latest_in_band_decisions_then_holds_them_to_the_end():
    # window 75-99; its last quarter (6 steps: 94-99) holds
    landing = Landing.for_run(target_ms=1.0, margin=0.02, share=0.25, total_steps=100, warmup_steps=60, rule="hold")
    assert (landing.start_step, landing.hold_step) == (75, 94)
    a, b, c = some_arch(), Architecture(SPACE.name, ("k5e6",) * len(SPACE.layers())), \
        Architecture(SPACE.name, ("k3e3",) * len(SPACE.layers()))
    assert landing.update(80, a, 0.97) == a and landing.freeze_now(80) is None  # as rule last before the hold step
    assert landing.update(85, b, 0.99) == b and landing.freeze_now(93) is None
    # a path at a step before the hold: its in-band point nearest to the step's end, as rule last
    assert landing.update(90, c, 1.05, [(a, 0.97), (b, 0.98), (c, 1.02)]) == b and landing.within_step == 2
    assert landing.update(94, c, 1.05) is None  # out of band at the hold step: the latest in-band ones are held
    assert landing.freeze_now(94) == b and (landing.step, landing.frozen_at) == (90, 94)
    assert not landing.open_at(95) and landing.update(96, a, 0.97) is None and landing.landed == b
    again = Landing.for_run(1.0, 0.02, 0.25, 100, 60, rule="hold")
    again.load_state_dict(landing.state_dict())
    assert (again.landed, again.step, again.frozen_at, again.frozen) == (b, 90, 94, True)
    # never in band before the hold step: the first in-band decisions after it are held, as rule first
    late = Landing.for_run(1.0, 0.02, 0.25, 100, 60, rule="hold")
    assert late.freeze_now(94) is None and late.update(95, c, 1.05, [(a, 0.97), (b, 0.98), (c, 1.02)]) == a
    assert late.freeze_now(95) == a and late.frozen_at == 95


def test_a_step_that_jumped_over_the_band_lands_on_the_in_band_point_of_its_path():
    on, off = Decision(1, 1, 1), Decision(0, 1, 1)  # k5e6, k3e6
    before, after = [on, on, on], [off, off, off]
    # layer 2's margin crossed zero first (a tenth of the way), then layer 0 (half), then layer 1
    margins_before = [{"k5": k5, "e3": 1.0, "e6": 1.0} for k5 in (0.5, 0.9, 0.1)]
    margins_after = [{"k5": k5, "e3": 1.0, "e6": 1.0} for k5 in (-0.5, -0.1, -0.9)]
    path = path_within_step(before, after, margins_before, margins_after)
    assert path == [[on, on, off], [off, on, off]]  # the step's own decisions are not part of its path
    assert path_within_step(before, before, margins_before, margins_before) == []
    landing = Landing.for_run(target_ms=1.0, margin=0.02, share=0.5, total_steps=100, warmup_steps=10, rule="first")

    def arch(decisions: list[Decision]) -> Architecture:
        return Architecture(SPACE.name, tuple(d.op for d in decisions))

    priced = [(arch(path[0]), 1.03), (arch(path[1]), 0.97)]
    assert landing.update(49, arch(after), 0.90, priced) is None  # before the window
    assert landing.update(50, arch(after), 0.90, priced[:1]) is None  # nothing in band on the way
    assert landing.update(51, arch(after), 0.90, priced) == arch(path[1])
    assert (landing.step, landing.within_step) == (51, 2)
    direct = Landing.for_run(1.0, 0.02, 0.5, 100, 10, rule="first")
    assert direct.update(50, arch(after), 0.98, priced) == arch(after) and direct.within_step is None  # its own first


def test_the_last_rule_keeps_the_windows_latest_in_band_decisions_and_freezes_nothing():
    landing = Landing.for_run(target_ms=1.0, margin=0.02, share=0.25, total_steps=100, warmup_steps=60)
    a, b, c = some_arch(), Architecture(SPACE.name, ("k5e6",) * len(SPACE.layers())), \
        Architecture(SPACE.name, ("k3e3",) * len(SPACE.layers()))
    assert not landing.update(74, a, 0.98)  # before the window
    assert landing.update(75, a, 0.97) == a and landing.update(76, b, 0.99) == b  # every in-band step, the latest wins
    assert landing.update(77, c, 1.05) is None and (landing.landed, landing.step) == (b, 76)  # out of band: kept
    assert landing.freeze_now(99) is None and not landing.frozen and landing.open_at(99)  # rule last never freezes
    # a step that jumped over the band: the in-band point of its path nearest to the step's end
    assert landing.update(78, c, 1.05, [(a, 0.97), (b, 0.98), (c, 1.02)]) == b and landing.within_step == 2
    again = Landing.for_run(1.0, 0.02, 0.25, 100, 60)
    again.load_state_dict(landing.state_dict())
    assert (again.landed, again.step, again.within_step) == (b, 78, 2)
    first = Landing.for_run(1.0, 0.02, 0.25, 100, 60, rule="first")
    assert first.update(78, c, 1.05, [(a, 0.97), (b, 0.98), (c, 1.02)]) == a  # rule first: the path's first


@pytest.fixture
def tiny_lut(tmp_path) -> str:
    path = tmp_path / "lut.json"
    fake_lut(SPACE).save(path)
    return str(path)


def cfg(tmp_path: Path, lut: str, name: str, **kw) -> SearchConfig:
    return SearchConfig(data="synthetic:320:1:16:4", lut=lut, width=0.25, out=str(tmp_path / name), epochs=4,
                        batch_size=16, val_fraction=0.2, log_every=1, eval_every_epoch=False, warmup_fraction=0.25,
                        target_ms=0.93, lambda_=1.0, lr_per_256=1.0, indicator_scale="init-norm", **{"landing": 1.0, **kw})


def test_a_landed_search_returns_its_frozen_decisions_unrepaired_and_resumes_exactly(tmp_path, tiny_lut):
    full = run_search(cfg(tmp_path, tiny_lut, "full", landing_rule="first"))
    summary = json.loads((full.run_dir / "summary.json").read_text())
    landed_step, landed = summary["landing"]["step"], Architecture.from_string(summary["landing"]["arch"])
    assert landed_step >= 16  # 64 steps: the window is all after the 16-step warm-up
    assert summary["repair_flips"] == [] and full.arch == landed.canonical() and full.last_step == full.arch
    assert 0.93 * 0.96 <= full.predicted_ms <= 0.93
    records = read_metrics(full.run_dir / "metrics.jsonl")
    in_band = [r["step"] for r in records if "ops" in r and r["step"] >= 16 and 0.93 * 0.96 <= r["predicted_ms"] <= 0.93]
    if summary["landing"]["within_step"] is None:
        assert landed_step == in_band[0]  # the first in-band step of the window
    else:  # or, before it, a step whose flips passed through the band
        assert landed_step < in_band[0] and 0.93 * 0.96 <= summary["predicted_ms"] <= 0.93
    assert not [r for r in records if "flipped" in r and r["step"] > landed_step]
    assert all(tuple(r["ops"]) == landed.ops for r in records if "ops" in r and r["step"] >= landed_step)
    assert f"met the budget band at step {landed_step}" in summary["diagnostics"]["summary"]
    # the paragraph's last step is priced as the result and the band are: the canonical form
    assert summary["diagnostics"]["last_step_ms"] == summary["last_step_predicted_ms"] == full.last_step_ms
    # stopped just before the landing step (its path starts from the checkpoint's decisions) and just
    # after it, and resumed: the same landing, decisions and weights
    for name, stop in (("before", landed_step), ("after", landed_step + 2)):
        with pytest.raises(Interrupted):
            run_search(cfg(tmp_path, tiny_lut, name, landing_rule="first", max_steps=stop))
        part = tmp_path / name
        conf = json.loads((part / "config.json").read_text())
        (part / "config.json").write_text(json.dumps({**conf, "max_steps": None}))
        resumed = run_search(SearchConfig(), resume_dir=str(part))
        assert resumed.arch == full.arch and resumed.repair_flips == []
        assert json.loads((part / "summary.json").read_text())["landing"] == summary["landing"]
        a = torch.load(part / "checkpoint.pt", weights_only=False)["model"]
        b = torch.load(full.run_dir / "checkpoint.pt", weights_only=False)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_last_rule_searches_as_plain_and_returns_its_last_in_band_decisions(tmp_path, tiny_lut):
    plain = run_search(cfg(tmp_path, tiny_lut, "plain", landing=0.0))
    last = run_search(cfg(tmp_path, tiny_lut, "last", landing_rule="last"))
    ops = [[tuple(r["ops"]) for r in read_metrics(run.run_dir / "metrics.jsonl") if "ops" in r] for run in (plain, last)]
    assert ops[0] == ops[1] and last.last_step == plain.last_step  # the same trajectory: nothing was frozen
    a = torch.load(plain.run_dir / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(last.run_dir / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((last.run_dir / "summary.json").read_text())
    records = read_metrics(last.run_dir / "metrics.jsonl")
    landed = [r for r in records if "landed" in r]
    assert landed and summary["landing"]["step"] == landed[-1]["step"] and all(r["rule"] == "last" for r in landed)
    assert last.repair_flips == [] and last.arch == Architecture.from_string(summary["landing"]["arch"]).canonical()
    assert 0.93 * 0.96 <= last.predicted_ms <= 0.93
    in_band = [r["step"] for r in records if "ops" in r and r["step"] >= 16 and 0.93 * 0.96 <= r["predicted_ms"] <= 0.93]
    if summary["landing"]["within_step"] is None:
        assert summary["landing"]["step"] == in_band[-1]  # the last in-band step of the window
    else:  # or, after it, a step whose flips passed through the band
        assert summary["landing"]["step"] > in_band[-1] if in_band else True
    assert f"band were at step {summary['landing']['step']}" in summary["diagnostics"]["summary"]
    # interrupted inside the window and resumed: the same landing
    with pytest.raises(Interrupted):
        run_search(cfg(tmp_path, tiny_lut, "part", landing_rule="last", max_steps=40))
    conf = json.loads((tmp_path / "part" / "config.json").read_text())
    (tmp_path / "part" / "config.json").write_text(json.dumps({**conf, "max_steps": None}))
    resumed = run_search(SearchConfig(), resume_dir=str(tmp_path / "part"))
    assert resumed.arch == last.arch
    assert json.loads((tmp_path / "part" / "summary.json").read_text())["landing"] == summary["landing"]


def test_the_hold_rule_searches_as_last_then_ends_on_its_result_and_resumes_exactly(tmp_path, tiny_lut):
    last = run_search(cfg(tmp_path, tiny_lut, "last", landing_rule="last"))
    hold = run_search(cfg(tmp_path, tiny_lut, "hold"))  # the default rule
    summary = json.loads((hold.run_dir / "summary.json").read_text())
    held_from = summary["landing"]["frozen_at"]
    assert held_from == 52  # 64 steps, the window after the 16-step warm-up: its last quarter (12 steps) holds
    records = {run.run_dir.name: read_metrics(run.run_dir / "metrics.jsonl") for run in (last, hold)}
    ops = {name: {r["step"]: tuple(r["ops"]) for r in rows if "ops" in r} for name, rows in records.items()}
    assert all(ops["hold"][s] == ops["last"][s] for s in range(held_from + 1))  # rule last's trajectory until the hold
    landed = Architecture.from_string(summary["landing"]["arch"])
    assert summary["landing"]["step"] <= held_from and hold.repair_flips == []
    assert all(ops["hold"][s] == landed.ops for s in range(held_from + 1, 64))  # held to the end
    assert hold.last_step == hold.arch == landed.canonical() and 0.93 * 0.96 <= hold.last_step_ms <= 0.93
    # the held decisions are the latest in band by the hold step, as rule last would have returned there
    in_band = [s for s in range(16, held_from + 1) if 0.93 * 0.96 <= predict_ms(LatencyTable.load(tiny_lut),
               Architecture(SPACE.name, ops["hold"][s]).canonical()) <= 0.93]
    if summary["landing"]["within_step"] is None:
        assert summary["landing"]["step"] == in_band[-1]
    assert [r["step"] for r in records["hold"] if "held" in r] == [held_from]
    # the switch to the held decisions is the "held" record, not a flip: no flips after the hold step
    assert not [r for r in records["hold"] if "flipped" in r and r["step"] > held_from]
    assert f"held from step {held_from} on" in summary["diagnostics"]["summary"] or \
        f"frozen there for the last {63 - held_from} steps" in summary["diagnostics"]["summary"]
    # interrupted after the hold step and resumed: the same landing and final weights
    with pytest.raises(Interrupted):
        run_search(cfg(tmp_path, tiny_lut, "part", landing_rule="hold", max_steps=held_from + 3))
    conf = json.loads((tmp_path / "part" / "config.json").read_text())
    (tmp_path / "part" / "config.json").write_text(json.dumps({**conf, "max_steps": None}))
    resumed = run_search(SearchConfig(), resume_dir=str(tmp_path / "part"))
    assert resumed.arch == hold.arch and resumed.last_step == hold.last_step
    assert json.loads((tmp_path / "part" / "summary.json").read_text())["landing"] == summary["landing"]
    a = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(hold.run_dir / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_target_searches_land_by_default_and_runs_made_before_landing_resume_without_it(tmp_path, tiny_lut):
    assert (SearchConfig().landing, SearchConfig().landing_rule) == (0.125, "hold")
    # a run whose config.json predates --landing (no such key) was a plain search: resumed, it stays one
    with pytest.raises(Interrupted):
        run_search(cfg(tmp_path, tiny_lut, "old", landing=0.0, max_steps=10))
    conf = json.loads((tmp_path / "old" / "config.json").read_text())
    del conf["landing"]
    (tmp_path / "old" / "config.json").write_text(json.dumps({**conf, "max_steps": None}))
    resumed = run_search(SearchConfig(), resume_dir=str(tmp_path / "old"))
    plain = run_search(cfg(tmp_path, tiny_lut, "plain", landing=0.0))
    assert json.loads((tmp_path / "old" / "summary.json").read_text())["landing"] is None
    assert (resumed.arch, resumed.repair_flips) == (plain.arch, plain.repair_flips)
    # one that predates --landing-rule landed by the only rule there was, first: resumed, it keeps it
    first = tmp_path / "first"
    first.mkdir()
    (first / "config.json").write_text(json.dumps({k: v for k, v in conf.items() if k != "landing_rule"} |
                                                   {"landing": 0.125, "out": str(first)}))
    assert load_run_config(SearchConfig, first).landing_rule == "first"
