import json
import random

import pytest
import torch

from conftest import random_arch
from spnas.model.arch import resolve_arch, uniform
from spnas.errors import SpnasError
from spnas.latency.lut import Calibration, LatencyTable, import_pixel1, lut_from_stats
from spnas.latency.parts import all_parts
from spnas.latency.predict import differentiable_ms, predict_ms
from spnas.nn.superkernel import Decision
from spnas.model.space import get_space


@pytest.fixture
def pixel1(pixel1_table_path):
    return import_pixel1(pixel1_table_path, get_space("imagenet"))


def indicators_of(arch):
    return torch.tensor([[d.k5, d.e3, d.e6] for d in map(Decision.from_op, arch.ops)], dtype=torch.float32)


def test_published_numbers_from_the_pixel1_table(pixel1):
    space = get_space("imagenet")
    arch = resolve_arch("spnas-pixel1")
    assert predict_ms(pixel1, arch) == pytest.approx(80.44, abs=0.005)
    assert differentiable_ms(pixel1, indicators_of(arch), "exact").item() == pytest.approx(80.44, abs=0.005)
    assert differentiable_ms(pixel1, indicators_of(arch), "paper").item() == pytest.approx(80.59, abs=0.005)
    k5e6 = uniform(space, "k5e6")
    assert predict_ms(pixel1, k5e6) == pytest.approx(131.46, abs=0.005)
    assert differentiable_ms(pixel1, indicators_of(k5e6), "paper").item() == pytest.approx(131.46, abs=0.005)
    assert predict_ms(pixel1, uniform(space, "k3e3")) == pytest.approx(65.69, abs=0.005)


def test_differentiable_equals_discrete_for_random_decisions(pixel1):
    space = get_space("imagenet")
    rng = random.Random(1)
    for _ in range(50):
        arch = random_arch(space, rng)
        got = differentiable_ms(pixel1, indicators_of(arch), "exact").item()
        assert got == pytest.approx(predict_ms(pixel1, arch), rel=1e-6)


def test_paper_formula_matches_exact_when_its_ratio_assumption_holds(pixel1):
    """The paper formula predicts k3e3 as k5e3 * k3e6/k5e6: exact only where that ratio holds."""
    lut = LatencyTable(**{**pixel1.__dict__, "layers": [dict(r) for r in pixel1.layers]})
    for row in lut.layers:
        row["k3e3"] = row["k5e3"] * row["k3e6"] / row["k5e6"]
    space = get_space("imagenet")
    rng = random.Random(2)
    for _ in range(20):
        arch = random_arch(space, rng)
        paper = differentiable_ms(lut, indicators_of(arch), "paper").item()
        assert paper == pytest.approx(predict_ms(lut, arch), rel=1e-5)


def test_latency_gradient_reaches_every_threshold(supernet, small_space):
    stats = {p.key: {"median": 1.0 + i * 0.01, "iqr": 0.0} for i, p in enumerate(all_parts(small_space))}
    info = {"backend": "t", "runtime": "r", "runtime_version": "0", "threads": 1}
    lut = lut_from_stats(small_space, stats, info, {})
    ms = differentiable_ms(lut, supernet.current_indicators())
    ms.backward()
    skippable = [l.skippable for l in small_space.layers()]
    for i, block in enumerate(supernet.searchable_blocks()):
        sk = block.superkernel
        assert sk.t_k5.grad.abs() > 0 and sk.t_e6.grad.abs() > 0
        e3_moves = sk.t_e3.grad is not None and bool(sk.t_e3.grad.abs() > 0)
        assert e3_moves == skippable[i]  # unskippable layers have a constant d_e3
    # raising a threshold lowers latency: gradient wrt thresholds is negative
    assert all(block.superkernel.t_k5.grad < 0 for block in supernet.searchable_blocks())


def test_calibration_applies_to_both_predictions(pixel1):
    arch = resolve_arch("spnas-pixel1")
    pixel1.calibration = Calibration(a=2.0, b=1.0)
    assert predict_ms(pixel1, arch) == pytest.approx(2 * 80.4411 + 1, abs=1e-3)
    assert predict_ms(pixel1, arch, calibrated=False) == pytest.approx(80.4411, abs=1e-3)
    assert differentiable_ms(pixel1, indicators_of(arch)).item() == pytest.approx(2 * 80.4411 + 1, abs=1e-3)


def test_the_per_present_layer_term_counts_layers_that_are_not_skipped(pixel1):
    arch = resolve_arch("spnas-pixel1")
    present = sum(op != "skip" for op in arch.ops)
    assert 0 < present < len(arch.ops)  # the published net skips some layers
    pixel1.calibration = Calibration(a=1.0, b=0.5, per_present_layer=[0.25] * len(arch.ops))
    assert predict_ms(pixel1, arch) == pytest.approx(80.4411 + 0.5 + 0.25 * present, abs=1e-3)
    assert differentiable_ms(pixel1, indicators_of(arch)).item() == pytest.approx(predict_ms(pixel1, arch), abs=1e-3)
    terms = [0.01 * i for i in range(len(arch.ops))]  # a term per layer: only the present ones count
    pixel1.calibration = Calibration(a=1.0, b=0.5, per_present_layer=terms)
    expected = 80.4411 + 0.5 + sum(t for t, op in zip(terms, arch.ops) if op != "skip")
    assert predict_ms(pixel1, arch) == pytest.approx(expected, abs=1e-3)
    assert differentiable_ms(pixel1, indicators_of(arch)).item() == pytest.approx(expected, abs=1e-3)


def test_the_op_terms_count_present_5x5_and_e6_layers_alike_in_every_prediction(pixel1):
    arch = resolve_arch("spnas-pixel1")
    k5 = sum(op.startswith("k5") for op in arch.ops)
    e6 = sum(op.endswith("e6") for op in arch.ops)
    assert 0 < k5 < len(arch.ops) and 0 < e6 < len(arch.ops)
    pixel1.calibration = Calibration(a=1.0, b=0.5, per_present_layer=[0.25] * len(arch.ops), per_k5_layer=0.125,
                                     per_e6_layer=-0.0625)
    present = sum(op != "skip" for op in arch.ops)
    expected = 80.4411 + 0.5 + 0.25 * present + 0.125 * k5 - 0.0625 * e6
    assert predict_ms(pixel1, arch) == pytest.approx(expected, abs=1e-3)
    assert differentiable_ms(pixel1, indicators_of(arch)).item() == pytest.approx(expected, abs=1e-3)
    assert differentiable_ms(pixel1, indicators_of(arch), formula="paper").item() == pytest.approx(
        differentiable_ms(pixel1, indicators_of(arch), formula="paper", calibrated=False).item() + expected - 80.4411,
        abs=1e-3)  # the same terms whatever the formula


def test_the_curvature_applies_to_the_plain_sum_in_every_prediction(pixel1):
    arch = resolve_arch("spnas-pixel1")
    pixel1.calibration = Calibration(a=1.2, b=0.5, per_present_layer=[0.25] * len(arch.ops), q=-0.001)
    present = sum(op != "skip" for op in arch.ops)
    expected = 1.2 * 80.4411 - 0.001 * 80.4411 ** 2 + 0.5 + 0.25 * present
    assert predict_ms(pixel1, arch) == pytest.approx(expected, abs=1e-3)
    assert differentiable_ms(pixel1, indicators_of(arch)).item() == pytest.approx(expected, abs=1e-2)  # float32


@pytest.mark.parametrize("q, ok", [(-0.001, True), (-0.02, False)])
def test_a_curvature_that_makes_a_larger_net_predict_faster_anywhere_in_the_space_is_refused(pixel1, tmp_path, q, ok):
    # the Pixel 1 space spans 31-131 ms of entries: a + 2q·ms > 0 throughout for q=-0.001, not for -0.02
    pixel1.calibration = Calibration(a=1.2, b=0.5, q=q)
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(pixel1.to_dict()))
    if ok:
        assert LatencyTable.load(path).calibration.q == q
    else:
        with pytest.raises(SpnasError, match=r"field 'calibration.a' must be > 0 .*'calibration.q' -0.02"):
            LatencyTable.load(path)


def test_the_calibration_fit_recovers_per_stage_and_op_overheads_and_falls_back_when_it_cannot():
    import numpy as np

    from spnas.latency.lut import op_weights
    from spnas.latency.validate import fit_calibration

    rng = np.random.default_rng(0)
    stages = [0, 0, 1, 1, 1, 2]  # 6 layers in 3 stages; the first layer of each stage always present
    choices = ("k3e3", "k3e6", "k5e3", "k5e6", "skip")
    nets = [[choices[i] for i in rng.integers(0, 5, 6)] for _ in range(40)]
    for ops in nets:
        for always in (0, 2, 5):  # stage 2 never varies: no term of its own
            ops[always] = ops[always] if ops[always] != "skip" else "k3e3"
    weights = np.array([op_weights(ops) for ops in nets])
    predicted = rng.uniform(0.2, 0.6, 40)
    overhead = np.array([0.004, 0.004, -0.002, -0.002, -0.002, 0.0])  # the same within a stage
    k5 = weights[:, :, 2:].sum((1, 2))
    e6 = weights[:, :, [1, 3]].sum((1, 2))
    measured = 1.1 * predicted + 0.05 + weights.sum(-1) @ overhead + 0.003 * k5 - 0.001 * e6
    fit = fit_calibration(predicted, measured, weights, stages)
    assert (fit.a, fit.b, fit.per_k5_layer, fit.per_e6_layer) == pytest.approx((1.1, 0.05, 0.003, -0.001), abs=1e-9)
    assert fit.per_present_layer == pytest.approx([0.004, 0.004, -0.002, -0.002, -0.002, 0.0], abs=1e-9)
    assert fit.apply(predicted, weights) == pytest.approx(measured)
    stages_only = fit_calibration(predicted, measured, weights, stages, op_terms=False)
    assert (stages_only.per_k5_layer, stages_only.per_e6_layer) == (0.0, 0.0) and "per present 5x5" not in stages_only.note
    few = fit_calibration(predicted[:10], measured[:10], weights[:10], stages)  # 10 nets: too few for 4 terms
    assert "each stage" in few.note and (few.per_k5_layer, few.per_e6_layer) == (0.0, 0.0)
    fewer = fit_calibration(predicted[:6], measured[:6], weights[:6], stages)  # 6 nets: too few for 2 stage terms
    assert "one term per present layer" in fewer.note and len(set(fewer.per_present_layer)) == 1
    assert len(fewer.per_present_layer) == 6
    uniform = np.array([op_weights(["k3e3"] * 6)] * 40)
    affine = fit_calibration(predicted, 1.1 * predicted + 0.05, uniform, stages)
    assert (affine.a, affine.b, affine.per_present_layer) == pytest.approx((1.1, 0.05, []))


def test_the_calibration_fit_recovers_the_curvature_and_drops_one_that_would_turn_the_curve_down():
    import numpy as np

    from spnas.latency.lut import op_weights
    from spnas.latency.validate import fit_calibration

    rng = np.random.default_rng(1)
    stages = [0, 0, 1, 1]
    choices = ("k3e3", "k3e6", "k5e3", "k5e6", "skip")
    nets = [[choices[i] for i in rng.integers(0, 4, 1)] + [choices[i] for i in rng.integers(0, 5, 3)] for _ in range(40)]
    weights = np.array([op_weights(ops) for ops in nets])
    predicted = rng.uniform(0.15, 0.5, 40)
    k5 = weights[:, :, 2:].sum((1, 2))
    # sub-linear in the sum, as every validation of BENCHMARKS.md at 061b308, §10 measured
    measured = 1.4 * predicted - 0.75 * predicted ** 2 - 0.03 + 0.004 * weights.sum(-1) @ [1, 1, 0, 0] + 0.002 * k5
    fit = fit_calibration(predicted, measured, weights, stages)
    assert (fit.a, fit.q, fit.b, fit.per_k5_layer) == pytest.approx((1.4, -0.75, -0.03, 0.002), abs=1e-9)
    assert "square of the sum" in fit.note and fit.apply(predicted, weights) == pytest.approx(measured)
    assert fit_calibration(predicted, measured, weights, stages, curvature=False).q == 0.0
    # rising over the fitted nets (0.15-0.5 ms) but not over a space reaching 1.0 ms, where its slope is < 0:
    # dropped, as a table whose space spans that far would refuse it on loading
    assert fit_calibration(predicted, measured, weights, stages, extent=(0.1, 0.9)).q == pytest.approx(-0.75)
    assert fit_calibration(predicted, measured, weights, stages, extent=(0.1, 1.0)).q == 0.0
    # a fit whose curve would fall between the fitted nets (a larger net predicted faster) keeps no q
    turning = predicted - 1.5 * predicted ** 2 + 0.5
    flat = fit_calibration(predicted, turning, weights, stages)
    assert flat.q == 0.0 and "square of the sum" not in flat.note and flat.a > 0


def test_stratified_validation_nets_span_the_range_from_smallest_to_largest():
    from spnas.latency.validate import sample_architectures

    space = get_space("small")
    skippable = sum(layer.skippable for layer in space.layers())
    archs = sample_architectures(space, 40, seed=0)
    skips = sorted(a.ops.count("skip") for a in archs)
    assert skips[0] == 0 and skips[-1] == skippable and len(set(skips)) >= skippable * 2 // 3
    ops = {a.ops for a in archs}
    assert tuple("k5e6" for _ in space.layers()) in ops  # the largest network
    assert any(set(a.ops) == {"k3e3", "skip"} and a.ops.count("skip") == skippable for a in archs)  # the smallest
    uniform_skips = [a.ops.count("skip") for a in sample_architectures(space, 40, seed=0, sampling="uniform")]
    assert max(uniform_skips) < skippable * 2 // 3  # what stratifying fixes: uniform draws stay mid-range


def test_lut_refuses_other_spaces(pixel1, tmp_path):
    pixel1.check(get_space("imagenet"))
    with pytest.raises(SpnasError, match="field 'space' is 'imagenet'"):
        pixel1.check(get_space("small"))
    with pytest.raises(SpnasError, match="field 'input_size' is 224"):
        pixel1.check(get_space("imagenet", input_size=192))
    with pytest.raises(SpnasError, match="field 'space_fingerprint'"):
        pixel1.check(get_space("imagenet", num_classes=10))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("constant_ms"), "field 'constant_ms' is missing"),
        (lambda d: d["layers"][3].pop("k5e3"), r"layers\[3\] has no entry for 'k5e3'"),
        (lambda d: d["layers"][0].update(k3e3="fast"), r"layers\[0\].k3e3 must be a finite number"),
        (lambda d: d.update(format="other"), "field 'format'"),
    ],
)
def test_corrupt_lut_files_give_one_line(pixel1, tmp_path, mutate, message):
    data = pixel1.to_dict()
    mutate(data)
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpnasError, match=message):
        LatencyTable.load(path)


def test_lut_file_round_trip(pixel1, tmp_path):
    pixel1.calibration = Calibration(1.1, -0.2, 10, per_present_layer=[0.003 * i for i in range(len(pixel1.layers))],
                                     per_k5_layer=0.01, per_e6_layer=-0.02, q=-0.0005)
    pixel1.save(tmp_path / "l.json")
    back = LatencyTable.load(tmp_path / "l.json")
    assert back == pixel1
    assert back.search_space() == get_space("imagenet")


def test_a_table_with_an_earlier_versions_one_term_predicts_as_it_did(pixel1, tmp_path):
    arch = resolve_arch("spnas-pixel1")
    data = pixel1.to_dict()
    data["calibration"] = {"a": 1.1, "b": -0.2, "fitted_on": 10, "note": "", "per_layer": 0.003}
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = LatencyTable.load(tmp_path / "old.json")
    present = sum(op != "skip" for op in arch.ops)
    raw = predict_ms(pixel1, arch, calibrated=False)
    assert predict_ms(old, arch) == pytest.approx(1.1 * raw - 0.2 + 0.003 * present)
    assert old.calibration.per_present_layer == [0.003] * len(pixel1.layers)


def test_warm_protocol_times_each_model_with_its_own_caches_and_cold_does_not():
    from spnas.latency.device_profiler import Protocol, measure_interleaved

    last = {"key": None}

    def fake_model(key: str):
        def run() -> float:  # 2 ms when another model ran just before (evicted caches), else 1 ms
            ms = 1.0 if last["key"] == key else 2.0
            last["key"] = key
            return ms
        return run

    runners = {k: fake_model(k) for k in "abc"}
    warm = measure_interleaved(runners, Protocol(warmup=1, repeats=20, burst=3))
    cold = measure_interleaved(runners, Protocol(warmup=1, repeats=20, cache="cold"))
    assert all(s.median == 1.0 and s.n == 60 for s in warm.values())
    assert all(s.median == 2.0 and s.n == 20 for s in cold.values())
    with pytest.raises(ValueError, match="cache"):
        Protocol(cache="lukewarm")


def test_a_table_that_could_not_be_loaded_back_is_never_written(tmp_path):
    from conftest import fake_lut
    from spnas.latency.lut import Calibration
    from spnas.model.space import get_space

    lut = fake_lut(get_space("small", width=0.25, input_size=16, num_classes=4))
    lut.calibration = Calibration(a=-0.5, b=0.1)  # a fit to pure noise
    with pytest.raises(SpnasError, match=r"lut.json \(not written\): field 'calibration.a' must be > 0"):
        lut.save(tmp_path / "lut.json")
    assert not (tmp_path / "lut.json").exists()
