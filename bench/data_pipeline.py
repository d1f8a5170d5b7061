"""The data-pipeline benchmark: 50,000 generated colour JPEGs through ingest, cleaning, split and one
epoch of training, with peak memory, cleaning speed, and input-pipeline vs training-step throughput.

`make bench` runs it as part of the full benchmark; `make bench-data` runs only this section and
replaces it in docs/BENCHMARKS.md.

    $ .venv/bin/python -m bench.data_pipeline --images 50000 --out docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

START, END = "<!-- data-bench:start -->", "<!-- data-bench:end -->"
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


def _peak_rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def measure(data: Path, workdir: Path) -> dict[str, Any]:
    """Run in a fresh process: ingest + clean + split + one training epoch, with throughput figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.data.clean import clean_images
    from training.config import load_config
    from training.data.split import split_dataset

    cfg = load_config(None, {"train": {"epochs": 1}, "data": {"image_cache": "none"}})
    started = time.perf_counter()
    dataset = clean_images(data, cfg.data)
    cleaning_s = time.perf_counter() - started
    train, val, test = split_dataset(dataset, cfg.data)
    rss_after_cleaning = _peak_rss_mib(resource.RUSAGE_SELF)
    rss_worker = _peak_rss_mib(resource.RUSAGE_CHILDREN)  # before TensorFlow starts any child process

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
        "peak_rss_mib": round(_peak_rss_mib(resource.RUSAGE_SELF), 0),
        "peak_rss_worker_mib": round(rss_worker, 0),
    }


def run_data_bench(workdir: Path, count: int, machine: str) -> list[str]:
    """Markdown lines for BENCHMARKS.md (the measurement runs in a child process for a clean peak RSS)."""
    data = generate_images(workdir / f"jpegs-{count}", count)
    out = workdir / "data-bench.json"
    cmd = [sys.executable, "-m", "bench.data_pipeline", "--measure", str(data), "--result", str(out)]
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    r = json.loads(out.read_text())
    ratio = r["pipeline_ips"] / r["training_ips"]
    return [
        START,
        "## Data pipeline at scale (CPU)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on: {machine}.",
        f"{r['images']:,} generated {SIZE}x{SIZE} colour JPEGs in {CLASSES} classes go through ingest, cleaning "
        f"(decode, validate, hash, near-duplicate search), the stable split and one training epoch (default "
        f"config, model input {r['input']}, no image cache), in one fresh process; {wall:.0f} s in all.\n",
        "| measure | value | target |",
        "|---|---|---|",
        f"| peak RSS, main process (whole run) | {r['peak_rss_mib']:,.0f} MiB | < 3,072 MiB |",
        f"| peak RSS after cleaning and split | {r['peak_rss_after_cleaning_mib']:,.0f} MiB | |",
        f"| peak RSS of one cleaning worker process | {r['peak_rss_worker_mib']:,.0f} MiB | |",
        f"| cleaning throughput | {r['cleaning_ips']:,.0f} images/s ({r['cleaning_s']} s) | >= 500 images/s |",
        f"| input pipeline alone | {r['pipeline_ips']:,.0f} images/s | |",
        f"| training (one epoch incl. its validation pass, {r['epoch_s']} s) | {r['training_ips']:,.0f} images/s | |",
        f"| pipeline / training | {ratio:.1f}x | >= 3x |",
        f"| kept / near duplicates | {r['kept']:,} / {r['near_duplicates']:,} | |",
        f"| split / leakage | {r['split']} / {r['leakage']} | leakage 0 |",
        "\nThe generated shapes sit on noise at random places, so many images of one shape are perceptual "
        "near duplicates (grouped into one split) and some shapes of different classes look alike to the "
        "hash (dropped as conflicting labels); real photo sets have far fewer.",
        END,
    ]


def splice(path: Path, lines: list[str], start: str = START, end: str = END) -> None:
    """Replace the section between the ``start`` and ``end`` markers of ``path`` (or append it)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = "\n".join(lines)
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--workdir", type=Path, default=Path(".kiln/bench"))
    parser.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        args.result.write_text(json.dumps(measure(args.measure, args.result.parent)))
        return
    from bench.serving import machine

    splice(args.out, run_data_bench(args.workdir, args.images, machine()))
    print(f"wrote the data section of {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
