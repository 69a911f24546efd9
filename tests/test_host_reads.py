"""A step that writes no log line reads the device at most once (in a search's landing window) and
launches few ops: counted exactly on the CPU around the real CLI (spnas.jobs.opcount), as on a GPU each
read stalls the host until the device drains and each op is a kernel launch."""

from __future__ import annotations

import pytest

from spnas.cli.main import main
from spnas.jobs.opcount import StepCounter
from spnas.latency.synthetic import synthetic_table
from spnas.model.space import get_space

STEPS, BATCH, LOG_EVERY = 16, 32, 5
#: the issue's scale: the small space at width 0.25, 28 px, batch 32 (bench/launches.py counts the same)
COMMON = ["--data", f"synthetic:{STEPS * BATCH * 10 // 9 + 2}:1:28:10", "--train-subset", str(STEPS * BATCH),
          "--batch-size", str(BATCH), "--epochs", "1", "--width", "0.25", "--device", "cpu", "--log-every",
          str(LOG_EVERY)]
#: ops per quiet step: what bench/launches.py measured (1,440 and 934), with room for the data pipeline
OP_LIMITS = {"single-path": 3000, "train": 1000}


@pytest.fixture(scope="module")
def lut(tmp_path_factory):
    path = tmp_path_factory.mktemp("lut") / "lut.json"
    synthetic_table(get_space("small", width=0.25)).save(path)
    return str(path)


def _count(argv: list[str]) -> list[dict]:
    with StepCounter(where=True) as counter:
        assert main(argv) == 0
    rows = counter.steps()
    assert len(rows) == STEPS
    return rows


def _quiet(rows: list[dict]) -> list[dict]:
    """Steps that write no metrics line (the search also logs its last step)."""
    return [r for r in rows if r["step"] % LOG_EVERY and r["step"] != STEPS - 1]


@pytest.mark.parametrize("method", ["single-path", "multipath", "random"])
def test_a_search_step_reads_the_device_at_most_once(tmp_path, lut, method):
    extra = ["--candidates", "2"] if method == "random" else []
    rows = _count(["search", "--lut", lut, "--target-ms", "1.3", "--method", method, *extra, *COMMON,
                   "--out", str(tmp_path / "run")])
    quiet = _quiet(rows)
    assert quiet and all(r["reads"] <= 1 for r in quiet), [(r["step"], r["read_at"]) for r in quiet if r["reads"] > 1]
    if method == "single-path":
        window = [r for r in quiet if r["reads"] == 1]
        assert window and all(r["step"] >= STEPS - 3 for r in window)  # only the landing window reads
        assert max(r["ops"] for r in quiet) <= OP_LIMITS["single-path"]


def test_a_training_step_reads_nothing_and_launches_under_a_thousand_ops(tmp_path):
    rows = _count(["train", "uniform-k5e6", "--space", "small", *COMMON, "--out", str(tmp_path / "run")])
    quiet = [r for r in rows if r["step"] % LOG_EVERY]
    assert all(r["reads"] == 0 for r in quiet), [(r["step"], r["read_at"]) for r in quiet if r["reads"]]
    assert max(r["ops"] for r in quiet) <= OP_LIMITS["train"]
