import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from spnas.jobs.engine import Interrupted
from spnas.errors import SpnasError
from spnas.deploy.export import export_model
from spnas.train.config import TrainConfig
from spnas.train.loop import load_model, run_train

ARCH = "small:k3e3,k5e6,skip,k3e6|k5e3,k3e3,skip,skip|k3e6,k3e3,k3e3,k3e3|k5e6,skip,k3e3,k3e3|k3e3,k3e3,k3e3,skip"


def cfg(tmp_path, name, **kw):
    base = dict(arch=ARCH, data="synthetic:256:1:16:4", width=0.25, epochs=2, batch_size=32,
                out=str(tmp_path / name), log_every=1)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    return run_train(cfg(tmp, "run", epochs=4, data="synthetic:1024:1:16:4"))


def test_training_learns_and_reports(trained):
    m = trained.metrics
    assert m["test_top1"] > 0.4  # 4 learnable classes, chance is 0.25
    assert {"test_top1_raw", "test_top1_ema", "test_top5", "exported"} <= set(m)
    results = json.loads((trained.run_dir / "results.json").read_text())
    assert results["arch"] == ARCH


def test_onnx_export_matches_pytorch_and_records_metadata(trained, tmp_path):
    net, meta = load_model(trained.run_dir)
    info = export_model(net, meta, "onnx", tmp_path / "m.onnx")
    assert info["max_abs_diff"] < 1e-4
    model = onnx.load(tmp_path / "m.onnx")
    props = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert props["arch"] == ARCH and props["input_size"] == 16 and len(props["classes"]) == 4
    assert len(props["mean"]) == 1
    x = torch.randn(5, 1, 16, 16)  # dynamic batch, independent check
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - net(x).numpy()).max() < 1e-4


def test_saved_model_carries_batchnorm_statistics_of_its_final_weights(trained):
    """The quick recipe re-estimates BN statistics: re-estimating them again on the same batches
    must change nothing, whereas the running averages of training would differ."""
    from spnas.data.datasets import load_data
    from spnas.data.loader import train_source
    from spnas.jobs.evaluate import reestimate_batchnorm

    net, meta = load_model(trained.run_dir)
    assert meta["metrics"]["precise_bn_batches"] == 50
    conf = json.loads((trained.run_dir / "config.json").read_text())
    data = load_data(conf["data"], None, conf["val_fraction"], conf["seed"], conf["train_subset"])
    saved = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    reestimate_batchnorm(net, train_source(data, conf["batch_size"], conf["seed"] + 1), 50)
    for key, value in saved.items():
        torch.testing.assert_close(net.state_dict()[key], value, rtol=1e-4, atol=1e-5)
    checkpoint = torch.load(trained.run_dir / "checkpoint.pt", weights_only=True)
    running = checkpoint["model"] if meta["metrics"]["exported"] == "raw" else \
        {k.removeprefix("module."): v for k, v in checkpoint["ema"].items()}
    lagging = [k for k in saved if not torch.allclose(running[k], saved[k], rtol=1e-2, atol=1e-3)]
    assert lagging, "the saved statistics are just the running averages"


def test_torchscript_export(trained, tmp_path):
    net, meta = load_model(trained.run_dir)
    export_model(net, meta, "torchscript", tmp_path / "m.pt")
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-5)


def test_resumed_training_equals_uninterrupted(tmp_path):
    full = run_train(cfg(tmp_path, "full"))
    with pytest.raises(Interrupted):
        run_train(cfg(tmp_path, "part", max_steps=9))
    conf_path = tmp_path / "part" / "config.json"
    conf = json.loads(conf_path.read_text())
    conf["max_steps"] = None
    conf_path.write_text(json.dumps(conf))
    resumed = run_train(TrainConfig(), resume_dir=str(tmp_path / "part"))
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.metrics["test_top1"] == full.metrics["test_top1"]


def test_paper_recipe_resolves_spec_values():
    c = TrainConfig(arch=ARCH, recipe="paper").resolved()
    assert (c.optimizer, c.lr_per_256, c.warmup_epochs, c.lr_decay, c.lr_decay_epochs) == ("tf-rmsprop", 0.016, 5.0, 0.97, 2.4)
    assert (c.weight_decay, c.label_smoothing, c.ema_decay) == (1e-5, 0.1, 0.9999)
    assert c.precise_bn_batches == 0  # faithful: the running averages, as in the released code
    with pytest.raises(SpnasError, match="unknown recipe"):
        TrainConfig(arch=ARCH, recipe="magic").resolved()


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(SpnasError, match="no trained model"):
        load_model(tmp_path)
