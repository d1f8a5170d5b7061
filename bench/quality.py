"""The quality benchmark: for every data set in ../shared/datasets and the sample data, default Kiln
and tuned Kiln (the served variant, from the real retrain flow) beside a classic peer trained on the
same split: TF-IDF (word 1-2 grams) + linear SVM for texts, an RBF SVM on raw pixels for images, each
with its C chosen on the validation split. Every variant of each default run is kept too (the per-data-set
compression table).

`make bench` runs it after the speed benchmarks. It writes docs/bench/quality.json and renders
docs/BENCHMARKS.md from every result file. ``--only`` reruns some data sets and keeps the other rows of the
previous quality.json; ``--reuse-default`` takes the peer and default columns from it and trains only the
tuned column.

    $ .venv/bin/python -m bench.quality --trials 10
    $ .venv/bin/python -m bench.quality --only mr cr --reuse-default --trials 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BENCH_DIR, envelope, read_result, utc_now, write_result

# The development data sets sit beside the repository (../shared/datasets); --datasets overrides.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
# The variants in the order the compression report lists them.
VARIANT_ORDER = ("fp32", "int8", "pruned", "pruned_int8", "qat", "pruned_qat", "fp16")
VARIANT_KEYS: tuple[str, ...] = ("method", "bytes", "gzip_bytes", "sparsity", "accuracy", "macro_f1", "latency_ms_p50")
VARIANT_KEYS += ("latency_ms_p95", "latency_ms_b32_p50", "throughput_per_s")


def datasets(sample: dict[str, Path], shared: Path = SHARED) -> dict[str, tuple[str, Path]]:
    """name -> (task, path): the sample data first, then every shared data set that is present."""
    found = {"sample digits": ("image", sample["images"]), "sample texts": ("text", sample["texts"])}
    if (shared / "notmnist" / "images").is_dir():
        found["notmnist"] = ("image", shared / "notmnist" / "images")
    for name in ("mr", "subj", "cr", "mpqa", "ag_news"):
        if (shared / name / "data.csv").is_file():
            found[name] = ("text", shared / name / "data.csv")
    if (shared / "sst2" / "train.csv").is_file():
        found["sst2 (train.csv)"] = ("text", shared / "sst2" / "train.csv")
    return found


# The peer's regularisation strength is chosen on the validation split, as Kiln chooses its epoch.
PEER_C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def _select_c(make: Any, x: Any, y: list[str], xv: Any, yv: list[str]) -> tuple[Any, float]:
    """The peer fitted on the training split with the C that scores best on validation, and that C."""
    fitted = [(make(c).fit(x, y), c) for c in PEER_C_GRID]
    return max(fitted, key=lambda mc: mc[0].score(xv, yv) if len(yv) else -mc[1])


def classic_peer(task: str, path: Path) -> dict[str, Any]:
    """The classic peer on Kiln's own split, under Kiln's protocol: fit on the training split, choose C on
    the validation split, score the test split once. Also scored: the peer refitted on train + validation
    with that C (more training data than Kiln gets), shown beside it for reference."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import SVC, LinearSVC

    from serving.preprocess import ImageSpec
    from training.config import load_config
    from training.data.clean import load_dataset
    from training.data.features import make_spec, to_inputs
    from training.data.split import split_dataset

    cfg = load_config(None)
    dataset = load_dataset(task, path, cfg=cfg.data)
    train, val, test = split_dataset(dataset, cfg.data)
    started = time.perf_counter()
    if task == "text":
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(train.inputs)
        inputs: Any = lambda d: vectorizer.transform(d.inputs)  # noqa: E731
        make: Any = lambda c: LinearSVC(C=c)  # noqa: E731
        name = "TF-IDF 1-2 gram + linear SVM"
    else:
        spec = make_spec(train, train.label_names, cfg)
        assert isinstance(spec, ImageSpec)
        inputs = lambda d: to_inputs(d, spec).reshape(len(d), -1)  # noqa: E731
        make = lambda c: SVC(C=c, kernel="rbf", gamma="scale")  # noqa: E731
        name = f"RBF SVM on {spec.height}x{spec.width}x{spec.channels} pixels"
    model, c = _select_c(make, inputs(train), train.labels, inputs(val), val.labels)
    accuracy = float(model.score(inputs(test), test.labels))
    seconds = time.perf_counter() - started
    if task == "text":  # refit the vectorizer too, on everything the wider peer may see
        wide_vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(train.inputs + val.inputs)
        wide = make(c).fit(wide_vectorizer.transform(train.inputs + val.inputs), train.labels + val.labels)
        accuracy_train_val = float(wide.score(wide_vectorizer.transform(test.inputs), test.labels))
    else:
        x = np.concatenate([inputs(train), inputs(val)])
        accuracy_train_val = float(make(c).fit(x, train.labels + val.labels).score(inputs(test), test.labels))
    return {
        "name": name,
        "c": c,
        "accuracy": round(accuracy, 6),
        "accuracy_train_val": round(accuracy_train_val, 6),
        "seconds": round(seconds, 2),
    }


def variant_list(variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A run's variants as rows, fp32 first, each with its ratios against fp32 computed from the unrounded
    measurements (the renderer shows them and checks the targets with them)."""
    fp32 = variants["fp32"]
    rows = []
    for name, v in sorted(
        variants.items(), key=lambda item: VARIANT_ORDER.index(item[0]) if item[0] in VARIANT_ORDER else 99
    ):
        b32, b1 = v.get("latency_ms_b32_p50"), v.get("latency_ms_p50")
        vs_fp32 = {
            "gzip_x_smaller": round(fp32["gzip_bytes"] / v["gzip_bytes"], 4),
            "accuracy_drop_points": round(100 * (fp32["accuracy"] - v["accuracy"]), 4),
            "b32_x_faster": round(fp32["latency_ms_b32_p50"] / b32, 4) if b32 else None,
            "b1_time": round(b1 / fp32["latency_ms_p50"], 4) if b1 and fp32.get("latency_ms_p50") else None,
        }
        rows.append({"variant": name, **{k: v[k] for k in VARIANT_KEYS if k in v}, "vs_fp32": vs_fp32})
    return rows


def kiln_run(task: str, path: Path, workdir: Path, trials: int | None, measured: str) -> dict[str, Any]:
    """The retrain flow (tuned with ``trials`` Optuna trials, or the default): the served variant's test score,
    and for a default run every variant and the skipped ones."""
    from flows.retrain import retrain

    tag = f"{task}-{path.parent.name if path.name in ('data.csv', 'train.csv', 'images') else path.stem}"
    tag += f"-t{trials}" if trials else "-default"
    started = time.perf_counter()
    report = retrain(
        task=task, data=str(path), out=str(workdir / "runs" / tag), store=str(workdir / "store" / tag), trials=trials
    )
    run = {
        "accuracy": report["metrics"]["accuracy"],  # the served variant, scored once on the test split
        "model": report["training"]["model"],
        "variant": report["served_variant"],
        "train_seconds": round(float(report["training"]["train_seconds"]), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "test_items": report["metrics"]["examples"],
        "measured": measured,
    }
    if trials:
        return run | {"trials": trials, "beat_default": (report.get("tuning") or {}).get("beat_default")}
    skipped = {name: p["skipped"] for name, p in report.get("parity", {}).items() if "skipped" in p}
    return run | {"variants": variant_list(report["variants"]), "skipped": skipped}


def run_quality_bench(
    workdir: Path,
    trials: int,
    only: list[str] | None,
    shared: Path = SHARED,
    previous: dict[str, Any] | None = None,
    reuse_default: bool = False,
) -> dict[str, Any]:
    """quality.json's object: one row per data set found. The data sets ``only`` leaves out keep their row from
    ``previous`` (the last quality.json); with ``reuse_default``, the peer and default columns come from there
    too and only the tuned column is trained."""
    from training.config import load_config
    from training.data.sample_data import write_sample_data

    measured = utc_now()
    sample = write_sample_data(workdir / "sample")
    before = {row["name"]: row for row in (previous or {}).get("rows", [])}
    rows = []
    for name, (task, path) in datasets(sample, shared).items():
        if only and name not in only:
            if name in before:  # not rerun: the earlier measurements stay
                rows.append(before[name])
            continue
        if reuse_default:
            if name not in before:
                raise SystemExit(f"--reuse-default: the previous result has no run of {name!r}; run without it first")
            peer, default = before[name]["peer"], before[name]["default"]
        else:
            peer = classic_peer(task, path) | {"measured": measured}
            default = kiln_run(task, path, workdir, None, measured)
        tuned = kiln_run(task, path, workdir, trials, measured) if trials else None
        rows.append(
            {
                "name": name,
                "task": task,
                "test_items": default["test_items"],
                "peer": peer,
                "default": default,
                "tuned": tuned,
            }
        )
    parameters = {
        "trials": trials,
        "only": only,
        "reuse_default": reuse_default,
        "seed": load_config(None).data.seed,
        "peer_c_grid": list(PEER_C_GRID),
    }
    return envelope("quality", parameters, measured=measured, rows=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="Optuna trials for the tuned column (0: skip it)")
    parser.add_argument(
        "--only", nargs="*", help="data set names to run (default: all); the other rows of --out stay as they are"
    )
    parser.add_argument(
        "--reuse-default",
        action="store_true",
        help="take the peer and default columns from the previous --out; train only the tuned column",
    )
    parser.add_argument("--workdir", type=Path, default=Path(".kiln/bench-quality"))
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "quality.json", help="the result file (read first)")
    parser.add_argument("--datasets", type=Path, default=SHARED, help="folder of the shared data sets")
    args = parser.parse_args()
    from bench.render import after_benchmark

    result = run_quality_bench(
        args.workdir, args.trials, args.only, args.datasets, read_result(args.out), args.reuse_default
    )
    after_benchmark(write_result(args.out, result))


if __name__ == "__main__":
    main()
