"""The search's diagnosis: settling, flips, distance to the target, and the collapse warnings."""

from __future__ import annotations

import json

import pytest

from conftest import fake_lut
from spnas.cli.main import main
from spnas.search.diagnostics import diagnose
from spnas.model.space import get_space

SPACE = get_space("small", width=0.25, input_size=16, num_classes=4)
N = len(SPACE.layers())
MID = ["k3e6"] * N


def state(step: int, ops=MID, ce: float = 1.0, ms: float = 0.5, warm: bool = False, margin: float = 0.5) -> dict:
    norms = [{"k5": 1.0, "e3": 1.0, "e6": 1.0}] * N
    thresholds = [{"k5": 1.0 - margin, "e3": 1.0 - margin, "e6": 1.0 - margin}] * N
    return {"step": step, "ops": list(ops), "ce": ce, "predicted_ms": ms, "warmup": warm, "norms": norms,
            "thresholds": thresholds}


def test_flips_give_settling_steps_flips_per_epoch_and_the_layers_still_flipping():
    records = [state(s, warm=s < 50) for s in range(0, 100, 10)] + [
        {"step": 3, "flipped": [0, 1]}, {"step": 12, "flipped": [1]}, {"step": 55, "flipped": [4]},
        {"step": 95, "flipped": [7]}]
    d = diagnose(records, SPACE, total_steps=100, warmup_steps=50, steps_per_epoch=25, target_ms=0.5,
                 last_step_ms=0.5)
    assert d.settled_at[:2] == [4, 13] and d.settled_at[4] == 56 and d.settled_at[7] == 96
    assert d.settled_at.count(0) == N - 4
    assert d.flips_per_epoch == [3, 0, 1, 1]
    assert d.flipping_last_epoch == [7] and d.flipping_last_tenth == [7]
    assert d.last_step_off_pct == 0.0
    text = d.paragraph()
    assert f"{N - 4} of {N} layers never flipped and {N - 2} had settled by the end of the warm-up" in text
    assert "the 4 that flipped settled at step 4 to 96 of 100 (half of them by step 13)" in text
    assert "Still flipping in the last epoch: layer 7." in text
    assert any("still flipping in the last tenth" in w for w in d.warnings)


def test_the_paragraph_says_where_and_how_a_search_landed_and_prices_the_last_step_as_told():
    records = [state(s, warm=s < 50) for s in range(0, 100, 10)]
    direct = diagnose([*records, {"step": 70, "landed": "x", "within_step": None}], SPACE, 100, 50, 25, 0.5,
                      last_step_ms=0.5)
    assert "met the budget band at step 70 and were frozen there" in direct.paragraph()
    partway = diagnose([*records, {"step": 72, "landed": "x", "within_step": 2}], SPACE, 100, 50, 25, 0.5,
                       last_step_ms=0.49)
    assert "at step 72 (partway" in partway.paragraph() and "with the first 2 of them applied" in partway.paragraph()
    assert partway.last_step_ms == 0.49 and partway.last_step_off_pct == pytest.approx(-2.0)  # not the logged 0.5


def test_a_healthy_search_gets_no_warnings():
    records = [state(s, warm=s < 50, ce=1.5 - s / 200) for s in range(0, 100, 10)] + [{"step": 20, "flipped": [3]}]
    d = diagnose(records, SPACE, 100, 50, 25, 0.5, last_step_ms=0.5)
    assert d.warnings == []
    assert "No layer flipped in the last epoch" in d.paragraph()


def test_each_collapse_is_named_with_what_to_try():
    skips = ["k3e3" if not layer.skippable else "skip" for layer in SPACE.layers()]
    collapsed = [state(s, warm=s < 50) for s in range(0, 90, 10)] + [state(90, ops=skips)]
    [w] = diagnose(collapsed, SPACE, 100, 50, 25, 0.5, last_step_ms=0.5).warnings
    assert w.startswith("collapse to skips: 15 of 15") and "raise --target-ms" in w

    smallest = [state(s, warm=s < 50, ops=["k3e3"] * N if s >= 50 else MID) for s in range(0, 100, 10)]
    assert any("every layer was k3e3 or skip soon after the warm-up" in w
               for w in diagnose(smallest, SPACE, 100, 50, 25, 0.5, last_step_ms=0.5).warnings)

    diverged = [state(s, warm=s < 50, margin=-7.0 if s == 90 else 0.5) for s in range(0, 100, 10)]
    assert any(w.startswith("thresholds diverging") and "--indicator-scale init-norm" in w
               for w in diagnose(diverged, SPACE, 100, 50, 25, 0.5, last_step_ms=0.5).warnings)
    [w] = [w for w in diagnose(diverged, SPACE, 100, 50, 25, 0.5, indicator_scale="init-norm", last_step_ms=0.5).warnings
           if w.startswith("thresholds diverging")]
    assert "--lr-per-256" in w and "init-norm" not in w  # no advice to use what is in use

    worse = [state(s, warm=s < 50, ce=1.0 if s < 50 else 1.6, ms=0.6 if s < 50 else 0.4) for s in range(0, 100, 10)]
    [w] = diagnose(worse, SPACE, 100, 50, 25, None, last_step_ms=0.5).warnings
    assert w.startswith("the latency term dominated: after the warm-up the cross-entropy rose 1.60x")
    assert "lower --lambda" in w


def test_a_search_logs_every_flip_and_writes_its_diagnosis(tmp_path, capsys):
    lut = tmp_path / "lut.json"
    fake_lut(SPACE).save(lut)
    out = tmp_path / "search"
    assert main(["search", "--data", "synthetic:96:1:16:4", "--width", "0.25", "--batch-size", "16", "--threads",
                 "1", "--device", "cpu", "--epochs", "4", "--lut", str(lut), "--lambda", "10", "--lr-per-256", "1",
                 "--warmup-fraction", "0.25", "--indicator-scale", "init-norm", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    diagnosis = summary["diagnostics"]
    assert diagnosis["summary"].split()[0] == "Decisions:" and diagnosis["summary"][:40] in printed.replace("\n", " ")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    flips = sum(len(r["flipped"]) for r in records if "flipped" in r)
    assert flips > 0 and sum(diagnosis["flips_per_epoch"]) == flips  # a strong latency term: decisions move
    assert diagnosis["flips_per_epoch"][0] == 0  # the warm-up (lambda 0, first epoch here) flips nothing
    assert diagnosis["target_ms"] is None and summary["warnings"] == diagnosis["warnings"]
    assert (out / "decisions.png").stat().st_size > 10_000
