"""Divergence: a non-zero exit with one line naming the step and the cause, and nothing non-finite on disk."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import fake_lut
from spnas.jobs.divergence import GROWTH, Diverged, DivergenceGuard, first_non_finite
from spnas.model.space import get_space
from spnas.train.config import TrainConfig
from spnas.train.loop import run_train

DATA = "synthetic:256:1:16:4"  # 230 training images: 14 steps of 16 per epoch


def spnas(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spnas", *args], capture_output=True, text=True, cwd=cwd)


def error_lines(stderr: str) -> list[str]:
    return [l for l in stderr.replace("\r", "\n").splitlines() if l.startswith("spnas:")]


def train_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(arch="uniform-k3e3", data=DATA, width=0.25, epochs=3, batch_size=16, out=str(tmp_path / "run"))
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def lut(tmp_path):
    path = tmp_path / "lut.json"
    fake_lut(get_space("small", width=0.25, input_size=16, num_classes=4)).save(path)
    return str(path)


def test_training_at_an_absurd_lr_exits_3_blaming_the_lr_and_leaves_no_model(tmp_path):
    out = spnas("train", "uniform-k3e6", "--data", DATA, "--width", "0.25", "--epochs", "3", "--batch-size",
                "16", "--lr-per-256", "1000", "--out", str(tmp_path / "run"))
    lines = error_lines(out.stderr)
    assert out.returncode == 3, out.stderr
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "diverged" in lines[0] and "the learning rate (--lr-per-256 1000" in lines[0]
    assert "no checkpoint was written" in lines[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "model.pt").exists()


def test_search_at_lr_100_exits_3_instead_of_returning_a_diverged_supernet(tmp_path, lut):
    out = spnas("search", "--lut", lut, "--data", DATA, "--width", "0.25", "--epochs", "3", "--batch-size", "16",
                "--lr-per-256", "100", "--out", str(tmp_path / "run"))
    lines = error_lines(out.stderr)
    assert out.returncode == 3, out.stderr
    assert len(lines) == 1 and "the learning rate (--lr-per-256 100" in lines[0]
    assert not (tmp_path / "run" / "arch.json").exists()


def test_a_poisoned_lut_is_refused_before_the_search_starts(tmp_path, lut):
    import json

    data = json.loads(open(lut).read())
    data["calibration"] = {"a": 1.0, "b": -100.0}  # would predict negative latency: ln() of it is nan
    poisoned = tmp_path / "poisoned.json"
    poisoned.write_text(json.dumps(data))
    out = spnas("search", "--lut", str(poisoned), "--data", DATA, "--width", "0.25", "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and "predicts" in out.stderr and "fastest network" in out.stderr
    assert not (tmp_path / "run").exists()


def test_non_finite_weights_after_a_checkpoint_keep_that_checkpoint(tmp_path, monkeypatch):
    """A weight turned to inf in epoch 2 stops the run at the next step; the epoch-1 checkpoint stays
    on disk, finite, and the message says so."""
    real_step = torch.optim.SGD.step
    calls = {"n": 0}

    def poisoned_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 17:  # step 17 of 14-step epochs: after the first checkpoint
            self.param_groups[0]["params"][0].data.fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned_step)
    with pytest.raises(Diverged) as err:
        run_train(train_cfg(tmp_path))
    message = str(err.value)
    assert message.startswith("step 18/42: diverged")
    assert "checkpoint.pt, step 14) is finite" in message
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 14 and first_non_finite({k: saved[k] for k in ("model", "ema", "optimizer")}) is None
    assert not (tmp_path / "run" / "model.pt").exists()


def test_a_non_finite_batchnorm_statistic_is_never_written(tmp_path, monkeypatch):
    """Running statistics do not enter the training loss, so only the check before writing sees them."""
    run_dir = tmp_path / "run"
    original = DivergenceGuard.check_state

    def poison_then_check(self, step, parts):  # poison first, so the guard sees what would be written
        if step == 28:
            bn = next(m for m in parts["model"].modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.fill_(float("nan"))
        return original(self, step, parts)

    monkeypatch.setattr(DivergenceGuard, "check_state", poison_then_check)
    with pytest.raises(Diverged, match=r"running_var is not finite \(nothing was written\)"):
        run_train(train_cfg(tmp_path))
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == 14  # epoch 1's, kept


def test_guard_names_the_latency_table_lambda_or_the_lr(tmp_path):
    guard = DivergenceGuard(tmp_path, 100, 10, "--lr-per-256 5")
    one = torch.tensor(1.0)
    cases = [
        (dict(latency_ms=torch.tensor(float("nan"))), one, "the latency table's entries"),
        (dict(latency_ms=torch.tensor(-0.5)), one, "the latency table's entries"),
        (dict(latency_ms=one, runtime=torch.tensor(float("inf")), lam=1e30), one, "lambda (1e+30)"),
        ({}, torch.tensor(float("nan")), "the learning rate (--lr-per-256 5)"),
        ({}, torch.tensor(GROWTH * 2.31), "cross-entropy grew"),
    ]
    for kwargs, ce, cause in cases:
        with pytest.raises(Diverged) as err:
            guard.check_loss(4, ce, ce, **kwargs)
        assert cause in str(err.value) and str(err.value).startswith("step 5/100")
    guard.check_loss(4, torch.tensor(2.2), torch.tensor(2.3), latency_ms=one, runtime=one, lam=0.02)  # healthy


def test_first_non_finite_names_the_tensor():
    state = {"model": {"a": torch.zeros(2), "b": torch.tensor([1.0, float("inf")])}, "step": 3}
    assert first_non_finite(state) == "model.b"
    assert first_non_finite({"x": [torch.ones(1), 2.0]}) is None
