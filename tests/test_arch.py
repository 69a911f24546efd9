import json
import re
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spnas.model.arch import ALL_OPS, Architecture, resolve_arch
from spnas.errors import SpnasError
from spnas.model.space import get_space

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
    archs = [random_arch(space, rng) for _ in range(20)]
    for arch in archs:
        assert arch.validate(space) is arch and len(arch.ops) == len(space.layers())
    assert len({a.ops for a in archs}) == 20  # random, not one net repeated
    assert any("skip" in a.ops for a in archs) and all(a.ops[0] != "skip" for a in archs)  # skips only where allowed


def test_canonical_form_puts_each_stages_skips_last_and_keeps_the_op_order():
    raw = Architecture.from_string("small:k5e6,skip,k3e3,skip|k5e6,skip,skip,k3e6|k3e3,k3e3,k3e3,k3e3|"
                                   "k3e3,skip,k5e3,k3e6|k5e6,k5e6,skip,k5e6")
    assert raw.canonical().to_string() == ("small:k5e6,k3e3,skip,skip|k5e6,k3e6,skip,skip|k3e3,k3e3,k3e3,k3e3|"
                                           "k3e3,k5e3,k3e6,skip|k5e6,k5e6,k5e6,skip")
    assert raw.canonical().canonical() == raw.canonical()
    assert raw.canonical().counts() == raw.counts()
    same = Architecture.from_string("small:k5e6,k3e3,skip,skip|k5e6,skip,k3e6,skip|k3e3,k3e3,k3e3,k3e3|"
                                    "k3e3,k5e3,skip,k3e6|k5e6,k5e6,k5e6,skip")
    assert same.canonical() == raw.canonical()  # two encodings of one network say so


def test_the_distinct_network_count_matches_enumeration_of_one_stage():
    space = get_space("small")
    rest = ("k3e3",) * 16
    stage_ops = ("k3e3", "k3e6", "k5e3", "k5e6")
    encodings = [(a, b, c, d) for a in stage_ops for b in ALL_OPS for c in ALL_OPS for d in ALL_OPS]
    distinct = {Architecture("small", ops + rest).canonical() for ops in encodings}
    assert len(encodings) == 4 * 5 ** 3 and len(distinct) == 4 * (1 + 4 + 16 + 64)
    encoded, networks = space.network_count()
    assert encoded == (4 * 5 ** 3) ** 5 and networks == len(distinct) ** 5


def test_an_architecture_and_its_canonical_form_compute_the_same_function():
    import torch

    from spnas.nn.network import SinglePathNet

    space = get_space("small", width=0.25, input_size=16, num_classes=4)
    raw = Architecture.from_string("small:k5e6,skip,k3e3,skip|k5e6,skip,skip,k3e6|k3e3,k3e3,k3e3,k3e3|"
                                   "k3e3,skip,k5e3,k3e6|k5e6,k5e6,skip,k5e6")
    torch.manual_seed(0)
    a, b = SinglePathNet(space, raw).eval(), SinglePathNet(space, raw.canonical()).eval()
    names = lambda net: [n for n, _ in net.layers.named_children()]
    assert names(a) != names(b)  # the layers sit at other positions...
    for src, dst in zip(a.layers, b.layers):  # ...but are the same modules in the same order
        dst.load_state_dict(src.state_dict())
    missing, unexpected = b.load_state_dict(
        {k: v for k, v in a.state_dict().items() if not k.startswith("layers.")}, strict=False)
    assert not unexpected and missing and all(k.startswith("layers.") for k in missing)
    x = torch.randn(3, 1, 16, 16)
    assert torch.equal(a(x), b(x))
