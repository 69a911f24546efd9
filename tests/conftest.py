from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from spnas.model.arch import Architecture
from spnas.nn.network import SinglePathNet
from spnas.model.space import get_space

SHARED = Path(__file__).resolve().parents[2] / "shared"
PIXEL1_TABLE = SHARED / "data" / "pixel1_runtime_model.json"


def random_arch(space, rng: random.Random) -> Architecture:
    return Architecture(space.name, tuple(rng.choice(l.candidates) for l in space.layers()))


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so that folding mistakes show up in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Jobs set torch's thread count from their config; give it back so tests do not leak it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_space():
    return get_space("small", width=0.35)


@pytest.fixture
def supernet(small_space):
    torch.manual_seed(0)
    net = SinglePathNet(small_space)
    randomize_batchnorm(net)
    return net


@pytest.fixture
def pixel1_table_path():
    if not PIXEL1_TABLE.exists():
        pytest.skip("../shared/data/pixel1_runtime_model.json is not beside the checkout")
    return PIXEL1_TABLE


def fake_lut(space, base: float = 0.1):
    """A LUT with plausible structure (k5 > k3, e6 > e3, wider layers cost more), no measuring."""
    from spnas.latency.synthetic import synthetic_table

    return synthetic_table(space, base)


@pytest.fixture(scope="session")
def tiny_lut(tmp_path_factory) -> Path:
    """A fake LUT file for the tiny test space (synthetic 16 px, 4 classes, width 0.25)."""
    from spnas.model.space import get_space

    path = tmp_path_factory.mktemp("lut") / "lut.json"
    fake_lut(get_space("small", width=0.25, input_size=16, num_classes=4)).save(path)
    return path
