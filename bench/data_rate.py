"""Images/s of 224-px training batches from an image folder: what one core decodes and augments, against
what PIL itself decodes per core (the limit of any PIL-based pipeline), and what the whole loader
delivers with N worker processes.

The folder is generated (JPEGs of a given size, smooth patterns plus noise, quality 90, so they compress
like photos). Per core, in this process: PIL's bare decode (open, convert to RGB, load); spnas's decode
plus augmentation (random-resized crop and flip, ``spnas.data.imagefolder.decode_image``) with each of
its decoders (simplejpeg where installed, PIL) with and without DCT-domain reduction (PIL ``draft``,
simplejpeg's ``min_height``/``min_width``). Then the loader itself (``FolderBatchSource``: DataLoader
workers, uint8 batches, normalisation where the batch goes) with 1..N workers, and the main process's own
cost per batch. From the per-core rate: how many cores 1,600 img/s needs.

    python3 bench/data_rate.py --out bench/results/data_rate.json
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results  # noqa: E402

import spnas.data.decode as decode  # noqa: E402
from spnas.data.imagefolder import decode_image, scan  # noqa: E402
from spnas.data.imagefolder import FolderBatchSource  # noqa: E402

TARGET = 1600  # img/s that keep one H200 searching at the paper's batch (issue 29)


def make_folder(root: Path, count: int, width: int, height: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    for i in range(count):
        cls = root / "train" / f"c{i % 2}"
        cls.mkdir(parents=True, exist_ok=True)
        base = np.stack([np.sin(x / (20 + i % 7)), np.cos(y / (15 + i % 5)), np.sin((x + y) / (30 + i % 3))], -1)
        img = np.clip(base * 100 + 128 + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(cls / f"{i}.jpg", quality=90)
    for c in ("c0", "c1"):  # scan wants a val/ split too
        (root / "val" / c).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "val" / c / "0.jpg")


def _spread(rates: list[float]) -> dict:
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def per_core(paths: list[Path], size: int, rounds: int) -> dict:
    """Each variant over every image, once a round, the variants in turn within each round (so drift of the
    machine's speed hits all alike); images/s per round."""
    from PIL import Image

    installed, original_reduction = decode.simplejpeg, decode.reduction

    def variant(decoder: str | None, reduce: bool):
        def run(path: Path, rng: random.Random) -> None:
            decode.simplejpeg = installed if decoder == "simplejpeg" else None
            decode.reduction = original_reduction if reduce else (lambda box, size: 1)
            decode_image(path, False, size, rng)
        return run

    variants = {"pil_decode_only": lambda path, rng: Image.open(path).convert("RGB").load()}
    for decoder in (["simplejpeg"] if installed is not None else []) + ["pil"]:
        variants[f"spnas_{decoder}"] = variant(decoder, True)
        variants[f"spnas_{decoder}_no_reduction"] = variant(decoder, False)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(rounds):
            for name, run in variants.items():
                rng = random.Random(0)
                start = time.perf_counter()
                for path in paths:
                    run(path, rng)
                rates[name].append(len(paths) / (time.perf_counter() - start))
    finally:
        decode.simplejpeg, decode.reduction = installed, original_reduction
    return {name: _spread(r) for name, r in rates.items()}


def loader_rates(root: Path, size: int, batch: int, workers: list[int], batches: int,
                 device: torch.device | None = None, decode: str = "cpu") -> list[dict]:
    """img/s of the loader with each count of ``workers``; ``decode="gpu"``: nvJPEG on ``device``."""
    split, _ = scan(root, "train", size)
    out = []
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    for w in workers:
        source = FolderBatchSource(split, batch, seed=0, workers=w, device=device, decode=decode)
        steps = min(batches, source.steps_per_epoch)
        source.batch(0, 0)  # workers started, first batches in flight
        sync()
        start = time.perf_counter()
        for step in range(1, steps):
            source.batch(0, step)
        sync()
        out.append({"workers": w, "images_per_s": (steps - 1) * batch / (time.perf_counter() - start)})
        del source
    return out


def main_process_cost(batch: int, size: int, rounds: int = 20) -> float:
    """ms the job's own process spends on one uint8 batch from the workers (to the device, normalise; CPU here)."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1)
    x = torch.randint(0, 255, (batch, size, size, 3), dtype=torch.uint8)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        x.permute(0, 3, 1, 2).float().div_(255).sub_(mean).div_(std).contiguous()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--image-size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"),
                   help="generated JPEGs (default: ImageNet's typical 500x375)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=None, help="default: 1 and every core")
    p.add_argument("--out", default="bench/results/data_rate.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_folder(root, args.images, *args.image_size)
        paths = sorted((root / "train").rglob("*.jpg"))
        for path in paths:  # the files in the page cache
            path.read_bytes()
        cores_rates = per_core(paths, args.size, args.rounds)
        workers = args.workers or sorted({1, max(1, cores - 1), cores})
        loaded = loader_rates(root, args.size, args.batch, workers, args.images // args.batch)
    main_ms = main_process_cost(args.batch, args.size)
    pil = cores_rates["pil_decode_only"]["median"]
    best = max(v["median"] for k, v in cores_rates.items() if k.startswith("spnas"))
    for name, r in cores_rates.items():
        print(f"{name:32s} {r['median']:8.1f} img/s per core (min {r['min']:.1f}, max {r['max']:.1f}); "
              f"{r['median'] / pil:.2f}x PIL's decode")
    for r in loaded:
        print(f"loader, {r['workers']} worker(s): {r['images_per_s']:8.1f} img/s of {args.size}-px batches of {args.batch}")
    main_rate = args.batch / main_ms * 1e3
    print(f"main process: {main_ms:.2f} ms per batch of {args.batch} (at most {main_rate:.0f} img/s on one core)")
    need = TARGET / best
    print(f"{TARGET} img/s needs {need:.1f} decoding cores at the best per-core rate ({best:.0f} img/s), plus the "
          f"job's own process")
    write_results(args.out, [{"per_core": cores_rates, "loader": loaded, "main_process_ms_per_batch": main_ms,
                              "cores_for_target": need, "target_images_per_s": TARGET}],
                  command="python3 bench/data_rate.py " + " ".join(sys.argv[1:]), image_size=args.image_size,
                  size=args.size, batch=args.batch, images=args.images, simplejpeg=decode.simplejpeg is not None)


if __name__ == "__main__":
    main()
