import json
import subprocess
import sys


def spnas(*args):
    return subprocess.run([sys.executable, "-m", "spnas", *args], capture_output=True, text=True)


def test_arch_show_json_reports_published_param_count():
    out = spnas("arch", "show", "spnas-pixel1", "--space", "imagenet", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["params"] == 4421616
    assert 330e6 < data["macs"] < 338e6  # the paper's ~334M multiply-adds


def test_bad_architecture_is_one_line_exit_2(tmp_path):
    out = spnas("arch", "show", "imagenet:k3e3,k3e3,k3e3,skip|skip,k3e3,k3e3,k3e3|" + ",".join(["k3e3"] * 12))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "Traceback" not in out.stderr
    assert "layer 4 (stage 2)" in out.stderr and "allowed: k3e3, k3e6, k5e3, k5e6" in out.stderr
    bad = tmp_path / "arch.json"
    bad.write_text('{"space": "small", "ops": ["k9e9"]}')
    out = spnas("arch", "show", str(bad))
    assert out.returncode == 2 and "k9e9" in out.stderr and "Traceback" not in out.stderr


def test_space_show_prints_every_layer():
    out = spnas("space", "show", "imagenet")
    assert out.returncode == 0
    rows = [l for l in out.stdout.splitlines() if l[:2].strip().isdigit()]
    assert len(rows) == 20
    assert "112x112" in out.stdout and "skip" in out.stdout


def test_train_help_shows_each_recipes_value_instead_of_none():
    out = spnas("train", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # argparse wraps lines
    assert "(default: None)" not in text
    assert "(default: the recipe's: paper 0.016, quick 0.2)" in text  # --lr-per-256
    assert "(default: the recipe's: paper 0, quick 50)" in text  # --precise-bn-batches
