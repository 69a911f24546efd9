import json
import subprocess
import sys

import pytest

from spnas.latency.lut import LatencyTable


def spnas(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spnas", *args], capture_output=True, text=True, cwd=cwd)


def tiny_space_args():
    return ["--space", "small", "--width", "0.25", "--input-size", "16"]


def test_import_and_predict_pixel1(pixel1_table_path, tmp_path):
    lut = tmp_path / "pixel1.json"
    out = spnas("latency", "import-pixel1", str(pixel1_table_path), "--out", str(lut))
    assert out.returncode == 0, out.stderr
    out = spnas("latency", "predict", "spnas-pixel1", "--lut", str(lut), "--json")
    assert json.loads(out.stdout)["predicted_ms"] == pytest.approx(80.44, abs=0.005)


def test_corrupt_lut_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "lut.json"
    bad.write_text('{"format": "spnas-lut/1", "target": ')
    out = spnas("latency", "predict", "spnas-pixel1", "--lut", str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "corrupt LUT file" in out.stderr


def test_profile_measure_validate_on_this_machine(tmp_path):
    lut_path = tmp_path / "lut.json"
    out = spnas("latency", "profile", *tiny_space_args(), "--repeats", "5", "--warmup", "1", "--out", str(lut_path))
    assert out.returncode == 0, out.stderr
    lut = LatencyTable.load(lut_path)
    assert lut.backend == "onnxruntime-cpu" and lut.threads == 1 and lut.runtime_version
    assert lut.space_def["width"] == 0.25 and lut.input_size == 16
    assert all(v >= 0 for row in lut.layers for v in row.values())
    assert {"warmup", "repeats", "seed"} <= set(lut.protocol)
    # the k5e6 op costs more than k3e3 in the widest layers (real measurement, generous check)
    assert sum(r["k5e6"] for r in lut.layers) > sum(r["k3e3"] for r in lut.layers)

    out = spnas("latency", "measure", "uniform-k3e3", *tiny_space_args(), "--repeats", "5",
                "--lut", str(lut_path), "--json")
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)
    assert m["measured_ms"] > 0 and m["predicted_ms"] > 0

    val = tmp_path / "val"
    out = spnas("latency", "validate", "--lut", str(lut_path), "--samples", "8", "--repeats", "5",
                "--warmup", "1", "--write-calibration", "--out", str(val))
    assert out.returncode == 0, out.stderr
    report = json.loads((val / "validation.json").read_text())
    assert report["held_out_calibrated"]["n"] == 4
    assert (val / "validation.png").stat().st_size > 1000
    assert len((val / "validation.csv").read_text().splitlines()) == 9
    assert LatencyTable.load(lut_path).calibration is not None


def test_lut_for_other_space_is_refused(tmp_path, pixel1_table_path):
    lut = tmp_path / "pixel1.json"
    spnas("latency", "import-pixel1", str(pixel1_table_path), "--out", str(lut))
    out = spnas("latency", "measure", "uniform-k3e3", "--space", "small", "--repeats", "2", "--lut", str(lut))
    assert out.returncode == 2 and "field 'space' is 'imagenet'" in out.stderr


def test_bundle_round_trip(tmp_path):
    bundle = tmp_path / "bundle"
    out = spnas("latency", "bundle", *tiny_space_args(), "--networks", "8", "--out", str(bundle))
    assert out.returncode == 0, out.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["models"]) == 3 + 20 * 4 + 8 and len(manifest["networks"]) == 8
    # the device script runs with only numpy + onnxruntime: run it from another directory, isolated
    results = tmp_path / "results.json"
    bad = subprocess.run([sys.executable, "-I", str(bundle / "profile_device.py"), "--max-passes", "0"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "--max-passes must be at least 1, got 0" in bad.stderr
    run = subprocess.run([sys.executable, "-I", str(bundle / "profile_device.py"), "--repeats", "3",
                          "--warmup", "1", "--max-passes", "2", "--out", str(results)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert 1 <= json.loads(results.read_text())["conditions"]["passes"] <= 2
    lut_path = tmp_path / "lut.json"
    out = spnas("latency", "profile", "--from-bundle-results", str(results), "--out", str(lut_path))
    assert out.returncode == 0, out.stderr
    lut = LatencyTable.load(lut_path)
    assert lut.space_fingerprint == manifest["space_fingerprint"] and len(lut.layers) == 20
    # the device's whole networks calibrated the table and were reported like 'spnas latency validate'
    assert lut.calibration is not None and lut.calibration.fitted_on == 4
    report = json.loads((tmp_path / "lut-validation" / "validation.json").read_text())
    assert report["samples"] == 8 and report["held_out_calibrated"]["n"] == 4
    assert "held-out 4 architectures" in out.stdout and "calibration (" in out.stdout and "measured = " in out.stdout
    # refuses to overwrite a non-empty bundle directory
    again = spnas("latency", "bundle", *tiny_space_args(), "--out", str(bundle))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_tables_and_options_of_earlier_versions_still_work(tmp_path):
    """The device side was called 'target' before it became 'backend': old LUTs load, --target parses."""
    from conftest import fake_lut
    from spnas.cli.main import build_parser
    from spnas.model.space import get_space

    saved = tmp_path / "lut.json"
    fake_lut(get_space("small", width=0.25, input_size=16, num_classes=4)).save(saved)
    data = json.loads(saved.read_text())
    assert data["backend"] == "onnxruntime-cpu" and "target" not in data
    data["target"] = data.pop("backend")
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    assert LatencyTable.load(old).backend == "onnxruntime-cpu"
    parser = build_parser()
    for command in (["run"], ["sweep"], ["latency", "profile", "--out", "x.json"]):
        assert parser.parse_args([*command, "--target", "torch-cpu"]).backend == "torch-cpu"
        assert parser.parse_args([*command, "--backend", "torch-cpu"]).backend == "torch-cpu"
        assert parser.parse_args(command).backend == "onnxruntime-cpu"
