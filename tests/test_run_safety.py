"""What spnas does to the disk: never outside its run directory, one writer per run directory, and a
resume that works from anywhere, survives a torn log and says plainly when it cannot be exact."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import fake_lut
from spnas.cli.main import main
from spnas.jobs.engine import Interrupted
from spnas.outputs.files import atomic_write_text
from spnas.jobs.rundir import LOCK, MARKER
from spnas.jobs.runs import read_metrics
from spnas.model.space import get_space
from spnas.train.config import TrainConfig
from spnas.train.loop import run_train

TINY = ["--data", "synthetic:64:1:16:4", "--width", "0.25", "--epochs", "1", "--batch-size", "16"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def spnas(*args, cwd=None, **kw):
    return subprocess.run([sys.executable, "-m", "spnas", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, **kw)


def test_the_command_that_emptied_the_current_directory_now_touches_nothing(tmp_path):
    """Before: `--out '' --force` (and `--out . --force`) deleted every file in the current directory."""
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / "data").mkdir()
    for out in ("", "."):
        result = spnas("train", "uniform-k3e3", *TINY, "--out", out, "--force", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "thesis.tex"]
        assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_force_replaces_a_directory_spnas_made_and_nothing_else(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "uniform-k3e3", *TINY, "--out", "run"]) == 0
    (tmp_path / "run" / "old-note.txt").write_text("left from the first run")
    assert (tmp_path / "run" / MARKER).is_file()
    assert main(["train", "uniform-k3e3", *TINY, "--out", "run"]) == 2  # not without --force
    assert main(["train", "uniform-k3e3", *TINY, "--out", "run", "--force"]) == 0
    assert not (tmp_path / "run" / "old-note.txt").exists() and (tmp_path / "run" / "model.pt").is_file()
    capfd.readouterr()


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


def test_export_and_profile_outputs_are_not_replaced_without_force(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "uniform-k3e3", *TINY, "--out", "run"]) == 0
    Path("model.onnx").write_text("keep me")
    assert main(["export", "run", "--out", "model.onnx"]) == 2
    assert Path("model.onnx").read_text() == "keep me"
    assert main(["export", "run", "--out", "model.onnx", "--force"]) == 0
    assert Path("model.onnx").stat().st_size > 1000
    capfd.readouterr()


def _wait_for_lock(run_dir: Path, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (run_dir / "checkpoint.pt").exists() and (run_dir / LOCK).is_file():
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    raise AssertionError("the first run never wrote its first checkpoint")


def test_a_second_writer_is_refused_while_the_first_runs_then_resume_works(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "spnas", "train", "uniform-k3e3", "--data", "synthetic:2048:1:16:4", "--width",
         "0.25", "--epochs", "40", "--batch-size", "16", "--out", str(run_dir)],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        _wait_for_lock(run_dir, first)
        for args in (["train", "--resume", str(run_dir)],
                     ["train", "uniform-k3e3", *TINY, "--out", str(run_dir), "--force"]):
            second = spnas(*args)
            assert second.returncode == 2, second.stderr
            assert second.stderr.count("\n") == 1
            assert f"in use by another spnas process (PID {first.pid}: " in second.stderr
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 128 + signal.SIGTERM
    assert "spnas: stopped on SIGTERM at step" in err and "error" not in err
    # the lock file with the dead PID is still there and is no obstacle
    assert (run_dir / LOCK).read_text().strip() == str(first.pid)
    resumed = spnas("train", "--resume", str(run_dir), "--max-steps", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert "stopped as asked (--max-steps)" in resumed.stderr and "error" not in resumed.stderr


@pytest.fixture
def stopped_run(tmp_path, monkeypatch):
    """A training run stopped by --max-steps after 5 of its 14 steps, made from another directory with a
    relative --out."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = TrainConfig(arch="uniform-k3e3", data="synthetic:128:1:16:4", width=0.25, epochs=2, batch_size=16,
                      out="run", log_every=1, max_steps=5, threads=1)
    with pytest.raises(Interrupted) as stop:
        run_train(cfg)
    assert stop.value.exit_code == 0  # a stop that was asked for
    monkeypatch.chdir(tmp_path)
    return elsewhere / "run"


def test_a_job_gives_the_process_its_thread_count_back(stopped_run):
    """A sweep resumes a job recorded with 1 thread, then starts new ones: they must get the process's
    own count, not the resumed job's (the methods benchmark of BENCHMARKS.md at 061b308, §11 ran into this)."""
    torch.set_num_threads(2)
    assert main(["train", "--resume", str(stopped_run), "--max-steps", "1"]) == 0
    assert json.loads((stopped_run / "config.json").read_text())["threads"] == 1
    assert torch.get_num_threads() == 2


def test_resume_from_another_directory_drops_a_torn_line_and_stale_tmp_files(stopped_run, capfd):
    config = json.loads((stopped_run / "config.json").read_text())
    assert Path(config["out"]).is_absolute() and config["threads"] == 1
    with open(stopped_run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 1.2')  # the process was killed mid-line
    (stopped_run / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    assert main(["train", "--resume", str(stopped_run)]) == 0  # runs to the end: the stop was one-time
    steps = [r["step"] for r in read_metrics(stopped_run / "metrics.jsonl") if "loss" in r]
    total = json.loads((stopped_run / "results.json").read_text())["steps"]
    assert total == 14 and steps == list(range(total))  # every step once, none twice, none torn
    assert not list(stopped_run.glob(".*.tmp"))
    assert "note" not in capfd.readouterr().err  # same thread count: nothing to warn about


def test_resume_with_other_threads_says_it_will_not_be_exact(stopped_run, capfd):
    assert main(["train", "--resume", str(stopped_run), "--threads", "2"]) == 0
    err = capfd.readouterr().err
    assert "spnas: note: resuming with 2 torch threads where the run used 1" in err
    assert "bit for bit" in err


def test_resume_refuses_options_that_would_change_the_run(stopped_run, capfd):
    before = (stopped_run / "checkpoint.pt").stat().st_mtime_ns
    assert main(["train", "--resume", str(stopped_run), "--epochs", "5"]) == 2
    err = capfd.readouterr().err
    assert "--epochs cannot be changed on --resume" in err and "--max-steps, --threads" in err
    assert (stopped_run / "checkpoint.pt").stat().st_mtime_ns == before


def test_new_search_config_stores_absolute_paths(tmp_path, monkeypatch):
    from spnas.search.config import SearchConfig
    from spnas.search.loop import run_search

    monkeypatch.chdir(tmp_path)
    fake_lut(get_space("small", width=0.25, input_size=16, num_classes=4)).save(tmp_path / "lut.json")
    with pytest.raises(Interrupted):
        run_search(SearchConfig(data="synthetic:64:1:16:4", lut="lut.json", width=0.25, epochs=1, batch_size=16,
                                out="s", max_steps=1, eval_every_epoch=False))
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["lut"] == str(tmp_path / "lut.json") and config["out"] == str(tmp_path / "s")


def test_a_time_based_mid_epoch_checkpoint_resumes_exactly(tmp_path, monkeypatch):
    """The machine dies in the middle of epoch 2 (no signal, no final save): the timed checkpoint of
    step 17 (of 14-step epochs) resumes to the same weights as a run that never stopped."""
    import torch

    from spnas.data.loader import BatchSource

    def cfg(name):
        return TrainConfig(arch="uniform-k3e3", data="synthetic:256:1:16:4", width=0.25, epochs=2, batch_size=16,
                           out=str(tmp_path / name), log_every=1, threads=1, checkpoint_minutes=1e-9)

    run_train(cfg("whole"))
    real_batch = BatchSource.batch

    def power_cut(self, epoch, step, *part):
        if self.augment and (epoch, step) == (1, 3):
            raise RuntimeError("power cut")
        return real_batch(self, epoch, step, *part)

    monkeypatch.setattr(BatchSource, "batch", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        run_train(cfg("cut"))
    monkeypatch.setattr(BatchSource, "batch", real_batch)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 17  # mid-epoch
    run_train(TrainConfig(), resume_dir=str(tmp_path / "cut"))
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(28))
