"""``spnas sweep``: the front arithmetic, the shared warm-up, the whole sweep and its resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spnas.cli.main import main
from spnas.jobs.engine import Interrupted
from spnas.workflows.pipeline import Pipeline
from spnas.search.branch import branch_search
from spnas.workflows.sweep_report import bootstrap_difference, compare_methods, compare_to_front, front_accuracy, pareto_front

SEARCH = ["--data", "synthetic:96:1:16:4", "--width", "0.25", "--batch-size", "16", "--threads", "1",
          "--device", "cpu", "--epochs", "2", "--log-every", "1"]


def test_bootstrap_interval_separates_distinct_groups_and_not_overlapping_ones():
    lo, hi = bootstrap_difference([0.90, 0.91, 0.92], [0.80, 0.81, 0.82])
    assert 0.08 <= lo <= 0.10 <= hi <= 0.12
    lo, hi = bootstrap_difference([0.80, 0.85, 0.90], [0.81, 0.84, 0.89])
    assert lo < 0 < hi


def test_methods_are_compared_per_target_one_value_per_search():
    rows = [{"kind": "searched", "target_ms": t, "method": m, "test_top1_mean": acc, "latency_ms": 0.4,
             "model": f"{t}-{m}-{i}"}
            for t in (0.4, 0.5) for m, accs in (("multipath", (0.80, 0.81, 0.82)), ("single-path", (0.85, 0.86, 0.87)))
            for i, acc in enumerate(accs)]
    rows.append({"kind": "uniform", "target_ms": None, "method": None, "test_top1_mean": 0.5, "latency_ms": 0.3,
                 "model": "uniform"})
    # each multi-path net is as far above the front at its own latency as its single-path twin
    margins = {r["model"]: float(r["model"][-1]) for r in rows if r["kind"] == "searched"}
    comparisons = compare_methods(rows, margins)
    assert [(c["target_ms"], c["a"], c["b"]) for c in comparisons] == [(0.4, "multipath", "single-path"),
                                                                      (0.5, "multipath", "single-path")]
    assert comparisons[0]["top1_diff_points"] == pytest.approx(-5.0)
    assert comparisons[0]["top1_significant"] and not comparisons[0]["latency_significant"]
    assert comparisons[0]["searches"] == [3, 3]
    assert comparisons[0]["front_margin_a_points"] == comparisons[0]["front_margin_b_points"] == 1.0
    assert not comparisons[0]["front_margin_significant"]
    lo, hi = comparisons[0]["front_margin_diff_ci_points"]
    assert lo < 0 < hi


def test_pareto_front_keeps_only_points_nothing_beats():
    points = [(0.5, 0.80), (0.3, 0.70), (0.4, 0.69), (0.6, 0.79), (0.3, 0.65), (0.7, 0.85)]
    assert pareto_front(points) == [(0.3, 0.70), (0.5, 0.80), (0.7, 0.85)]


def test_front_accuracy_interpolates_inside_and_holds_flat_outside():
    front = [(0.3, 0.70), (0.5, 0.80), (0.7, 0.85)]
    assert front_accuracy(front, 0.4) == pytest.approx(0.75)
    assert front_accuracy(front, 0.6) == pytest.approx(0.825)
    assert front_accuracy(front, 0.2) == 0.70  # faster than every uniform net: must still match the fastest
    assert front_accuracy(front, 0.9) == 0.85  # slower than all: must beat the best


def test_a_searched_net_is_above_the_front_only_past_the_interpolation():
    rows = [{"model": f"uniform-{i}", "kind": "uniform", "latency_ms": ms, "test_top1_mean": acc}
            for i, (ms, acc) in enumerate([(0.3, 0.70), (0.5, 0.80)])]
    rows += [{"model": "a", "kind": "searched", "latency_ms": 0.4, "test_top1_mean": 0.751},
             {"model": "b", "kind": "searched", "latency_ms": 0.4, "test_top1_mean": 0.749}]
    front, verdicts = compare_to_front(rows)
    assert front == [(0.3, 0.70), (0.5, 0.80)]
    assert [v["above_front"] for v in verdicts] == [True, False]
    assert verdicts[0]["margin_points"] == pytest.approx(0.1)


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


@pytest.mark.parametrize("method", ["single-path", "multipath"])
def test_a_branch_of_the_shared_warmup_is_the_search_started_at_its_target(method, tmp_path, tiny_lut):
    search = ["search", *SEARCH, "--lut", str(tiny_lut), "--method", method]
    direct, warm, branch = tmp_path / "direct", tmp_path / "warm", tmp_path / "branch"
    assert main([*search, "--target-ms", "0.9", "--out", str(direct)]) == 0
    # the warm-up (5/8 of 2 x 5 steps = 6) run at another target, then branched to 0.9
    assert main([*search, "--target-ms", "0.4", "--out", str(warm), "--max-steps", "6"]) == 0
    branch_search(warm, branch, 0.9, at_step=6)
    assert json.loads((branch / "config.json").read_text())["target_ms"] == 0.9
    assert main(["search", "--resume", str(branch)]) == 0
    a, b = model_state(direct), model_state(branch)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((direct / "summary.json").read_text())["arch"] == json.loads(
        (branch / "summary.json").read_text())["arch"]
    assert json.loads((branch / "summary.json").read_text())["target_ms"] == 0.9
    # a checkpoint that is not at the warm-up's end is refused, and nothing is written
    with pytest.raises(Exception, match="not at the warm-up's end"):
        branch_search(direct, tmp_path / "wrong", 0.5, at_step=6)
    assert not (tmp_path / "wrong").exists()


SWEEP = ["sweep", "--preset", "smoke", "--targets", "0.7,0.85", "--seeds", "0,1"]


def test_sweep_writes_the_front_report_and_resumes_after_a_stop(tmp_path, tiny_lut, monkeypatch, capsys):
    out = tmp_path / "sweep"
    cmd = [*SWEEP, "--lut", str(tiny_lut), "--out", str(out)]
    real_train, calls = Pipeline.train, []

    def train_then_stop(self, *args, **kwargs):
        if len(calls) == 3:
            raise Interrupted("stopped", 143)
        calls.append(args)
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "train", train_then_stop)
    assert main(cmd) == 143
    monkeypatch.setattr(Pipeline, "train", real_train)
    first = {p: p.stat().st_mtime_ns for p in (out / "train").rglob("results.json")}
    assert len(first) == 3
    assert main(cmd) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # finished trainings were not re-run
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["targets_ms"] == [0.7, 0.85] and summary["seeds"] == [0, 1]
    names = [r["model"] for r in summary["models"]]
    assert names == ["searched-0.700ms", "searched-0.850ms", "uniform-k3e3", "uniform-k5e3", "uniform-k3e6",
                     "uniform-k5e6"]
    assert all(len(r["test_top1_by_seed"]) == 2 for r in summary["models"])
    assert summary["latency"] == "predicted"  # a foreign table: nothing measured here
    assert len(summary["verdicts"]) == 2 and len(summary["uniform_front"]) >= 1
    # one shared warm-up: both branches carry its steps in their logs
    warm = json.loads((out / "search" / "warmup" / "config.json").read_text())
    assert warm["target_ms"] == 0.7 and (out / "search" / "searched-0.850ms" / "summary.json").is_file()
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 6 * 2
    assert {"report.md", "sweep.png", "sweep.json", "sweep.csv"} <= {p.name for p in out.iterdir()}
    assert "searched nets lie above the uniform nets' front" in (out / "report.md").read_text()
    # the same directory with other targets is refused, not mixed
    capsys.readouterr()
    assert main([*SWEEP[:3], "--targets", "0.8", "--seeds", "0,1", "--lut", str(tiny_lut), "--out", str(out)]) == 2
    assert "this sweep's targets are [0.7, 0.85], not [0.8]" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--targets", "0.4,x"], "--targets must be comma-separated floats"),
    (["--targets", "0.4,-1"], "--targets must be positive"),
    (["--targets", "0.4,0.4"], "lists a target twice"),
    (["--points", "0"], "--points must be 1 to 12"),
    (["--seeds", "0,0"], "--seeds must be distinct"),
    (["--methods", "single-path,darts"], "--methods must be distinct names among single-path, multipath, random"),
    (["--search-seeds", "1,1"], "--search-seeds must be distinct"),
])
def test_bad_sweep_options_are_one_line_before_anything_is_written(options, message, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--preset", "smoke", "--out", str(out), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_sweep_compares_methods_over_search_seeds(tmp_path, tiny_lut):
    out = tmp_path / "methods"
    assert main(["sweep", "--preset", "smoke", "--targets", "0.75", "--seeds", "0", "--methods", "single-path,random",
                 "--search-seeds", "0,1", "--lut", str(tiny_lut), "--out", str(out)]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    searched = [r for r in summary["models"] if r["kind"] == "searched"]
    assert sorted((r["method"], r["search_seed"]) for r in searched) == [
        ("random", 0), ("random", 1), ("single-path", 0), ("single-path", 1)]
    assert {r["model"] for r in searched} == {"searched-0.750ms", "searched-0.750ms-s1", "searched-0.750ms-random",
                                              "searched-0.750ms-random-s1"}
    assert (out / "search" / "warmup-s1").is_dir() and not (out / "search" / "warmup-random").exists()
    [comparison] = summary["method_comparisons"]
    assert (comparison["a"], comparison["b"], comparison["searches"]) == ("random", "single-path", [2, 2])
    report = (out / "report.md").read_text()
    assert "Search methods compared at equal targets" in report
    ended = report.split("## How each search ended")[1]
    assert ended.count("(drawn in it)") == 3  # random search only draws inside the band: its 2 rows and its count
    flips = {r["model"]: r["repair_flips"] for r in searched}
    in_band = sum(flips[f"searched-0.750ms{s}"] == 0 for s in ("", "-s1"))
    single_path_top1 = sum(r["test_top1_mean"] for r in searched if r["method"] == "single-path") / 2 * 100
    assert f"single-path: {in_band} of 2, mean top-1 {single_path_top1:.2f}%" in " ".join(ended.split())


def test_epochs_given_replace_the_presets_and_a_resume_must_give_the_same(tmp_path, tiny_lut, capsys):
    out = tmp_path / "budget"
    cmd = ["sweep", "--preset", "smoke", "--targets", "0.75", "--seeds", "0", "--lut", str(tiny_lut), "--out", str(out)]
    assert main([*cmd, "--search-epochs", "3", "--train-epochs", "2"]) == 0  # the preset: 2 and 1
    assert json.loads((out / "search" / "warmup" / "config.json").read_text())["epochs"] == 3
    trained = list((out / "train").rglob("config.json"))
    assert len(trained) == 5 and all(json.loads(p.read_text())["epochs"] == 2 for p in trained)
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["epochs"] == {"search": 3, "train": 2}
    assert "Searches of\n3 epochs" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main([*cmd, "--search-epochs", "3"]) == 2  # the preset's training epochs now: another budget
    err = capsys.readouterr().err.strip()
    assert "holds a run of 3 search and 2 training epochs, not 3 and 1" in err and len(err.splitlines()) == 1
    assert main([*cmd, "--search-epochs", "3", "--train-epochs", "2"]) == 0  # the same budget resumes (all done)
    assert main(["sweep", "--preset", "smoke", "--out", str(tmp_path / "bad"), "--train-epochs", "0"]) == 2
    assert "--train-epochs must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_the_repair_and_last_variants_share_the_single_path_warmup(tmp_path, tiny_lut):
    out = tmp_path / "landing"
    assert main(["sweep", "--preset", "smoke", "--targets", "0.75", "--seeds", "0", "--methods",
                 "single-path,single-path-repair,single-path-landing-last", "--lut", str(tiny_lut), "--out",
                 str(out)]) == 0
    searches = sorted(p.name for p in (out / "search").iterdir())
    assert searches == ["searched-0.750ms", "searched-0.750ms-single-path-landing-last",
                        "searched-0.750ms-single-path-repair", "warmup"]  # one warm-up
    landing, repair, last = (json.loads((out / "search" / name / "config.json").read_text()) for name in
                             ("searched-0.750ms", "searched-0.750ms-single-path-repair",
                              "searched-0.750ms-single-path-landing-last"))
    # single-path lands by default (rule hold); the repair variant is the search as it was before
    assert (landing["landing"], landing["landing_rule"], repair["landing"]) == (0.125, "hold", 0.0)
    assert (last["landing"], last["landing_rule"]) == (0.125, "last")
    # a warm-up made before --landing existed has no such key and resumes without it: a variant that is about
    # landing must say its share, or its branches would not land at all
    from spnas.workflows.sweep import VARIANTS
    assert all("landing" in settings for _, settings in VARIANTS.values())
    assert {k: v for k, v in landing.items() if k not in ("landing", "out")} == \
        {k: v for k, v in repair.items() if k not in ("landing", "out")}
    summary = json.loads((out / "sweep.json").read_text())
    rows = {r["model"]: r for r in summary["models"]}
    assert rows["searched-0.750ms-single-path-repair"]["method"] == "single-path-repair"
    assert "landed_step" in rows["searched-0.750ms"] and rows["searched-0.750ms"]["landed_step"] is None
    # the smoke search moves no decision and never meets the band, so both end at the same repaired net:
    # it is trained once, and the second search's stage says whose training it shares
    assert rows["searched-0.750ms"]["arch"] == rows["searched-0.750ms-single-path-repair"]["arch"]
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    shared = stages["train:searched-0.750ms-single-path-repair:seed0"]
    assert shared["same_as"] == "train:searched-0.750ms:seed0"
    assert shared["test_top1"] == stages["train:searched-0.750ms:seed0"]["test_top1"]
    assert not (out / "train" / "searched-0.750ms-single-path-repair").exists()
    # bench/search_endings.py reads each search's method and seed as the stage recorded them
    endings = _search_endings().endings(out)
    assert sorted((r["method"], r["search_seed"]) for r in endings) == [
        ("single-path", 0), ("single-path-landing-last", 0), ("single-path-repair", 0)]
    assert all(r["target_ms"] == 0.75 for r in endings)


def _search_endings():
    import importlib.util
    spec = importlib.util.spec_from_file_location("search_endings", Path(__file__).parents[1] / "bench" / "search_endings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_budget_sweep_keeps_each_search_under_its_value_and_reports_on_that_axis(tmp_path, tiny_lut, capsys):
    from spnas.model.arch import Architecture
    from spnas.model.costs import cost_tables
    from spnas.model.space import SearchSpace
    out = tmp_path / "params"
    assert main(["sweep", "--preset", "smoke", "--budget", "params", "--points", "2", "--seeds", "0",
                 "--lut", str(tiny_lut), "--out", str(out)]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    space = SearchSpace.from_dict(summary["space"])
    params = cost_tables(space)["params"]
    uniform_params = sorted(r["costs"]["params"] for r in summary["models"] if r["kind"] == "uniform")
    low, high = uniform_params[0], uniform_params[-1]
    assert summary["budget"] == "params" and summary["points"] == [round(low + (high - low) * i / 3) for i in (1, 2)]
    searched = [r for r in summary["models"] if r["kind"] == "searched"]
    assert [r["model"] for r in searched] == [f"searched-{p:.0f}params" for p in summary["points"]]
    for r in searched:
        config = json.loads((out / "search" / r["model"] / "config.json").read_text())
        assert config["max_params"] == r["point"] and config["target_ms"] == summary["targets_ms"][0]
        assert r["x"] == r["costs"]["params"] == params.of(Architecture.from_string(r["arch"]).ops) <= r["point"]
    assert {v["model"]: v["x"] for v in summary["verdicts"]} == {r["model"]: r["x"] for r in searched}
    report = (out / "report.md").read_text()
    assert "Swept: --max-params at" in report and "at their own params" in " ".join(report.split())
    capsys.readouterr()
    assert main(["sweep", "--preset", "smoke", "--budget", "macs", "--points", "2", "--seeds", "0",
                 "--lut", str(tiny_lut), "--out", str(out)]) == 2  # another axis in the same directory
    assert "this sweep sweeps --budget params, not macs" in capsys.readouterr().err
