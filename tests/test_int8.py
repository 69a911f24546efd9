"""INT8: tables timed on statically quantized layers (what INT8 deployments run), INT8 exports with their
accuracy beside the float model's, and float and INT8 tables never mixed up."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from spnas.data.datasets import load_data
from spnas.data.loader import eval_source
from spnas.deploy.onnx_io import onnx_bytes
from spnas.deploy.quantize import ActivationSamples, ModelFormat, int8_format, quantize
from spnas.errors import SpnasError
from spnas.latency.backends import get_backend
from spnas.latency.device_profiler import Protocol
from spnas.latency.lut import LatencyTable
from spnas.latency.parts import layer_parts
from spnas.latency.profile import profile_space
from spnas.model.space import get_space

DATA = "synthetic:256:1:16:4"


@pytest.fixture(scope="module")
def space():
    return get_space("small", width=0.25, input_size=16, num_classes=4)


@pytest.fixture(scope="module")
def int8(space):
    return int8_format(space, DATA, None, images=16)


def _ops(model: bytes) -> set[str]:
    return {n.op_type for n in onnx.load_from_string(model).graph.node}


def _plain_loop_ms(models: dict[str, bytes], shapes: dict[str, list[int]], tmp_path) -> dict[str, float]:
    """Each model timed by hand in a fresh process that imports nothing but onnxruntime and numpy (torch's
    busy threads in this one would compete with it): a plain loop, the median of 2,000 runs."""
    for key, model in models.items():
        (tmp_path / f"{key.replace('/', '_')}.onnx").write_bytes(model)
    script = """
import json, statistics, sys, time
import numpy as np, onnxruntime as ort
out = {}
for key, shape in json.loads(sys.argv[2]).items():
    options = ort.SessionOptions(); options.intra_op_num_threads = 1
    s = ort.InferenceSession(sys.argv[1] + "/" + key.replace("/", "_") + ".onnx", options, providers=["CPUExecutionProvider"])
    x = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(200): s.run(None, x)
    t = []
    for _ in range(2000):
        a = time.perf_counter(); s.run(None, x); t.append((time.perf_counter() - a) * 1e3)
    out[key] = statistics.median(t)
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), json.dumps(shapes)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def test_activation_samples_hold_every_layer_input_and_refuse_other_images(space):
    samples = ActivationSamples.from_images(space, torch.randn(4, 1, 16, 16), "test")
    for part in layer_parts(space):
        got = samples.samples(part.input_shape)
        assert len(got) == 4 and got[0].shape == tuple(part.input_shape)
    with pytest.raises(SpnasError, match="give --calibration-data with images of the space's input"):
        ActivationSamples.from_images(space, torch.randn(4, 3, 16, 16), "colour")


def test_an_int8_table_times_quantized_layers_as_timing_them_by_hand_does(tmp_path):
    space = get_space("small", width=1.0)  # layers large enough to time well above the noise
    fmt = int8_format(space, "synthetic:256:1:28:10", None, images=16)
    lut = profile_space(space, get_backend("onnxruntime-cpu", 1, fmt), Protocol(warmup=5, repeats=20))
    assert lut.precision == "int8" and lut.quantization["format"] == "QDQ"
    assert lut.quantization["calibration_data"] == {"data": "synthetic:256:1:28:10", "data_dir": None, "images": 16}
    parts = {p.key: p for p in layer_parts(space)}
    keys = ("L0/k5e6", "L4/k3e3")
    models = {key: fmt.onnx(parts[key].module, parts[key].input_shape) for key in keys}
    for model in models.values():
        assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(model)  # what the table timed is quantized
    by_hand = _plain_loop_ms(models, {key: parts[key].input_shape for key in keys}, tmp_path)
    for key in keys:
        layer, op = int(key[1:].split("/")[0]), key.split("/")[1]
        timed = lut.layers[layer][op] + lut.constant_parts["overhead"]  # the part's own median, as timed
        assert timed == pytest.approx(by_hand[key], rel=0.5)  # the test's timing tolerance


def test_float_and_int8_tables_are_never_mixed_up(tmp_path, space, int8):
    lut = profile_space(space, get_backend("onnxruntime-cpu", 1, ModelFormat()), Protocol(warmup=1, repeats=3))
    assert lut.precision == "float32"
    with pytest.raises(SpnasError, match="a float32 latency table, but this needs a int8 one"):
        lut.require_precision("int8")
    path = tmp_path / "float.json"
    lut.save(path)
    assert LatencyTable.load(path).precision == "float32"
    out = subprocess.run([sys.executable, "-m", "spnas", "run", "--preset", "smoke", "--precision", "int8", "--lut",
                          str(path), "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert out.returncode == 2 and "float32 latency table, but this needs a int8 one" in out.stderr
    with pytest.raises(SpnasError, match="times float32 models only"):
        get_backend("torch-cpu", 1, int8)


def test_int8_export_runs_and_its_logits_follow_the_float_models(tmp_path):
    from spnas.train.config import TrainConfig
    from spnas.train.loop import load_model, run_train

    run_train(TrainConfig(arch="uniform-k3e3", data=DATA, width=0.25, epochs=4, batch_size=16, out=str(tmp_path / "t"),
                          device="cpu"))
    out = subprocess.run([sys.executable, "-m", "spnas", "export", str(tmp_path / "t"), "--int8", "--calibration-images",
                          "64", "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "test top-1 through onnxruntime: float" in out.stdout
    model = (tmp_path / "m.onnx").read_bytes()
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(model)
    meta = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    assert json.loads(meta["precision"]) == "int8" and json.loads(meta["calibration_images"]) == 64
    net, blob = load_model(tmp_path / "t")
    data = load_data(DATA, val_fraction=0.0)
    data = dataclasses.replace(data, mean=tuple(blob["data"]["mean"]), std=tuple(blob["data"]["std"]))
    x = torch.cat([x for x, _ in eval_source(data, data.test).epoch_batches(0)])  # images as the model sees them
    with torch.no_grad():
        want = net(x).numpy()
    got = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    # the quantization error this test allows (a net of 16 px trained for 4 epochs, its logits close together):
    # on average under 0.3 of the logits' spread, and the top-1 class kept for 70% of the images
    assert np.abs(got - want).mean() <= 0.3 * want.std()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.7


def test_quantize_refuses_nothing_to_calibrate_on():
    with pytest.raises(SpnasError, match="needs calibration samples"):
        quantize(onnx_bytes(torch.nn.Conv2d(1, 2, 3), [1, 1, 8, 8]), [])
