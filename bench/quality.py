"""The quality benchmark: for every data set in ../shared/datasets and the sample data, default Kiln
and tuned Kiln (the served variant, from the real retrain flow) beside a classic peer trained on the
same split: TF-IDF (word 1-2 grams) + linear SVM for texts, an RBF SVM on raw pixels for images, each
with its C chosen on the validation split.

`make bench` runs it after the speed benchmarks; it replaces its section of docs/BENCHMARKS.md.

    $ .venv/bin/python -m bench.quality --trials 10 --out docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

START, END = "<!-- quality-bench:start -->", "<!-- quality-bench:end -->"
# Kept true to the latest measurements in docs/BENCHMARKS.md; rewrite it when the numbers move.
WHY_TARGETS_MISSED = (
    "Where a target is missed, why: the image models are small (0.1-0.4 M weights), so the graph's own bytes and "
    "the unpruned first and last layers weigh more than in the text models, and 0.8 sparsity, which would pass "
    "10x, cost digits 3-4 points; text models spend most of their time outside the quantized convolutions "
    "(embedding gathers, the bag of n-grams, float glue between QDQ pairs), so INT8 speeds batch 32 up by "
    "1.0-1.25x only; image INT8 reaches 1.56x (notMNIST) but a smaller variant within budget is served. "
    "Timings on this shared machine move by up to 2x between minutes, so `balanced` picks among near-equal "
    "variants differently from run to run.\n"
)
VARIANTS_START, VARIANTS_END = "<!-- variants-bench:start -->", "<!-- variants-bench:end -->"
# The development data sets sit beside the repository (../shared/datasets); --datasets overrides.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


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
    from training.data.clean import load_dataset
    from training.config import load_config
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
        "name": f"{name} (C={c:g})",
        "accuracy": accuracy,
        "accuracy_train_val": accuracy_train_val,
        "seconds": seconds,
    }


def kiln_run(task: str, path: Path, workdir: Path, trials: int | None) -> dict[str, Any]:
    from flows.retrain import retrain

    tag = f"{task}-{path.parent.name if path.name in ('data.csv', 'train.csv', 'images') else path.stem}"
    tag += f"-t{trials}" if trials else "-default"
    started = time.perf_counter()
    report = retrain(
        task=task, data=str(path), out=str(workdir / "runs" / tag), store=str(workdir / "store" / tag), trials=trials
    )
    return {
        "accuracy": report["metrics"]["accuracy"],  # the served variant, scored once on the test split
        "variant": report["served_variant"],
        "model": report["training"]["model"],
        "train_seconds": report["training"]["train_seconds"],
        "wall_seconds": time.perf_counter() - started,
        "test": report["metrics"]["examples"],
        "variants": report["variants"],
        "skipped": {name: p["skipped"] for name, p in report.get("parity", {}).items() if "skipped" in p},
        "tuning": report.get("tuning"),
    }


def tuned_cell(tuned: dict[str, Any] | None, trials: int) -> str:
    """The served variant's test accuracy, the family, and whether tuning beat the default on validation."""
    if tuned is None:
        return "—"
    beat = (tuned.get("tuning") or {}).get("beat_default")
    verdict = "" if beat is None else (", beat the default on val" if beat else ", the default was the best trial")
    return f"{tuned['accuracy']:.4f} ({tuned['model']}, {trials} trials{verdict}, {tuned['wall_seconds']:.0f} s)"


def variant_rows(name: str, run: dict[str, Any]) -> list[str]:
    """One row per variant of a default run, ratios against fp32, and the issue's targets checked."""
    from compression.report import variant_rows as table_rows

    v = run["variants"]
    fp32 = v["fp32"]
    rows = []
    for cells in table_rows(v, run["variant"]):
        variant = v[cells[0].split(" ")[0]]
        drop = 100 * (fp32["accuracy"] - variant["accuracy"])
        picked = [cells[0], cells[1], cells[3], cells[4], cells[5], cells[6], f"{drop:+.2f}"]
        rows.append(f"| {name} | " + " | ".join(picked + [cells[8], cells[10], cells[11]]) + " |")
    for variant, reason in run["skipped"].items():
        rows.append(f"| {name} | {variant} | skipped: {reason[:140]} |" + " |" * 8)
    return rows


def targets(run: dict[str, Any]) -> str:
    """The compression targets for one data set: pruned_int8 >= 10x smaller (gzip) within 1 point; the served
    variant >= 1.5x faster than fp32 at batch 32 and not slower at batch 1."""
    v, served = run["variants"], run["variant"]
    fp32 = v["fp32"]
    notes = []
    if "pruned_int8" in v:
        p = v["pruned_int8"]
        ratio, drop = fp32["gzip_bytes"] / p["gzip_bytes"], 100 * (fp32["accuracy"] - p["accuracy"])
        notes.append(
            f"pruned_int8 {ratio:.1f}x smaller, {drop:+.2f} points: {'met' if ratio >= 10 and drop <= 1 else 'missed'}"
        )
    s = v[served]
    speed = fp32["latency_ms_b32_p50"] / s["latency_ms_b32_p50"] if s["latency_ms_b32_p50"] else 0.0
    b1 = s["latency_ms_p50"] / fp32["latency_ms_p50"] if fp32["latency_ms_p50"] else 1.0
    notes.append(f"served {served} {speed:.2f}x faster at b32, b1 {b1:.2f}x fp32's time")
    return "; ".join(notes)


def beats(kiln: float, peer: float) -> str:
    """yes / tie / no. Reports round accuracy to 6 digits, so equal item counts must compare equal."""
    kiln, peer = round(kiln, 6), round(peer, 6)
    return "yes" if kiln > peer else "tie" if kiln == peer else "no"


def previous_rows(path: Path, start: str = START, end: str = END) -> dict[str, list[str]]:
    """Rows of a table already in ``path``, by data set name (``--only`` keeps the others)."""
    text = path.read_text() if path.exists() else ""
    if start not in text or end not in text:
        return {}
    section = text.split(start, 1)[1].split(end, 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| data set")]
    by_name: dict[str, list[str]] = {}
    for row in rows:
        by_name.setdefault(row.split("|")[1].strip(), []).append(row)
    return by_name


def run_quality_bench(
    workdir: Path,
    trials: int,
    only: list[str] | None,
    machine: str,
    shared: Path = SHARED,
    keep: tuple[dict, dict] | None = None,
    reuse_default: bool = False,
) -> tuple[list[str], list[str]]:
    """The quality table and the per-data-set variant table; ``keep`` holds the rows of both tables from
    the last run, by data set, for the data sets ``only`` leaves out. With ``reuse_default``, the peer and
    default columns come from the last run's quality.json and only the tuned column is trained."""
    from training.data.sample_data import write_sample_data

    sample = write_sample_data(workdir / "sample")
    rows, compression = [], []
    saved = workdir / "quality.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    kept_rows, kept_variants = keep or ({}, {})
    for name, (task, path) in datasets(sample, shared).items():
        if only and name not in only:
            # not rerun: the earlier measurements stay in the tables
            rows += kept_rows.get(name, [])
            compression += kept_variants.get(name, [])
            continue
        if reuse_default:
            if name not in results:
                raise SystemExit(f"--reuse-default: {saved} has no run of {name!r}; run the bench without it first")
            peer, default = results[name]["peer"], results[name]["default"]
        else:
            peer, default = classic_peer(task, path), kiln_run(task, path, workdir, None)
        tuned = kiln_run(task, path, workdir, trials) if trials else None
        results[name] = {"peer": peer, "default": default, "tuned": tuned}
        compression += variant_rows(name, default) + [f"| {name} | targets: {targets(default)} |" + " |" * 8]
        verdict = beats(default["accuracy"], peer["accuracy"])
        peer_cell = f"{peer['accuracy']:.4f} ({peer['seconds']:.1f} s)"
        rows.append(
            f"| {name} | {task} | {default['test']} | {peer['name']} | {peer_cell} "
            f"| {peer['accuracy_train_val']:.4f} "
            f"| {default['accuracy']:.4f} ({default['model']}, {default['variant']}, "
            f"{default['train_seconds']:.0f} s train) | {tuned_cell(tuned, trials)} | {verdict} |"
        )
    saved.write_text(json.dumps(results, indent=2, default=str))  # every data set's latest run
    return [
        START,
        "## Quality against classic peers (CPU)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on: {machine}. Every row uses Kiln's own cleaning and "
        "stable split (seed 42) and every column scores the same test split. The peer follows Kiln's protocol: "
        "it fits on the training split and chooses its C on the validation split (Kiln chooses its epoch "
        "there), so both learn from the same examples; the next column refits the peer on train + validation "
        "(about 20% more data than either was given) for reference. Kiln columns are the served variant from "
        "the retrain flow; "
        + (
            "tuned = `kiln run --trials N` (N and whether the best trial beat the default on validation are in "
            "each cell)."
            if trials
            else "the tuned column was not run this time."
        )
        + (f" This run measured {', '.join(only)}; the other rows are from the previous run." if only else "")
        + (" Its peer and default columns are the previous run's (`--reuse-default`).\n" if reuse_default else "\n"),
        "| data set | task | test items | classic peer | peer accuracy | peer on train + val | Kiln default "
        "| Kiln tuned | default beats peer |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        END,
    ], [
        VARIANTS_START,
        "## Compression variants per data set (CPU)\n",
        "Every variant of the default run above, measured on the validation split (where the served one is "
        "chosen) with ONNX Runtime on all cores; ratios and the accuracy drop (points) are against fp32. "
        "Targets: pruned_int8 at least 10x smaller (gzip) within 1 point; the served variant at least 1.5x "
        "faster than fp32 at batch 32 and not slower at batch 1.\n",
        WHY_TARGETS_MISSED,
        "| data set | variant | method | gzip bytes | gzip x smaller | sparsity | accuracy | drop vs fp32 "
        "| b1 p50 ms | b32 p50 ms | b32 x faster |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *compression,
        VARIANTS_END,
    ]


def main() -> None:
    from bench.serving import machine
    from bench.data_pipeline import splice

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="Optuna trials for the tuned column (0: skip it)")
    parser.add_argument(
        "--only", nargs="*", help="data set names to run (default: all); the other rows already in --out stay"
    )
    parser.add_argument(
        "--reuse-default",
        action="store_true",
        help="take the peer and default columns from the last run's quality.json; train only the tuned column",
    )
    parser.add_argument("--workdir", type=Path, default=Path(".kiln/bench-quality"))
    parser.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    parser.add_argument("--datasets", type=Path, default=SHARED, help="folder of the shared data sets")
    args = parser.parse_args()
    keep = (previous_rows(args.out), previous_rows(args.out, VARIANTS_START, VARIANTS_END)) if args.only else None
    quality, variants = run_quality_bench(
        args.workdir, args.trials, args.only, machine(), args.datasets, keep, args.reuse_default
    )
    splice(args.out, quality, START, END)
    splice(args.out, variants, VARIANTS_START, VARIANTS_END)
    print(f"wrote the quality section of {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
