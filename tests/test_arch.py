import json
import re
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spnas.arch import Architecture, resolve_arch
from spnas.errors import SpnasError
from spnas.space import get_space

SPACE_NAMES = ("imagenet", "small")


@st.composite
def architectures(draw):
    name = draw(st.sampled_from(SPACE_NAMES))
    space = get_space(name)
    ops = tuple(draw(st.sampled_from(l.candidates)) for l in space.layers())
    return Architecture(name, ops)


@settings(max_examples=200, deadline=None)
@given(architectures())
def test_any_valid_architecture_round_trips(arch):
    assert Architecture.from_string(arch.to_string()) == arch
    assert Architecture.from_string(arch.to_string(with_space=False), arch.space) == arch
    assert Architecture.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch


def test_file_round_trip(tmp_path):
    arch = resolve_arch("spnas-pixel1")
    arch.save(tmp_path / "a.json", latency_ms=80.44)
    assert resolve_arch(str(tmp_path / "a.json")) == arch


def test_published_architecture():
    arch = resolve_arch("spnas-pixel1")
    assert arch.space == "imagenet"
    assert arch.ops[:4] == ("k3e3", "k3e3", "k3e3", "skip")
    assert arch.ops[16:] == ("k5e6",) * 4
    assert arch.counts() == {"k3e3": 9, "k3e6": 0, "k5e3": 3, "k5e6": 7, "skip": 1}


@pytest.mark.parametrize(
    "text, message",
    [
        ("imagenet:k3e3,k3e3", "has 2 layers but space 'imagenet' has 20"),
        ("imagenet:" + ",".join(["skip"] + ["k3e3"] * 19), "layer 0 (stage 1): op 'skip' is not allowed"),
        ("imagenet:" + ",".join(["k3e3"] * 19 + ["k7e6"]), "layer 19: unknown op 'k7e6'"),
        ("nospace:k3e3", "unknown search space 'nospace'"),
    ],
)
def test_bad_strings_name_the_layer(text, message):
    with pytest.raises(SpnasError, match=re.escape(message)):
        Architecture.from_string(text)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpnasError, match="not valid JSON"):
        Architecture.load(bad)
    ops = ["k3e3"] * 20
    ops[8] = "skip"
    bad.write_text(json.dumps({"space": "imagenet", "ops": ops}))
    with pytest.raises(SpnasError, match=r"bad.json: layer 8 \(stage 3\).*allowed: k3e3, k3e6, k5e3, k5e6$"):
        Architecture.load(bad)


def test_random_arch_helper_is_valid():
    from conftest import random_arch

    space = get_space("small")
    rng = random.Random(0)
    for _ in range(20):
        random_arch(space, rng).validate(space)
