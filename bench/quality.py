"""The quality benchmark under the user protocol (DESIGN.md contract 6, issue 17): every data set gets one fixed
train file and one test file (bench.splits: the official split where there is one, a dev file joining train, else
a seeded stratified 80/20 split written to files), and then, per data set:

1. ``kiln run --task T --data <train file>`` with default settings, exactly as a user would run it, in a fresh
   process per run (its wall time and peak RSS measured from outside: ``os.wait4`` on the process);
2. the registered version's served variant, loaded with ``serving.runtime.Classifier`` (ONNX Runtime, the
   preprocessing ``kiln serve`` uses, in this process, no HTTP), classifies every item of the test file it never saw;
3. the classic peer fits the same whole train file: for texts TF-IDF 1-2-grams (sublinear) + LinearSVC, TF-IDF
   unigrams (sublinear) + LinearSVC and counts + multinomial naive Bayes; for images an RBF SVM (C=10) and logistic
   regression on raw pixels at Kiln's model input size (from the registered version's spec); scikit-learn defaults
   otherwise. The best candidate *on the test file* is the row's peer (the contract's "strongest classic baseline");
   every candidate's score is kept;
4. the difference, McNemar's exact p-value on the per-item correctness of Kiln's served model and the best peer, and
   the verdict (bench.protocol: a win is beating the peer by min(0.5 points, 40% of its error));
5. with ``--trials N``, ``kiln run --trials N`` on the same train file (the tuned column), scored the same way.

No setting of Kiln or of the peer is chosen by looking at a test file. Every variant of each default run is kept
(the per-data-set compression table). `make bench-quality` runs it; it writes docs/bench/quality.json and renders
docs/BENCHMARKS.md. ``--only`` reruns some data sets and keeps the other rows of the previous quality.json;
``--reuse-default`` takes the peer and default columns from it and trains only the tuned column; ``--keep-tuned``
(with ``--trials 0``) reruns the default and peer columns and keeps each rerun row's earlier tuned column.

    $ .venv/bin/python -m bench.quality --trials 10
    $ .venv/bin/python -m bench.quality --only mr cr --reuse-default --trials 4
    $ .venv/bin/python -m bench.quality --only sample_texts --trials 0 --out /tmp/quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, envelope, read_result, utc_now, write_result
from bench.protocol import (
    OFFICIAL_IMAGE_SETS,
    OFFICIAL_TEXT_SETS,
    ROW_SCHEMA,
    SET_ORDER,
    SPLIT_IMAGE_SETS,
    SPLIT_TEXT_SETS,
    bar_points,
    compare,
    is_user_protocol,
    set_name,
)
from bench.splits import SEED, TEST_FRACTION, Split, SplitSource, image_items, prepare_split, read_text_rows

# The development data sets sit beside the repository (../shared/datasets); --datasets overrides.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
# The variants in the order the compression report lists them.
VARIANT_ORDER = ("fp32", "int8", "pruned", "pruned_int8", "qat", "pruned_qat", "fp16")
VARIANT_KEYS: tuple[str, ...] = ("method", "bytes", "gzip_bytes", "sparsity", "accuracy", "macro_f1", "latency_ms_p50")
VARIANT_KEYS += ("latency_ms_p95", "latency_ms_b32_p50", "throughput_per_s")
BATCH = 256  # test items per ONNX Runtime call
SCORING = "in process: the registered version's served variant through serving.runtime.Classifier (no HTTP)"
TEXT_PEERS = ("TF-IDF 1-2-gram + LinearSVC", "TF-IDF unigram + LinearSVC", "counts + multinomial NB")
IMAGE_PEERS = ("RBF SVM (C=10) on pixels", "logistic regression on pixels")


# ---------------------------------------------------------------------------------------------- data sets


def available_sets(shared: Path = SHARED) -> list[str]:
    """The data sets present, in table order: the bundled sample data always, the shared ones when found."""
    found = []
    for name in SET_ORDER:
        folder = shared / name
        if (
            name.startswith("sample_")
            or (name in OFFICIAL_TEXT_SETS and (folder / "train.csv").is_file() and (folder / "test.csv").is_file())
            or (name in SPLIT_TEXT_SETS and (folder / "data.csv").is_file())
            or (name in OFFICIAL_IMAGE_SETS and (folder / "train").is_dir() and (folder / "test").is_dir())
            or (name in SPLIT_IMAGE_SETS and (folder / "images").is_dir())
        ):
            found.append(name)
    return found


def split_source(name: str, workdir: Path, shared: Path = SHARED) -> SplitSource:
    """Where data set ``name``'s items come from (the sample data is written under ``workdir/sample`` first)."""
    if name.startswith("sample_"):
        from training.data.sample_data import write_digit_images, write_texts_csv

        sample = workdir / "sample"
        if name == "sample_texts":
            write_texts_csv(sample / "texts.csv")  # seeded: the same bytes every time
            return SplitSource(name, "text", (sample / "texts.csv",))
        if not (sample / "images" / "9").is_dir():
            write_digit_images(sample / "images")
        return SplitSource(name, "image", (sample / "images",))
    folder = shared / name
    if name in OFFICIAL_TEXT_SETS:
        train = tuple(folder / f for f in ("train.csv", "dev.csv") if (folder / f).is_file())
        return SplitSource(name, "text", train, folder / "test.csv")
    if name in SPLIT_TEXT_SETS:
        return SplitSource(name, "text", (folder / "data.csv",))
    if name in OFFICIAL_IMAGE_SETS:
        return SplitSource(name, "image", (folder / "train",), folder / "test")
    if name in SPLIT_IMAGE_SETS:
        return SplitSource(name, "image", (folder / "images",))
    raise SystemExit(f"unknown data set {name!r}; known: {', '.join(SET_ORDER)}")


@dataclass
class Items:
    """Labelled items as the scorers see them: texts, or image file bytes."""

    inputs: list[Any]
    labels: list[str]
    skipped: int = 0  # empty texts or labels, unreadable images: nothing to score or learn


def load_items(split: Split, side: str) -> Items:
    """The train or test side of a split. Items without a text or a label, and images that do not decode, cannot be
    scored (or fed to scikit-learn) and are left out and counted; Kiln gets the train file as it is."""
    path = split.train if side == "train" else split.test
    if split.task == "text":
        rows = read_text_rows(path)
        kept = [(t, lab.strip()) for t, lab in rows if t.strip() and lab.strip()]
        return Items([t for t, _ in kept], [lab for _, lab in kept], len(rows) - len(kept))
    from serving.preprocess import InvalidImage, decode_image

    inputs, labels, skipped = [], [], 0
    for file, label in image_items(path):
        data = file.read_bytes()
        try:
            decode_image(data)
        except InvalidImage:
            skipped += 1
            continue
        inputs.append(data)
        labels.append(label.strip())
    return Items(inputs, labels, skipped)


def scores(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 (over the classes of the test file, as Kiln's own evaluation counts them)."""
    from sklearn.metrics import f1_score

    correct = sum(t == p for t, p in zip(truth, predicted, strict=True))
    present = sorted(set(truth))
    f1 = f1_score(list(truth), list(predicted), labels=present, average="macro", zero_division=0)
    return {
        "accuracy": round(correct / len(truth), 6),
        "macro_f1": round(float(f1), 6),
        "correct": correct,
    }


# ------------------------------------------------------------------------------------------------- Kiln


def kiln_command() -> list[str]:
    """The `kiln` console script of this environment (as a user runs it), or its entry point."""
    script = Path(sys.executable).parent / "kiln"
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from flows.cli import main; main()"]


def run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[int, float, float]:
    """Run ``cmd`` (output to ``log``) and wait for it: exit code, wall seconds, and peak RSS in MiB of the largest
    process of the run (wait4's rusage: the process and every descendant it waited for)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024  # Linux: KiB


def variant_list(variants: dict[str, dict[str, Any]], parity: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A run's variants as rows, fp32 first, each with its ratios against fp32 computed from the unrounded
    measurements (the renderer shows them and checks the targets with them) and its top-1 agreement with fp32 on
    the same validation items (``parity``)."""
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
        if name != "fp32" and "top1_agreement" in (parity or {}).get(name, {}):
            rows[-1]["agreement"] = parity[name]["top1_agreement"]  # type: ignore[index]
        if "not_served" in v:  # made and measured, but the selection could not judge it
            rows[-1]["not_served"] = v["not_served"]
    return rows


def internal_test_variants(report: dict[str, Any]) -> dict[str, Any] | None:
    """Every CPU variant of a run as report.json scores it on Kiln's own internal test split of the train file
    (compression.compress.score_unseen, after the served variant was chosen): items no fit, refit or choice saw,
    unlike validation, which the refit learnt from. Per variant: accuracy and top-1 agreement with fp32. None for
    a run made before the report held them. Reads no test file."""
    scored = {
        name: {"accuracy": v["test"]["accuracy"], "agreement": v["test"]["top1_agreement"]}
        for name, v in report["variants"].items()
        if v.get("device", "any") == "any" and "test" in v
    }
    if "fp32" not in scored:
        return None
    return {"items": report["variants"]["fp32"]["test"]["examples"], "variants": scored}


def served_predictions(store: Path, task: str, version_name: str, test: Items) -> tuple[list[str], dict[str, Any]]:
    """The test items classified by the registered version's served variant (the production one; a version the
    gate kept out of production is scored too, and marked), that version's spec, and how calibrated its scores
    are on the test file (calibration_of)."""
    import numpy as np

    from compression.export import without_calibration
    from serving.runtime import Classifier, make_session
    from serving.store import ModelStore

    model_store = ModelStore(store)
    version = model_store.production_version(task)
    promoted = version is not None and version.version == version_name
    if not promoted:
        version = model_store.get(task, version_name)
    assert version is not None
    classifier = Classifier.from_version(version)
    raw = Classifier(make_session(without_calibration(version.variant_path().read_bytes())), classifier.spec)
    parts, raw_parts = [], []
    for start in range(0, len(test.inputs), BATCH):
        chunk = test.inputs[start : start + BATCH]
        batch = classifier.prepare_texts(chunk) if task == "text" else classifier.prepare_images(chunk)
        parts.append(classifier.predict(batch))
        raw_parts.append(raw.predict(batch))
    empty = np.zeros((0, len(classifier.labels)))
    probs = np.concatenate(parts) if parts else empty
    raw_probs = np.concatenate(raw_parts) if raw_parts else empty
    predicted = [classifier.labels[int(i)] for i in probs.argmax(axis=1)]
    served_metrics = version.manifest.get("metrics", {})
    calibration = calibration_of(probs, raw_probs, test.labels, classifier.labels, served_metrics)
    described = {"version": version.version, "promoted": promoted, "spec": version.manifest["spec"]}
    stored = sum(path.stat().st_size for path in version.path.rglob("*") if path.is_file())  # what it keeps
    return predicted, described | {"calibration": calibration, "stored_bytes": stored}


def calibration_of(
    probs: Any, raw: Any, truth: Sequence[str], labels: Sequence[str], served: dict[str, Any]
) -> dict[str, Any]:
    """ECE (15 bins) of the served scores on the test file, with the graph's calibration map (``probs``) and
    without it (``raw``: the same graph without the map), the map's family and temperature from the version's
    ``served`` metrics, and how many top-1 labels the map changed (none: it is increasing in each logit)."""
    import numpy as np

    from training.models.calibration import expected_calibration_error

    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index.get(label, -1) for label in truth])
    return {
        "temperature": float(served.get("temperature", 1.0)),
        "link": served.get("link", "temperature"),
        "ece": expected_calibration_error(probs, y),
        "ece_uncalibrated": expected_calibration_error(raw, y),
        "labels_changed": int(np.sum(raw.argmax(axis=1) != probs.argmax(axis=1))),
    }


def describe_input(spec: dict[str, Any]) -> str:
    """The model input, as the table's notes name it: ``32x32x3`` or ``max 64 tokens, 20,000 words``."""
    if "height" in spec:
        return f"{spec['height']}x{spec['width']}x{spec['channels']}"
    return f"max {spec.get('max_length', '?')} tokens, {len(spec.get('vocabulary', [])):,} words"


def kiln_run(
    split: Split, test: Items, workdir: Path, trials: int | None, measured: str, config: Path | None = None
) -> tuple[dict[str, Any], list[str]]:
    """`kiln run` on the whole train file (default settings; ``--trials`` for the tuned column; ``config`` for a
    benchmark that changes one setting) in a fresh process with a fresh store, then its served variant scored on
    the test file: the column and its predictions."""
    tag = f"{split.name}-t{trials}" if trials else f"{split.name}-default"
    run_dir, store = workdir / "runs" / tag, workdir / "store" / tag
    for old in (run_dir, store):  # a fresh store: the run's version is the first, so nothing gates against it
        shutil.rmtree(old, ignore_errors=True)
    cmd = [*kiln_command(), "run", "--task", split.task, "--data", str(split.train)]
    cmd += ["--out", str(run_dir), "--store", str(store)] + (["--trials", str(trials)] if trials else [])
    cmd += ["--config", str(config)] if config else []
    env = {**os.environ, "PREFECT_HOME": str(workdir / "prefect-home")}
    print(f"{split.name}: {' '.join(cmd[-10:])}", flush=True)
    code, seconds, rss = run_measured(cmd, workdir / "logs" / f"{tag}.log", env)
    report_path = run_dir / "report.json"
    if code != 0 or not report_path.is_file():
        tail = (workdir / "logs" / f"{tag}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"kiln run for {split.name} exited {code}:\n{tail}")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    predicted, version = served_predictions(store, split.task, report["model"]["version"], test)
    served = report["served_variant"]
    column = scores(test.labels, predicted) | {
        "model": report["training"]["model"],
        "variant": served,
        "gzip_bytes": report["variants"][served]["gzip_bytes"],
        "bytes": report["variants"][served].get("bytes"),
        "train_seconds": round(float(report["training"]["train_seconds"]), 1),  # fitting, as report.json says
        "run_seconds": round(seconds, 1),  # the whole `kiln run` process
        "peak_rss_mib": round(rss, 1),
        "kept_items": report["data"]["rows_kept"],  # what Kiln's cleaning kept of the train file
        "version": version["version"],
        "stored_bytes": version["stored_bytes"],  # the registered version's directory on disk
        "promoted": version["promoted"],
        "input": describe_input(version["spec"]),
        # Kiln's own held-out split of the train file: what `kiln run` printed, never the benchmark's score
        "internal_test": {"accuracy": report["metrics"]["accuracy"], "items": report["metrics"]["examples"]},
        "calibration": version["calibration"],  # the served scores on the benchmark's test file
        "measured": measured,
    }
    if trials:
        tuning = report.get("tuning") or {}
        column |= {"trials": trials, "beat_default": tuning.get("beat_default"), "adopted": tuning.get("adopted")}
    else:
        skipped = {name: p["skipped"] for name, p in report.get("parity", {}).items() if "skipped" in p}
        column |= {"variants": variant_list(report["variants"], report.get("parity", {})), "skipped": skipped}
        unseen = internal_test_variants(report)
        if unseen is not None:
            column["internal_test_variants"] = unseen
    column["spec"] = version["spec"] if split.task == "image" else None  # the peer's pixel size; dropped from JSON
    return column, predicted


# ------------------------------------------------------------------------------------------------- peer


def peer_candidates(task: str) -> dict[str, Any]:
    """The classic candidates, scikit-learn defaults except where the protocol names a setting."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC, LinearSVC

    if task == "text":
        made = (
            make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LinearSVC()),
            make_pipeline(TfidfVectorizer(sublinear_tf=True), LinearSVC()),
            make_pipeline(CountVectorizer(), MultinomialNB()),
        )
        return dict(zip(TEXT_PEERS, made, strict=True))
    return dict(zip(IMAGE_PEERS, (SVC(C=10.0), LogisticRegression()), strict=True))


def pixels(images: Sequence[bytes], spec: dict[str, Any]) -> Any:
    """Image file bytes -> float32 rows of raw pixels in [0, 1] at the model's input size (Kiln's decoder)."""
    import numpy as np

    from serving.preprocess import ImageSpec, model_pixels, scale_pixels, spec_from_dict

    image_spec = spec_from_dict(spec)
    assert isinstance(image_spec, ImageSpec), "the image peer needs an image model's spec"
    rows = np.empty((len(images), spec["height"] * spec["width"] * spec["channels"]), np.float32)
    for i, data in enumerate(images):
        rows[i] = scale_pixels(model_pixels(data, image_spec)).reshape(-1)
    return rows


def classic_peer(
    task: str, train: Items, test: Items, spec: dict[str, Any] | None, measured: str
) -> tuple[dict[str, Any], list[str]]:
    """Every candidate fitted on the whole train file and scored on the test file; the best one (on the test file,
    as the contract defines the peer column) and its predictions."""
    from sklearn.exceptions import ConvergenceWarning

    if task == "text":
        x_train, x_test, shown_input = train.inputs, test.inputs, "texts"
    else:
        assert spec is not None, "the image peer reads its pixel size from Kiln's registered version"
        x_train, x_test = pixels(train.inputs, spec), pixels(test.inputs, spec)
        shown_input = f"{spec['height']}x{spec['width']}x{spec['channels']} pixels"
    candidates, best, best_predicted = [], None, []
    for name, model in peer_candidates(task).items():
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x_train, train.labels)
        seconds = time.perf_counter() - started
        predicted = [str(p) for p in model.predict(x_test)]
        found = scores(test.labels, predicted) | {"name": name, "fit_seconds": round(seconds, 2)}
        found["converged"] = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        candidates.append(found)
        if best is None or found["accuracy"] > best["accuracy"]:
            best, best_predicted = found, predicted
        print(f"  peer {name}: {found['accuracy']:.4f} ({seconds:.1f} s)", flush=True)
    assert best is not None
    peer = {
        "name": best["name"],
        "accuracy": best["accuracy"],
        "macro_f1": best["macro_f1"],
        "correct": best["correct"],
        "input": shown_input,
        "train_items": len(train.labels),
        "candidates": candidates,
        "measured": measured,
    }
    return peer, best_predicted


# ---------------------------------------------------------------------------------------------------- rows


def _predictions_path(workdir: Path, name: str) -> Path:
    return workdir / "predictions" / f"{name}.json"


def save_predictions(workdir: Path, split: Split, **columns: list[str]) -> None:
    """Each column's test predictions, for a later --reuse-default run's McNemar test of the tuned column."""
    path = _predictions_path(workdir, split.name)
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if known.get("fingerprint") != split.meta["fingerprint"]:
        known = {"fingerprint": split.meta["fingerprint"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known | columns) + "\n", encoding="utf-8")


def load_predictions(workdir: Path, split: Split, column: str) -> list[str] | None:
    path = _predictions_path(workdir, split.name)
    if not path.is_file():
        return None
    known = json.loads(path.read_text(encoding="utf-8"))
    return known.get(column) if known.get("fingerprint") == split.meta["fingerprint"] else None


def _correct(truth: Sequence[str], predicted: Sequence[str]) -> list[bool]:
    return [t == p for t, p in zip(truth, predicted, strict=True)]


def split_summary(split: Split) -> dict[str, Any]:
    keys = ("method", "described", "seed", "test_fraction", "train_items", "test_items", "test_in_train")
    return {k: split.meta[k] for k in keys} | {"classes": sum(1 for lab in split.meta["train_labels"] if lab.strip())}


def quality_row(
    name: str,
    workdir: Path,
    trials: int,
    measured: str,
    shared: Path = SHARED,
    previous: dict[str, Any] | None = None,
    kept_tuned: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One data set's row under the user protocol. With ``previous`` (a schema-2 row: --reuse-default), its peer and
    default columns are kept and only the tuned column is trained. ``kept_tuned`` (--keep-tuned with --trials 0):
    the earlier row's tuned column, kept with its own measured date."""
    split = prepare_split(split_source(name, workdir, shared), workdir / "splits")
    test = load_items(split, "test")
    print(f"{name}: train {split.meta['train_items']:,} items, test {len(test.labels):,} ({split.meta['described']})")
    if previous is None:
        default, default_predicted = kiln_run(split, test, workdir, None, measured)
        peer, peer_predicted = classic_peer(split.task, load_items(split, "train"), test, default.pop("spec"), measured)
        save_predictions(workdir, split, default=default_predicted, peer=peer_predicted)
        comparison = compare(_correct(test.labels, default_predicted), _correct(test.labels, peer_predicted))
        comparison["bar_points"] = round(bar_points(peer["accuracy"]), 4)
    else:
        default, peer, comparison = previous["default"], previous["peer"], previous["comparison"]
        peer_predicted = load_predictions(workdir, split, "peer") or []
    tuned: dict[str, Any] | None = None
    tuned_note: str | None = "not run (--trials 0)"
    if not trials and kept_tuned is not None:
        tuned, tuned_note = kept_tuned, f"kept from the run of {kept_tuned.get('measured', 'an earlier date')}"
    if trials:
        tuned_note = None
        tuned, tuned_predicted = kiln_run(split, test, workdir, trials, measured)
        tuned.pop("spec")
        save_predictions(workdir, split, tuned=tuned_predicted)
        if len(peer_predicted) == len(test.labels):
            tuned["vs_peer"] = compare(_correct(test.labels, tuned_predicted), _correct(test.labels, peer_predicted))
    return {
        "schema": ROW_SCHEMA,
        "name": name,
        "task": split.task,
        "split": split_summary(split),
        "train_items": split.meta["train_items"],
        "test_items": len(test.labels),
        "test_skipped": test.skipped,
        "default": default,
        "tuned": tuned,
        "tuned_note": tuned_note,
        "peer": peer,
        "comparison": comparison,
    }


def run_quality_bench(
    workdir: Path,
    trials: int,
    only: list[str] | None,
    shared: Path = SHARED,
    previous: dict[str, Any] | None = None,
    reuse_default: bool = False,
    keep_tuned: bool = False,
) -> dict[str, Any]:
    """quality.json's object: one row per data set. The data sets ``only`` leaves out keep their row from
    ``previous`` (the last quality.json; rows of the earlier protocol too, which the renderer lists as not yet
    measured); with ``reuse_default``, the peer and default columns come from there too and only the tuned column
    is trained; with ``keep_tuned`` (and no trials), a rerun row keeps its earlier tuned column: for a change that
    cannot move the tuned run's labels (the calibration map), without paying for the trials again."""
    measured = utc_now()
    sets = available_sets(shared)
    unknown = [n for n in only or [] if n not in sets]
    if unknown:
        raise SystemExit(f"unknown or absent data set(s) {', '.join(unknown)}; available: {', '.join(sets)}")
    if reuse_default and not trials:
        raise SystemExit("--reuse-default trains only the tuned column: give --trials N")
    if keep_tuned and trials:
        raise SystemExit("--keep-tuned keeps the earlier tuned column instead of running one: give --trials 0")
    before: dict[str, dict[str, Any]] = {}
    for row in (previous or {}).get("rows", []):
        # a user-protocol row wins over an earlier-protocol row of the same set
        if set_name(row) not in before or is_user_protocol(row):
            before[set_name(row)] = row
    run = [n for n in sets if not only or n in only]
    rows = []
    for name in [*sets, *(n for n in before if n not in sets)]:
        if name not in run:
            if name in before:  # not rerun: the earlier measurements stay
                rows.append(before[name])
            continue
        old = None
        if reuse_default:
            old = before.get(name)
            if old is None or not is_user_protocol(old):
                raise SystemExit(
                    f"--reuse-default: the previous result has no run of {name!r} under the user protocol; "
                    "run without --reuse-default first"
                )
        kept = before[name].get("tuned") if keep_tuned and is_user_protocol(before.get(name) or {}) else None
        rows.append(quality_row(name, workdir, trials, measured, shared, old, kept))
    parameters = {
        "protocol": "user (issue 17)",
        "trials": trials,
        "only": only,
        "reuse_default": reuse_default,
        "keep_tuned": keep_tuned,
        "seed": SEED,
        "test_fraction": TEST_FRACTION,
        "sets": sets,
        "scoring": SCORING,
        "peers": {"text": list(TEXT_PEERS), "image": list(IMAGE_PEERS)},
    }
    result = envelope("quality", parameters, measured=measured, rows=rows)
    result["schema"] = ROW_SCHEMA
    return result


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
    parser.add_argument(
        "--keep-tuned",
        action="store_true",
        help="with --trials 0: a rerun data set keeps its tuned column from the previous --out, and the page says "
        "that column was made by the code of its own date",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(".kiln/bench-quality"), help="splits, runs, stores, logs (reused)"
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "quality.json", help="the result file (read first)")
    parser.add_argument("--datasets", type=Path, default=SHARED, help="folder of the shared data sets")
    args = parser.parse_args()
    from bench.render import after_benchmark

    result = run_quality_bench(
        args.workdir.resolve(),
        args.trials,
        args.only,
        args.datasets,
        read_result(args.out),
        args.reuse_default,
        args.keep_tuned,
    )
    after_benchmark(write_result(args.out, result))


if __name__ == "__main__":
    main()
