"""Device and precision: every code path the CUDA runs take, exercised on the CPU through the same
functions (device is a parameter), plus bf16 autocast end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from spnas.data.datasets import load_data
from spnas.data.loader import train_source
from spnas.jobs.device import MAX_SKIPPED_STEPS, Precision, resolve_device
from spnas.jobs.engine import StepStats
from spnas.jobs.divergence import Diverged, DivergenceGuard
from spnas.errors import SpnasError
from spnas.train.config import TrainConfig
from spnas.train.loop import load_model, run_train


def test_auto_is_cpu_here_and_bad_specs_are_one_line():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for spec in ("tpu", "cuda:x", "mps:0", ""):
        with pytest.raises(SpnasError, match="--device must be"):
            resolve_device(spec)


def test_batches_are_the_same_whichever_device_holds_the_images():
    data = load_data("synthetic:64:1:16:4")
    data.crop_padding = 2  # synthetic data is not augmented by default: switch crops and flips on
    here = train_source(data, 16, seed=3)
    there = train_source(data, 16, seed=3, device=torch.device("cpu"))
    for step in range(3):
        (x1, y1), (x2, y2) = here.batch(1, step), there.batch(1, step)
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_bf16_training_runs_and_keeps_float32_weights(tmp_path):
    result = run_train(TrainConfig(arch="uniform-k3e3", data="synthetic:128:1:16:4", width=0.25, epochs=1,
                                   batch_size=16, out=str(tmp_path / "run"), device="cpu", amp="bf16"))
    net, meta = load_model(result.run_dir)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert json.loads((tmp_path / "run" / "config.json").read_text())["amp"] == "bf16"
    assert 0 <= meta["metrics"]["test_top1"] <= 1


def _fp16_on_cpu(monkeypatch) -> Precision:
    """The fp16 path (loss scaling, skipped steps) with the CPU standing in for CUDA."""
    monkeypatch.setattr("spnas.jobs.device.check_amp", lambda amp, device: None)
    return Precision(torch.device("cpu"), "fp16")


def _backward_and_step(precision, loss, optimizer, model, guard, step) -> float:
    """One fp16 step; the guard sees its gradient norm and skip count (a finite loss stands in, so only
    the scaler's side is checked)."""
    optimizer.zero_grad(set_to_none=True)
    precision.backward(loss)
    norms = precision.step(optimizer, model)
    guard.record(step, StepStats(torch.zeros(()), torch.zeros(()), torch.zeros(()), norms, **precision.health()))
    guard.verify()
    return norms.total.item()


def test_fp16_scaler_skips_overflowing_steps_and_then_calls_it_divergence(tmp_path, monkeypatch):
    precision = _fp16_on_cpu(monkeypatch)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = DivergenceGuard(tmp_path, 100, 2, "--lr-per-256 1")
    before = model.weight.detach().clone()
    loss = model(torch.full((1, 3), float("inf"))).sum()  # an overflow: the scaler skips the step
    assert not math.isfinite(_backward_and_step(precision, loss, optimizer, model, guard, 0))
    assert torch.equal(model.weight, before) and precision.skipped_in_a_row == 1
    good = model(torch.ones(1, 3)).sum()
    _backward_and_step(precision, good, optimizer, model, guard, 1)
    assert precision.skipped_in_a_row == 0 and not torch.equal(model.weight, before)
    with pytest.raises(Diverged, match=f"overflowed {MAX_SKIPPED_STEPS} steps in a row"):
        for step in range(MAX_SKIPPED_STEPS):
            _backward_and_step(precision, model(torch.full((1, 3), float("inf"))).sum(), optimizer, model, guard, step)


def test_scaler_state_round_trips_through_a_checkpoint(monkeypatch):
    a, b = _fp16_on_cpu(monkeypatch), _fp16_on_cpu(monkeypatch)
    a.skipped_in_a_row = 3
    b.load_state_dict(a.state_dict())
    assert b.skipped_in_a_row == 3 and b.scaler.state_dict()["scale"] == a.scaler.state_dict()["scale"]
