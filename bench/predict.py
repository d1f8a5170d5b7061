"""Batch prediction at scale (issue 21): `kiln predict` on 1,000,000 short texts and 100,000 small images against
ONNX Runtime's own InferenceSession at the same batch size, on this machine.

Per task, in interleaved rounds (this box's speed drifts 2x within minutes):
1. **ORT alone**: the served variant's file in a bare InferenceSession, fed inputs encoded beforehand, batch 64:
   inference only, the ceiling for any batch scorer;
2. **`kiln predict`** on the whole file, as a user runs it (a subprocess; in this process's thread pool, and with
   ``--workers 2``, a local Dask cluster): items per second over the flow's own seconds (reading, decoding,
   preprocessing, inference, writing; not Prefect's start-up, which is listed apart as wall seconds), and the peak
   RSS of the whole process tree (Dask workers included), polled every 0.2 s.

The models are the bundled sample data's (`kiln run` into the benchmark's own store when it has none); the inputs are
drawn from the sample data with replacement (seeded): texts written to one CSV, images hard-linked into a folder.

    $ .venv/bin/python -m bench.predict --texts 1000000 --images 100000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.common import BENCH_DIR, envelope, write_result

WORKDIR = Path(".kiln/bench-predict")
BATCH = 64
ORT_ITEMS = {"text": 65_536, "image": 16_384}  # enough batches for a steady ORT figure


def kiln(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"kiln {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def ensure_models(workdir: Path, store: Path) -> dict[str, Path]:
    """The sample data, and a production model per task in ``store`` (trained here when missing)."""
    from serving.store import ModelStore

    sample = workdir / "sample"
    if not (sample / "texts.csv").is_file():
        kiln("sample-data", str(sample))
    paths = {"text": sample / "texts.csv", "image": sample / "images"}
    for task, data in paths.items():
        if ModelStore(store).production(task) is None:
            print(f"training the sample {task} model into {store} ...", flush=True)
            kiln(
                "run", "--task", task, "--data", str(data), "--store", str(store), "--out", str(workdir / f"run-{task}")
            )
    return paths


def make_texts(source: Path, out: Path, n: int, seed: int = 0) -> Path:
    if out.is_file() and sum(1 for _ in out.open(encoding="utf-8")) == n + 1:
        return out
    with source.open(newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    rng = random.Random(seed)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text"])
        for _ in range(n):
            writer.writerow([rng.choice(texts)])
    return out


def make_images(source: Path, out: Path, n: int, seed: int = 0) -> Path:
    files = sorted(p for p in source.rglob("*.png"))
    if out.is_dir() and sum(1 for _ in out.rglob("*.png")) == n:
        return out
    rng = random.Random(seed)
    for i in range(n):
        target = out / f"{i // 1000:03d}" / f"{i:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(rng.choice(files), target)
    return out


def ort_alone(store: Path, task: str, data: Path) -> float:
    """Items per second of a bare InferenceSession over inputs encoded beforehand, batch ``BATCH``."""
    from serving.runtime import Classifier, make_session
    from serving.store import ModelStore

    model = ModelStore(store).production_version(task)
    assert model is not None
    classifier = Classifier.from_version(model)
    n = ORT_ITEMS[task]
    if task == "text":
        with data.open(newline="", encoding="utf-8") as fh:
            texts = [row["text"] for _, row in zip(range(n), csv.DictReader(fh), strict=False)]
        inputs = classifier.prepare_texts(texts)
    else:
        files = sorted(data.rglob("*.png"))[:n]
        inputs = classifier.prepare_images([f.read_bytes() for f in files])
    session = make_session(model.variant_path())
    name = session.get_inputs()[0].name
    session.run(None, {name: inputs[:BATCH]})
    started = time.perf_counter()
    for start in range(0, len(inputs), BATCH):
        session.run(None, {name: inputs[start : start + BATCH]})
    return len(inputs) / (time.perf_counter() - started)


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def kiln_predict(store: Path, task: str, data: Path, out: Path, workers: int) -> dict[str, Any]:
    """One `kiln predict` run: its summary, wall seconds and the process tree's peak RSS."""
    args = ["predict", "--task", task, "--data", str(data), "--out", str(out), "--store", str(store)]
    args += ["--batch-size", str(BATCH), "--top-k", "1"] + (["--workers", str(workers)] if workers > 1 else [])
    started = time.perf_counter()
    log = out.with_suffix(".log")
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], stdout=fh, stderr=subprocess.STDOUT)
        watched, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(watched))
            time.sleep(0.2)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"kiln predict failed:\n{log.read_text()[-3000:]}")
    line = next(ln for ln in log.read_text().splitlines() if " items -> " in ln)
    items = int(line.split(" items -> ")[0].replace(",", ""))
    seconds = float(line.split(" in ")[1].split(" s ")[0])
    return {"items": items, "seconds": seconds, "wall_seconds": round(wall, 2), "peak_rss_mib": round(peak / 2**20)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2], help="kiln predict settings to run")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "predict.json")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    store = args.workdir / "store"
    sample = ensure_models(args.workdir, store)
    inputs = {
        "text": make_texts(sample["text"], args.workdir / "texts.csv", args.texts),
        "image": make_images(sample["image"], args.workdir / "images", args.images),
    }
    rows: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for task, data in inputs.items():
            ort = ort_alone(store, task, data)
            for workers in args.workers:
                run = kiln_predict(store, task, data, args.workdir / f"{task}-{workers}.csv", workers)
                rate = run["items"] / run["seconds"]
                row = {"task": task, "round": round_ + 1, "workers": workers, **run}
                row |= {"items_per_s": round(rate), "ort_items_per_s": round(ort), "ratio": round(rate / ort, 3)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    from serving.store import ModelStore

    models = {t: ModelStore(store).production_version(t) for t in inputs}
    variants = {t: m.manifest["served_variant"] if m else None for t, m in models.items()}
    parameters = {"texts": args.texts, "images": args.images, "batch": BATCH, "rounds": args.rounds}
    write_result(args.out, envelope("predict", parameters, rows=rows, variants=variants))
    from bench.render import after_benchmark

    after_benchmark(args.out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
