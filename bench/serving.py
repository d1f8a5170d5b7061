"""`make bench`: train both sample models, time every variant and the HTTP service, write BENCHMARKS.md.

$ .venv/bin/python -m bench.serving --out docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from serving.client import KilnServer
from serving.loadtest import run_load
from serving.preprocess import ImageSpec, encode_texts, spec_from_dict
from serving.runtime import Classifier, gpu_present, measure_latency
from serving.store import ModelStore
from training.data.sample_data import write_sample_data

TEXT = "the delivery was not slow at all, it was quick"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = "GPU present" if gpu_present() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {gpu}; {platform.platform()}"


def batch_latency(model: Any, variant: str, x: np.ndarray, runs: int = 30) -> dict[str, float]:
    """Batch-1 and batch-32 latency of one stored variant on the CPU."""
    clf = Classifier.from_version(model, variant=variant, device="cpu")
    b1 = measure_latency(clf, x[:1], runs)
    b32 = measure_latency(clf, np.repeat(x[:1], 32, axis=0), runs)
    return {"b1_p50": b1["p50"], "b1_p95": b1["p95"], "b32_p50": b32["p50"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    parser.add_argument("--workdir", type=Path, default=Path(".kiln/bench"))
    parser.add_argument("--seconds", type=float, default=9.0, help="load per server, route and concurrency")
    parser.add_argument(
        "--http-only", action="store_true", help="re-measure only the HTTP section, on the models already in --workdir"
    )
    args = parser.parse_args()

    sample = write_sample_data(args.workdir / "sample")
    store = ModelStore(args.workdir / "store")
    image_file = sorted((sample["images"] / "7").glob("*.png"))[0].read_bytes()
    if args.http_only:
        from bench.data_pipeline import splice

        splice(args.out, http_section(store.root, image_file, args.workdir, args.seconds), HTTP_START, HTTP_END)
        print(f"wrote the HTTP section of {args.out}")  # noqa: T201
        return

    from flows.retrain import retrain

    reports, lines = {}, []
    for task in ("image", "text"):
        started = time.perf_counter()
        reports[task] = retrain(
            task=task, data=str(sample[task + "s"]), out=str(args.workdir / "runs" / task), store=str(store.root)
        )
        reports[task]["wall_seconds"] = time.perf_counter() - started

    lines += [
        f"# Benchmarks\n\nMeasured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` on: {machine()}.",
        "Sample data: scikit-learn digits (1,797 8x8 PNGs) and the generated 660-text corpus.\n",
        "## Training and compression (CPU)\n",
        "Accuracy and macro-F1 are on the validation split, where the served variant is chosen (the default "
        "`balanced` objective: the smallest gzip size within 1 point of fp32 that is not slower than fp32 at "
        "batch 1 or 32); the served variant's test score follows each task. Latencies are re-timed here.\n",
        "| task | wall s (flow) | train s | epochs | variant | bytes | gzip bytes | gzip x smaller | sparsity "
        "| val accuracy | val macro-F1 | b1 p50 ms | b1 p95 ms | b32 p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for task, report in reports.items():
        model = store.get(task, report["model"]["version"])
        x = _probe_input(model)
        fp32_gzip = report["variants"]["fp32"]["gzip_bytes"]
        latencies = {name: batch_latency(model, name, x) for name in report["variants"]}
        for name, v in report["variants"].items():
            lat = latencies[name]
            shown = f"{name} (served)" if name == report["served_variant"] else name
            lines.append(
                f"| {task} | {report['wall_seconds']:.0f} | {report['training']['train_seconds']:.0f} | "
                f"{report['training']['epochs_run']} | {shown} | "
                f"{v['bytes']:,} | {v['gzip_bytes']:,} | {fp32_gzip / v['gzip_bytes']:.2f} | "
                f"{v.get('sparsity', 0.0):.2f} | {v['accuracy']:.4f} | "
                f"{v['macro_f1']:.4f} | {lat['b1_p50']:.3f} | {lat['b1_p95']:.3f} | {lat['b32_p50']:.3f} |"
            )

        test = report["metrics"]
        notes.append(
            f"\n{task}: serves {report['served_variant']}, test accuracy {test['accuracy']:.4f}, "
            f"macro-F1 {test['macro_f1']:.4f} ({test['examples']} items)."
        )
    lines += notes

    lines += http_section(store.root, image_file, args.workdir, args.seconds)
    lines += [
        "\n## GPU\n",
        "Not measured in this run: "
        + (
            "a GPU is present; see the GPU section when recorded."
            if gpu_present()
            else "no GPU on this machine. CUDA paths choose the CUDA provider only when the "
            "NVIDIA driver reports a device."
        ),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines + kept_sections(args.out)) + "\n")
    print(f"wrote {args.out}")  # noqa: T201


CONCURRENCY = (1, 16, 64)
SERVERS = ("kiln", "bare", "keras")


HTTP_START, HTTP_END = "<!-- http-bench:start -->", "<!-- http-bench:end -->"


def _median_stats(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric, the median over the rounds (errors: their sum)."""
    keys = ("requests_per_s", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99")
    merged: dict[str, Any] = {k: round(float(np.median([r[k] for r in rounds])), 2) for k in keys}
    merged["errors"] = sum(r["errors"] for r in rounds)
    return merged


def http_section(store: Path, image_file: bytes, workdir: Path, seconds: float, rounds: int = 3) -> list[str]:
    """`kiln serve` beside a bare Starlette + ONNX Runtime app (the ceiling) and a FastAPI + Keras app (where users
    start), on the same store, routes, payloads and closed-loop client. All three run at once and are measured in
    turn, ``rounds`` times per row, so a slow minute on a shared machine hits all of them alike."""
    import contextlib

    from bench.peers import PeerServer

    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("/classify_image", "one 8x8 PNG", {"files": {"image": ("d.png", image_file, "image/png")}}),
        ("/classify_text", "1 text", {"json": {"texts": [TEXT]}}),
        ("/classify_text", "32 texts", {"json": {"texts": [TEXT] * 32}}),
    ]
    results: dict[tuple[str, str, int], dict[str, dict]] = {}
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
                results[(route, payload, concurrency)] = {name: _median_stats(r) for name, r in runs.items()}
                line = ", ".join(f"{n} {results[(route, payload, concurrency)][n]['requests_per_s']}" for n in SERVERS)
                print(f"{route} {payload} c{concurrency}: {line} req/s")  # noqa: T201
    lines = [
        HTTP_START,
        "## HTTP service against its peers (CPU)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on: {machine()}. One closed-loop client on the same "
        f"machine (it shares the 2 cores). All three servers run at once and are measured in turn, {rounds} rounds "
        f"of {seconds / rounds:g} s per row and server; each cell is the median round. **kiln**: `kiln serve` "
        "(BentoML, default settings: 1 worker); **bare**: Starlette + ONNX Runtime in one uvicorn process, same "
        "model file and preprocessing, no input checks (`bench/peers.py`); **keras**: FastAPI calling the "
        "trained Keras model's `predict`. Latencies p50/p95/p99 in ms.\n",
        "| route | payload | concurrency | kiln req/s | bare req/s | keras req/s | kiln / bare | kiln / keras "
        "| kiln p50/p95/p99 | bare p50/p95/p99 | keras p50/p95/p99 | errors (kiln/bare/keras) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (route, payload, concurrency), by in results.items():
        k, b, f = (by[n] for n in SERVERS)

        def lat(x: dict) -> str:
            return f"{x['latency_ms_p50']}/{x['latency_ms_p95']}/{x['latency_ms_p99']}"

        lines.append(
            f"| {route} | {payload} | {concurrency} | {k['requests_per_s']} | {b['requests_per_s']} | "
            f"{f['requests_per_s']} | {k['requests_per_s'] / b['requests_per_s']:.2f} | "
            f"{k['requests_per_s'] / f['requests_per_s']:.1f} | {lat(k)} | {lat(b)} | {lat(f)} | "
            f"{k['errors']}/{b['errors']}/{f['errors']} |"
        )
    return [*lines, HTTP_END]


def kept_sections(path: Path) -> list[str]:
    """The sections other benchmarks own (between <!-- NAME-bench:start/end --> markers), kept as they are
    so this benchmark can be rerun alone."""
    import re

    if not path.exists():
        return []
    found = re.findall(r"<!-- [\w-]+-bench:start -->.*?<!-- [\w-]+-bench:end -->", path.read_text(), re.S)
    return ["", *("\n".join([section, ""]) for section in found if not section.startswith(HTTP_START))]


def _probe_input(model: Any) -> np.ndarray:
    """One model input row for timing, shaped by the version's spec."""
    spec = spec_from_dict(model.manifest["spec"])
    if isinstance(spec, ImageSpec):
        return np.random.default_rng(0).random((1, spec.height, spec.width, spec.channels), dtype=np.float32)
    return encode_texts([TEXT], spec)


if __name__ == "__main__":
    main()
