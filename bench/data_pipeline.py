"""The data-pipeline benchmark: 50,000 generated colour JPEGs through ingest, cleaning, split and one
epoch of training, with peak memory, cleaning speed, and input-pipeline vs training-step throughput.

`make bench` runs it as part of the full benchmark; `make bench-data` runs only this one. It writes
docs/bench/data_pipeline.json and renders docs/BENCHMARKS.md from every result file.

    $ .venv/bin/python -m bench.data_pipeline --images 50000 --out docs/bench/data_pipeline.json
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, envelope, peak_rss_mib, read_result, utc_now, write_result

CLASSES = 10
SIZE = 64


def _shape(draw: Any, label: int, x: int, y: int, r: int, fill: tuple[int, int, int]) -> None:
    """One of ten shapes, so the class is carried by form, not colour or position."""
    box = (x - r, y - r, x + r, y + r)
    if label == 0:
        draw.ellipse(box, fill=fill)
    elif label == 1:
        draw.rectangle(box, fill=fill)
    elif label == 2:
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    elif label == 3:
        draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=fill)
    elif label == 4:
        draw.ellipse(box, outline=fill, width=max(2, r // 3))
    elif label == 5:
        draw.rectangle((x - r, y - r // 3, x + r, y + r // 3), fill=fill)
    elif label == 6:
        draw.rectangle((x - r // 3, y - r, x + r // 3, y + r), fill=fill)
    elif label == 7:
        draw.line((x - r, y - r, x + r, y + r), fill=fill, width=max(2, r // 3))
        draw.line((x - r, y + r, x + r, y - r), fill=fill, width=max(2, r // 3))
    elif label == 8:
        draw.polygon([(x, y + r), (x - r, y - r), (x + r, y - r)], fill=fill)
    else:
        draw.rectangle((x - r, y - r, x + r, y + r), outline=fill, width=max(2, r // 3))


def _write_one(args: tuple[Path, int]) -> None:
    """One JPEG: a class-specific shape in a random colour on a random textured background."""
    import numpy as np
    from PIL import Image, ImageDraw

    path, seed = args
    rng = random.Random(seed)
    noise = np.random.default_rng(seed).integers(0, 90, (SIZE, SIZE, 3), dtype=np.uint8)
    image = Image.fromarray(noise, "RGB")
    fill = (rng.randint(120, 255), rng.randint(120, 255), rng.randint(120, 255))
    r = rng.randint(12, 20)
    _shape(ImageDraw.Draw(image), seed % CLASSES, rng.randint(r, SIZE - r), rng.randint(r, SIZE - r), r, fill)
    image.save(path, quality=rng.randint(70, 95))


def generate_images(root: Path, count: int) -> Path:
    """``count`` JPEGs under root/<class>/ (skipped when already there)."""
    if root.exists() and sum(1 for _ in root.rglob("*.jpg")) == count:
        return root
    for label in range(CLASSES):
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
    jobs = [(root / f"class_{seed % CLASSES}" / f"{seed:06d}.jpg", seed) for seed in range(count)]
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write_one, jobs, chunksize=500))
    return root


def measure(data: Path, workdir: Path) -> dict[str, Any]:
    """Run in a fresh process: ingest + clean + split + one training epoch, with throughput figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.config import load_config
    from training.data.clean import clean_images
    from training.data.split import split_dataset

    cfg = load_config(None, {"train": {"epochs": 1}, "data": {"image_cache": "none"}})
    started = time.perf_counter()
    dataset = clean_images(data, cfg.data)
    cleaning_s = time.perf_counter() - started
    train, val, test = split_dataset(dataset, cfg.data)
    rss_after_cleaning = peak_rss_mib(resource.RUSAGE_SELF)
    rss_worker = peak_rss_mib(resource.RUSAGE_CHILDREN)  # before TensorFlow starts any child process

    from serving.preprocess import ImageSpec
    from training.data.features import make_spec
    from training.fit.pipeline import training_batches
    from training.fit.train import train_model

    spec = make_spec(train, train.label_names, cfg)
    assert isinstance(spec, ImageSpec)
    batches = training_batches(train, spec, cfg)
    seen, t0 = 0, time.perf_counter()
    for k, (x, _) in enumerate(batches):
        if k == 5:  # skip start-up (thread pools, first decode)
            seen, t0 = 0, time.perf_counter()
        seen += int(x.shape[0])
        if seen >= 8000:
            break
    pipeline_ips = seen / (time.perf_counter() - t0)

    trained = train_model(train, val, cfg)
    return {
        "images": dataset.report.rows_read,
        "kept": dataset.report.rows_kept,
        "near_duplicates": dataset.report.near_duplicates,
        "split": dataset.report.details["split"],
        "leakage": dataset.report.details["leakage"],
        "cleaning_s": round(cleaning_s, 1),
        "cleaning_ips": round(dataset.report.rows_read / cleaning_s, 1),
        "pipeline_ips": round(pipeline_ips, 1),
        "training_ips": round(trained.examples_per_s, 1),
        "epoch_s": round(trained.seconds, 1),
        "input": f"{spec.height}x{spec.width}x{spec.channels}",
        "peak_rss_after_cleaning_mib": round(rss_after_cleaning, 0),
        "peak_rss_mib": round(peak_rss_mib(resource.RUSAGE_SELF), 0),
        "peak_rss_worker_mib": round(rss_worker, 0),
    }


def run_data_bench(workdir: Path, count: int) -> dict[str, Any]:
    """data_pipeline.json's object (the measurement runs in a child process for a clean peak RSS)."""
    data = generate_images(workdir / f"jpegs-{count}", count)
    out = workdir / "data-bench.json"
    cmd = [sys.executable, "-m", "bench.data_pipeline", "--measure", str(data), "--result", str(out)]
    measured = utc_now()
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    result = read_result(out)
    if result is None:
        raise SystemExit(f"the measuring process wrote no {out}")
    parameters = {"images": count, "image_size": SIZE, "classes": CLASSES, "epochs": 1, "image_cache": "none"}
    return envelope("data_pipeline", parameters, measured=measured, result=result | {"wall_seconds": round(wall, 1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--workdir", type=Path, default=Path(".kiln/bench"))
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "data_pipeline.json", help="the result file")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        write_result(args.result, measure(args.measure, args.result.parent))
        return
    from bench.render import after_benchmark

    after_benchmark(write_result(args.out, run_data_bench(args.workdir, args.images)))


if __name__ == "__main__":
    main()
