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
                 "search_progress.png", "lut.json", "pipeline.json", "search/arch.json",
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
