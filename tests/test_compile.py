"""``--compile``: search and training run through torch.compile, and a compiled run stopped and resumed
ends bit for bit where an uninterrupted compiled run does (compiled on the CPU here; the first compile
takes a minute or two, later ones reuse torch's cache)."""

from __future__ import annotations

import json

import pytest
import torch

from spnas.jobs.engine import Interrupted
from spnas.latency.synthetic import synthetic_table
from spnas.model.space import get_space
from spnas.search.config import SearchConfig
from spnas.search.loop import run_search
from spnas.train.config import TrainConfig
from spnas.train.loop import run_train

DATA = "synthetic:320:1:16:4"
COMMON = dict(data=DATA, width=0.25, epochs=2, batch_size=16, val_fraction=0.2, device="cpu", compile=True)


def _search(tmp_path, name: str, **kw):
    lut = tmp_path / "lut.json"
    if not lut.exists():
        synthetic_table(get_space("small", width=0.25, input_size=16, num_classes=4)).save(lut)
    return run_search(SearchConfig(**{**COMMON, "lut": str(lut), "out": str(tmp_path / name), "log_every": 5,
                                      "eval_every_epoch": False, "warmup_fraction": 0.25, "lambda_": 1.0,
                                      "lr_per_256": 0.5, "indicator_scale": "init-norm", "target_ms": 0.8, **kw}))


def _train(tmp_path, name: str, **kw):
    return run_train(TrainConfig(**{**COMMON, "arch": "uniform-k3e6", "space": "small", "out": str(tmp_path / name),
                                    "precise_bn_batches": 2, **kw}))


def _resume(run_dir, job):
    conf = json.loads((run_dir / "config.json").read_text())
    conf["max_steps"] = None
    (run_dir / "config.json").write_text(json.dumps(conf))
    return job(resume_dir=str(run_dir))


@pytest.mark.parametrize("kind", ["search", "train"])
def test_a_compiled_run_resumes_bit_for_bit(tmp_path, kind):
    job = _search if kind == "search" else _train
    full = job(tmp_path, "full")
    with pytest.raises(Interrupted):
        job(tmp_path, "part", max_steps=11)  # mid-epoch: the resumed process compiles again
    part = tmp_path / "part"
    resumed = _resume(part, (lambda **kw: run_search(SearchConfig(), **kw)) if kind == "search"
                      else (lambda **kw: run_train(TrainConfig(), **kw)))
    assert resumed.arch == full.arch
    a = torch.load(part / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((part / "config.json").read_text())["compile"] is True
