"""Budgets beside latency: params, multiply-adds and peak activation memory, exact for a network (the same
as counting the built module), differentiable for the supernet (equal at hard indicators), refused when no
network of the space is that small, and met by the search's result."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from conftest import random_arch
from spnas.latency.predict import op_mixture
from spnas.model.arch import Architecture, uniform
from spnas.model.costs import BYTES_PER_VALUE, MEASURES, arch_costs, cost_tables, count
from spnas.model.space import MBCONV_OPS, SKIP, get_space
from spnas.nn.network import SinglePathNet
from spnas.nn.superkernel import Decision

SPACES = [("small", {}), ("small", {"width": 0.5}), ("imagenet", {}), ("small", {"width": 0.25, "input_size": 16})]


def _indicators(arch: Architecture) -> torch.Tensor:
    return torch.tensor([[d.k5, d.e3, d.e6] for d in map(Decision.from_op, arch.ops)], dtype=torch.float32)


@pytest.mark.parametrize("name, overrides", SPACES)
def test_costs_of_a_network_equal_counting_its_built_module(name, overrides):
    space = get_space(name, **overrides)
    rng = random.Random(0)
    archs = [random_arch(space, rng) for _ in range(3)] + [uniform(space, "k5e6")]
    archs.append(Architecture(space.name, tuple(SKIP if l.skippable else "k3e3" for l in space.layers())))
    assert any(SKIP in a.ops for a in archs)
    for arch in archs:
        net = SinglePathNet(space, arch)
        counted = count(net, [1, space.in_channels, space.input_size, space.input_size])
        costs = arch_costs(space, arch.ops)
        assert costs["params"] == counted["params"] == sum(p.numel() for p in net.parameters())
        assert costs["macs"] == counted["macs"]
        assert costs["memory"] == counted["memory"] * BYTES_PER_VALUE["float32"]
        assert arch_costs(space, arch.ops, "int8")["memory"] == counted["memory"]


def test_peak_memory_counts_input_output_and_the_held_residual():
    from spnas.nn.blocks import MBConv

    block = MBConv(8, 8, 1, 3, 6)  # residual: its input stays live through all three convolutions
    assert count(block, [1, 8, 10, 10])["memory"] == 100 * (8 + 48 + 48)  # x, and dw's input and output
    plain = MBConv(8, 16, 2, 3, 6)  # no residual: the expand conv's input + output, 8 + 48 channels at 10x10
    assert count(plain, [1, 8, 10, 10])["memory"] == max(100 * (8 + 48), 100 * 48 + 25 * 48)


def test_differentiable_costs_equal_the_exact_ones_at_hard_indicators():
    space = get_space("small", width=0.5)
    tables = cost_tables(space)
    rng = random.Random(1)
    for _ in range(5):
        arch = random_arch(space, rng)
        weights = op_mixture(_indicators(arch))
        for measure in MEASURES:
            table = tables[measure]
            assert table.differentiable(weights, table.tensor()).item() == pytest.approx(table.of(arch.ops), rel=1e-12)


def test_smallest_is_what_the_cheapest_network_costs():
    space = get_space("small", width=0.5)
    tables = cost_tables(space)
    cheapest = tuple(SKIP if l.skippable else "k3e3" for l in space.layers())
    for measure in MEASURES:
        assert tables[measure].smallest(space) == tables[measure].of(cheapest)
        assert tables[measure].of(uniform(space, "k5e6").ops) > tables[measure].smallest(space)


def _search(tmp_path, tiny_lut, *args):
    return subprocess.run([sys.executable, "-m", "spnas", "search", "--lut", str(tiny_lut), "--data",
                           "synthetic:320:1:16:4", "--width", "0.25", "--epochs", "3", "--batch-size", "16",
                           "--device", "cpu", "--indicator-scale", "init-norm", "--lr-per-256", "0.5", "--out",
                           str(tmp_path / "run"), *args], capture_output=True, text=True)


def test_a_search_with_max_params_lands_under_it(tmp_path, tiny_lut):
    space = get_space("small", width=0.25, input_size=16, num_classes=4)
    limit = 150_000  # between the smallest network (110,948) and uniform k3e3 (193,676)
    out = _search(tmp_path, tiny_lut, "--max-params", str(limit), "--target-ms", "0.8")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    arch = Architecture.from_string(summary["arch"])
    assert arch_costs(space, arch.ops)["params"] <= limit and summary["costs"]["params"] <= limit
    assert summary["predicted_ms"] <= 0.8 and summary["budgets"]["params"]["limit"] == limit
    assert summary["bound_by"] in ("latency", "params")
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("budgets", {}).get("params", {}).get("lambda", 0) > 0 for r in records)  # its controller pushed


def test_a_budget_no_network_meets_is_refused_before_anything_runs(tmp_path, tiny_lut):
    out = _search(tmp_path, tiny_lut, "--max-memory", "100")
    assert out.returncode == 2 and "--max-memory 100: no network of the space is that small" in out.stderr
    assert "its smallest reaches 32,768 bytes" in out.stderr and not (tmp_path / "run").exists()


def test_arch_show_prints_all_four_figures(tiny_lut):
    arch = "small:" + ",".join(["k3e3"] * 20)
    out = subprocess.run([sys.executable, "-m", "spnas", "arch", "show", arch, "--width", "0.25", "--input-size",
                          "16", "--num-classes", "4", "--lut", str(tiny_lut), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    space = get_space("small", width=0.25, input_size=16, num_classes=4)
    costs = arch_costs(space, tuple(["k3e3"] * 20))
    assert (shown["params"], shown["macs"], shown["memory_bytes"]["float32"]) == (costs["params"], costs["macs"],
                                                                                  costs["memory"])
    assert shown["predicted_ms"] > 0
