import json
import subprocess
import sys


def test_smoke_run_writes_every_report_file(tmp_path):
    env_cache = tmp_path / "cache"
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "spnas", "run", "--preset", "smoke", "--out", str(out)]
    env = {**__import__("os").environ, "SPNAS_CACHE": str(env_cache)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("report.md", "results.json", "results.csv", "accuracy_latency.png", "architecture.png",
                 "search_progress.png", "search_decisions.png", "lut.json", "pipeline.json", "search/arch.json",
                 "models/searched.onnx", "models/uniform-k3e6.onnx", "latency/validation.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in results["models"]] == ["searched", "uniform-k3e3", "uniform-k3e6", "uniform-k5e6"]
    assert all(r["measured_ms"] > 0 and r["export_max_abs_diff"] < 1e-4 for r in results["models"])
    assert "| searched" in (out / "report.md").read_text()
    # the LUT is cached: a second run elsewhere reuses it; re-running the same dir resumes (no work)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "searched" in again.stdout
    other = subprocess.run([*cmd[:-1], str(tmp_path / "run2"), "--target-ms", "0.5"], capture_output=True,
                           text=True, env=env)
    assert other.returncode == 0, other.stderr[-2000:]
    assert json.loads((tmp_path / "run2" / "results.json").read_text())["lut"]["cached"] is True


def test_run_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "x.txt").write_text("keep")
    done = subprocess.run([sys.executable, "-m", "spnas", "run", "--preset", "smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not empty" in done.stderr
    assert (tmp_path / "x.txt").read_text() == "keep"


def test_preset_budgets_keep_fashion_mnist_epochs_and_grow_for_small_data():
    from spnas.workflows.pipeline import RUN_PRESETS

    # Fashion-MNIST: 54,000 training images after validation; quick uses 20,000 of them
    assert RUN_PRESETS["quick"].epochs(20000) == (5, 3) and RUN_PRESETS["full"].epochs(54000) == (8, 15)
    search, train = RUN_PRESETS["quick"].epochs(1260)  # a small image folder: 9 steps an epoch
    assert search * (1260 // 128) >= 460 and train * (1260 // 128) >= 460
    assert (search - 1) * (1260 // 128) < 460  # no more than needed


def test_near_chance_accuracy_is_flagged_in_the_report():
    from spnas.workflows.report import _markdown, comparison_warnings
    from spnas.model.space import get_space

    rows = [{"model": m, "arch": "small:" + ",".join(["k3e3"] * 20), "test_top1": acc, "measured_ms": ms,
             "measured_iqr_ms": 0.01, "predicted_ms": ms, "train_wall_s": 60}
            for m, acc, ms in (("searched", 0.24, 0.2), ("uniform-k3e3", 0.15, 0.16), ("uniform-k3e6", 0.5, 0.25))]
    warnings = comparison_warnings(rows, 10)
    assert len(warnings) == 1 and "2 of 3 models scored near chance" in warnings[0]
    assert "searched 24.0%" in warnings[0] and "uniform-k3e6" not in warnings[0]
    assert "3 of 3 models" in comparison_warnings(rows, 2)[0]  # with 2 classes 50% is a coin toss
    summary = {"preset": "quick", "data": "imagefolder:28", "target_ms": 0.2, "threads": 1, "models": rows,
               "warnings": warnings, "searched_dominated_by": [],
               "lut": {"source": "cache"}, "search": {"predicted_ms": 0.2, "wall_s": 60,
                                                      "last_step_predicted_ms": 0.2, "repair_flips": []}}
    assert "**Warning:** 2 of 3 models scored near chance" in _markdown(summary, get_space("small"))
    # the report says where the result came from: a repair of the last step, or the search's own landing
    assert "its last step's decisions: 0.200 ms; 0 least-confident decisions flipped" in _markdown(
        summary, get_space("small"))
    landed = {**summary, "search": {**summary["search"], "landed_step": 441, "last_step_predicted_ms": 0.25}}
    assert "its own decisions at step 441, in the budget band and unrepaired; its last step's decisions: 0.250 ms" \
        in _markdown(landed, get_space("small"))


def test_a_run_whose_every_model_measured_off_its_prediction_the_same_way_is_warned():
    from spnas.workflows.report import prediction_offset_warnings

    def rows(*ratios):
        return [{"model": f"m{i}", "predicted_ms": 0.4, "measured_ms": 0.4 * r} for i, r in enumerate(ratios)]

    # the second fresh-clone run of session 8: 0.748-0.835 of the prediction
    (warning,) = prediction_offset_warnings(rows(0.786, 0.748, 0.797, 0.835))
    assert "every model measured 17-25% under its predicted latency" in warning and "within 9 points" in warning
    assert "6-12% over" in prediction_offset_warnings(rows(1.06, 1.12))[0]
    assert prediction_offset_warnings(rows(0.93, 0.97, 0.90)) == []  # one model within 5%: no common offset
    assert prediction_offset_warnings(rows(0.8, 1.2)) == []  # off both ways: models disagree, not the machine
    assert prediction_offset_warnings(rows(0.8)) == []  # one model says nothing about the machine
    assert prediction_offset_warnings([{"model": "a", "predicted_ms": 0.4, "measured_ms": None}] * 2) == []


def test_with_a_foreign_table_and_two_processes_the_report_compares_predictions(tmp_path):
    """``--lut`` from another device: no profiling, no measuring here; search and trainings run under
    torchrun with 2 gloo processes, and the report says its latencies are predictions."""
    import os

    from conftest import fake_lut
    from spnas.model.space import get_space

    lut = tmp_path / "phone.json"
    fake_lut(get_space("small", width=0.25, input_size=16, num_classes=4)).save(lut)
    out = tmp_path / "run"
    env = {**os.environ, "SPNAS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "spnas", "run", "--preset", "smoke", "--lut", str(lut),
                           "--nproc-per-node", "2", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["latency"] == "predicted" and results["processes"] == 2
    assert all(r["measured_ms"] is None and r["latency_ms"] == r["predicted_ms"] for r in results["models"])
    assert "measure" not in json.loads((out / "pipeline.json").read_text())["stages"]
    assert not (tmp_path / "cache").exists()  # nothing profiled
    assert json.loads((out / "search" / "config.json").read_text())["micro_batch"] == 16
    assert "the comparison uses the table's predictions" in (out / "report.md").read_text()
    assert done.stdout.count("report:") == 1


def test_one_read_of_the_data_serves_every_subset():
    import torch

    from spnas.data.datasets import load_data, with_train_subset

    full = load_data("synthetic:200:1:16:4", val_fraction=0.1, seed=0)
    for n in (50, 120, 500):
        direct, derived = load_data("synthetic:200:1:16:4", val_fraction=0.1, seed=0, train_subset=n), \
            with_train_subset(full, n, 0)
        assert torch.equal(direct.train.images, derived.train.images) and direct.mean == derived.mean
        assert torch.equal(direct.val.images, derived.val.images)


def test_sigterm_stops_a_multi_process_run_which_then_resumes(tmp_path):
    """SIGTERM to ``spnas run`` reaches the torchrun workers, which checkpoint; the same command resumes."""
    import os
    import signal
    import time

    from conftest import fake_lut
    from spnas.model.space import get_space

    lut = tmp_path / "phone.json"
    fake_lut(get_space("small", width=0.25, input_size=16, num_classes=4)).save(lut)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "spnas", "run", "--preset", "smoke", "--lut", str(lut), "--nproc-per-node", "2",
           "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / "search" / "metrics.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    running.send_signal(signal.SIGTERM)
    _, err = running.communicate(timeout=300)
    assert running.returncode == 143, err[-3000:]
    assert "finished stages and checkpoints" in err
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "report.md").is_file()
