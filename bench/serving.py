"""`make bench`: train both sample models, time every variant, and load the HTTP service against its peers.

Writes docs/bench/training.json (the retrain flow on the sample data, every variant re-timed) and
docs/bench/http.json (`kiln serve` beside a bare ONNX Runtime app and a Keras app, on realistic models), then
renders docs/BENCHMARKS.md from every result file.

The HTTP models are what a default `kiln run` makes of real data: a 28x28 image model from notMNIST (300 images
per letter, 4 epochs) and a text model from CR's training split (../shared/datasets; built once under --workdir
and reused). Without the data sets, the sample models stand in, and the page says so.

    $ .venv/bin/python -m bench.serving                # both files
    $ .venv/bin/python -m bench.serving --http-only    # only http.json, on the models already in --workdir
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BENCH_DIR, envelope, utc_now, write_result
from bench.quality import SHARED
from bench.render import after_benchmark
from serving.client import KilnServer
from serving.loadtest import run_load
from serving.preprocess import ImageSpec, Spec, encode_texts, spec_from_dict
from serving.runtime import Classifier, make_session, measure_latency
from serving.store import ModelStore
from training.data.sample_data import generate_texts, write_sample_data

TEXT = "the delivery was not slow at all, it was quick"
LATENCY_RUNS = 30
CONCURRENCY = (1, 16, 64)
SERVERS = ("kiln", "bare", "keras")
ROUNDS = 5


def batch_latency(path: Path, spec: Spec, x: np.ndarray, runs: int = LATENCY_RUNS) -> dict[str, float]:
    """Batch-1 p50/p95 and batch-32 p50 latency (ms) of one ONNX variant on the CPU."""
    clf = Classifier(make_session(path, device="cpu"), spec)
    b1 = measure_latency(clf, x[:1], runs)
    b32 = measure_latency(clf, np.repeat(x[:1], 32, axis=0), runs)
    return {
        "latency_ms_p50": round(float(b1["p50"]), 4),
        "latency_ms_p95": round(float(b1["p95"]), 4),
        "latency_ms_b32_p50": round(float(b32["p50"]), 4),
    }


def training_row(task: str, report: dict[str, Any], artifacts: Path, wall_seconds: float) -> dict[str, Any]:
    """One task of training.json: the flow's timings, the served variant's test score, every variant re-timed
    (from the run's artefacts: the store keeps only the served variant)."""
    spec = spec_from_dict(json.loads((artifacts / "spec.json").read_text(encoding="utf-8")))
    x = _probe_input(spec)
    variants = []
    for name, v in report["variants"].items():
        variants.append(
            {
                "variant": name,
                "method": v.get("method", ""),
                "bytes": int(v["bytes"]),
                "gzip_bytes": int(v["gzip_bytes"]),
                "sparsity": float(v.get("sparsity", 0.0)),
                "accuracy": float(v["accuracy"]),
                "macro_f1": float(v["macro_f1"]),
                **({"test_accuracy": v["test"]["accuracy"], "test_ece": v["test"]["ece"]} if "test" in v else {}),
                **batch_latency(artifacts / v["file"], spec, x),
            }
        )
    test = report["metrics"]
    return {
        "task": task,
        "wall_seconds": round(wall_seconds, 1),
        "train_seconds": round(float(report["training"]["train_seconds"]), 1),
        "epochs": int(report["training"]["epochs_run"]),
        "served": report["served_variant"],
        "test": {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "items": test["examples"]},
        "variants": variants,
    }


def measure_training(sample: dict[str, Path], store: ModelStore, workdir: Path) -> dict[str, Any]:
    """The retrain flow on both sample data sets, as training.json."""
    from flows.retrain import retrain

    measured = utc_now()
    rows = []
    for task in ("image", "text"):
        started = time.perf_counter()
        report = retrain(
            task=task, data=str(sample[task + "s"]), out=str(workdir / "runs" / task), store=str(store.root)
        )
        wall = time.perf_counter() - started
        rows.append(training_row(task, report, workdir / "runs" / task / "artifacts", wall))
    parameters = {
        "sample_images": sum(1 for _ in sample["images"].rglob("*.png")),
        "sample_texts": len(generate_texts()),
        "latency_runs": LATENCY_RUNS,
    }
    return envelope("training", parameters, measured=measured, rows=rows)


def realistic_store(workdir: Path, datasets: Path) -> tuple[Path, bytes, dict[str, str]] | None:
    """A store with a realistic image and text model in production (built once, then reused), an image file
    for requests, and what each model is; None without the development data sets."""
    from bench.quality import split_source
    from bench.splits import prepare_split
    from flows.retrain import retrain

    letters = datasets / "notmnist" / "images"
    if not letters.is_dir() or not (datasets / "cr").is_dir():
        return None
    root = workdir / "realistic"
    store = ModelStore(root / "store")
    images = root / "notmnist"
    if store.production("image") is None:
        for folder in sorted(p for p in letters.iterdir() if p.is_dir()):
            (images / folder.name).mkdir(parents=True, exist_ok=True)
            for item in sorted(folder.iterdir())[:300]:
                (images / folder.name / item.name).write_bytes(item.read_bytes())
        retrain(task="image", data=str(images), out=str(root / "runs" / "image"), store=str(store.root), epochs=4)
    if store.production("text") is None:
        split = prepare_split(split_source("cr", workdir, datasets), root / "splits")
        retrain(task="text", data=str(split.train), out=str(root / "runs" / "text"), store=str(store.root))
    image_file = sorted((images / "A").iterdir())[0].read_bytes()
    return store.root, image_file, {task: _describe(store, task) for task in ("image", "text")}


def _describe(store: ModelStore, task: str) -> str:
    """E.g. "28x28x1 image model, served int8 (0.5 MB)"."""
    version = store.production_version(task)
    assert version is not None
    spec = spec_from_dict(version.manifest["spec"])
    what = f"{spec.height}x{spec.width}x{spec.channels} image" if isinstance(spec, ImageSpec) else "text"
    variant = version.manifest["served_variant"]
    size = version.variant_path().stat().st_size / 1e6
    return f"{what} model of {len(spec.labels)} classes, served {variant} ({size:.1f} MB)"


def _median_stats(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric, the median over the rounds (errors: their sum)."""
    keys = ("requests_per_s", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99")
    merged: dict[str, Any] = {k: round(float(np.median([r[k] for r in rounds])), 2) for k in keys}
    merged["errors"] = int(sum(r["errors"] for r in rounds))
    return merged


def measure_http(
    store: Path, image_file: bytes, workdir: Path, seconds: float, models: dict[str, str], rounds: int = ROUNDS
) -> dict[str, Any]:
    """`kiln serve` beside a bare Starlette + ONNX Runtime app (the ceiling) and a FastAPI + Keras app (where users
    start), on the same store, routes, payloads and closed-loop client, as http.json. All three run at once and
    are measured in turn, ``rounds`` times per row, so a slow minute on a shared machine hits all of them alike."""
    from bench.peers import PeerServer

    measured = utc_now()
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("/classify_image", "one PNG", {"files": {"image": ("d.png", image_file, "image/png")}}),
        ("/classify_text", "1 text", {"json": {"texts": [TEXT]}}),
        ("/classify_text", "32 texts", {"json": {"texts": [TEXT] * 32}}),
    ]
    rows = []
    with contextlib.ExitStack() as stack:
        urls = {
            "kiln": stack.enter_context(KilnServer(store, log_path=workdir / "server.log")).url,
            "bare": stack.enter_context(PeerServer("onnx_app", store, workdir / "peer-bare.log")).url,
            "keras": stack.enter_context(PeerServer("keras_app", store, workdir / "peer-keras.log")).url,
        }
        for route, payload, body in cases:
            for concurrency in CONCURRENCY:
                runs: dict[str, list[dict]] = {name: [] for name in SERVERS}
                for _ in range(rounds):
                    for name in SERVERS:

                        def send(c: Any, url: str = urls[name] + route, body: dict = body) -> Any:
                            return c.post(url, **body)

                        runs[name].append(run_load(send, concurrency, 0, duration=seconds / rounds))
                servers = {name: _median_stats(r) for name, r in runs.items()}
                rows.append({"route": route, "payload": payload, "concurrency": concurrency, "servers": servers})
                line = ", ".join(f"{n} {servers[n]['requests_per_s']}" for n in SERVERS)
                print(f"{route} {payload} c{concurrency}: {line} req/s")
    parameters = {"seconds": seconds, "rounds": rounds, "concurrency": list(CONCURRENCY), "servers": list(SERVERS)}
    parameters |= {"models": models, "image_bytes": len(image_file)}
    return envelope("http", parameters, measured=measured, rows=rows)


def _probe_input(spec: Spec) -> np.ndarray:
    """One model input row for timing, shaped by the version's spec."""
    if isinstance(spec, ImageSpec):
        return np.random.default_rng(0).random((1, spec.height, spec.width, spec.channels), dtype=np.float32)
    return encode_texts([TEXT], spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "training.json", help="the training result")
    parser.add_argument("--http-out", type=Path, default=BENCH_DIR / "http.json", help="the HTTP result")
    parser.add_argument("--workdir", type=Path, default=Path(".kiln/bench"))
    parser.add_argument("--seconds", type=float, default=15.0, help="load per server, route and concurrency")
    parser.add_argument("--datasets", type=Path, default=SHARED, help="the shared data sets (realistic models)")
    parser.add_argument(
        "--http-only", action="store_true", help="re-measure only the HTTP section, on the models already in --workdir"
    )
    args = parser.parse_args()

    sample = write_sample_data(args.workdir / "sample")
    store = ModelStore(args.workdir / "store")
    written = []
    if not args.http_only:
        written.append(write_result(args.out, measure_training(sample, store, args.workdir)))
    realistic = realistic_store(args.workdir, args.datasets)
    if realistic is None:
        print(f"no development data sets in {args.datasets}: the HTTP benchmark serves the sample models")
        image_file = sorted((sample["images"] / "7").glob("*.png"))[0].read_bytes()
        served = store.root, image_file, {task: "sample " + _describe(store, task) for task in ("image", "text")}
    else:
        served = realistic
    written.append(write_result(args.http_out, measure_http(*served[:2], args.workdir, args.seconds, served[2])))
    after_benchmark(*written)


if __name__ == "__main__":
    main()
