"""``--deterministic``: the same command twice gives byte-identical arch.json and identical weights,
also when one of the two was interrupted and resumed; every run records what it ran on."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from spnas.cli.main import main

COMMON = ["--data", "synthetic:96:1:16:4", "--width", "0.25", "--batch-size", "16", "--threads", "1",
          "--device", "cpu", "--epochs", "2", "--deterministic"]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and len(a) > 50
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_deterministic_search_reruns_bit_for_bit_even_when_interrupted(tmp_path, tiny_lut):
    search = ["search", *COMMON, "--lut", str(tiny_lut), "--target-ms", "0.8"]
    first, second, cut = tmp_path / "first", tmp_path / "second", tmp_path / "cut"
    for out in (first, second):
        assert main([*search, "--out", str(out)]) == 0
    assert main([*search, "--out", str(cut), "--max-steps", "4"]) == 0  # inside the warm-up
    assert main(["search", "--resume", str(cut)]) == 0
    assert not torch.are_deterministic_algorithms_enabled()  # the job put the process's setting back
    for other in (second, cut):
        assert (other / "arch.json").read_bytes() == (first / "arch.json").read_bytes()
        assert_identical(weights(first), weights(other))
    records = json.loads((cut / "environment.json").read_text())
    assert len(records) == 2 and all(r["deterministic"] and r["torch"] == torch.__version__ for r in records)
    assert records[0]["cpu"] and records[0]["torch_threads"] == 1


def test_a_deterministic_training_reruns_bit_for_bit_even_when_interrupted(tmp_path):
    train = ["train", "uniform-k3e3", *COMMON]
    first, cut = tmp_path / "first", tmp_path / "cut"
    assert main([*train, "--out", str(first)]) == 0
    assert main([*train, "--out", str(cut), "--max-steps", "7"]) == 0
    assert main(["train", "--resume", str(cut)]) == 0
    assert_identical(weights(first), weights(cut))
    a = torch.load(first / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(cut / "model.pt", weights_only=True)["state_dict"]
    assert_identical(a, b)
    assert json.loads((first / "config.json").read_text())["deterministic"] is True
