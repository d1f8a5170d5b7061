"""The label audit against planted label errors (issue 20): on each development set, 5% of the train file's labels
are flipped, each uniformly to another class (seeded), and written to a copy of the train file. Then, per set:

1. the audit exactly as `kiln run` runs it (load and clean the flipped file, Kiln's split, confident learning over
   training + validation): among its top K suspects, K being the number of flipped items it audited, the share that
   are flipped (precision at K; the done-when asks for 70%), the recall of everything it flagged, and its seconds;
2. with ``--runs``, `kiln run` on the flipped file twice, ``data.label_issues: report`` (the default: nothing is
   dropped) and ``exclude`` (flagged training items left out of fitting), each served model scored on the set's
   test file (never flipped), and the audit's share of the run's time.

The test file is never read by the audit nor flipped. `make bench-label-flips` runs it and writes
docs/bench/label_flips.json; docs/BENCHMARKS.md renders it.

    $ .venv/bin/python -m bench.label_flips --only notmnist snips --runs notmnist snips
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import random
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, envelope, read_result, utc_now, write_result
from bench.quality import SHARED, available_sets, kiln_run, load_items, split_source
from bench.splits import image_items, prepare_split, read_text_rows

FLIP_SHARE = 0.05
SEED = 20


def flip(labels: list[str], share: float = FLIP_SHARE, seed: int = SEED) -> tuple[list[str], set[int]]:
    """``share`` of the labels, chosen at random, each changed to another class drawn uniformly; and which rows."""
    rng = random.Random(seed)
    classes = sorted(set(labels))
    rows = set(rng.sample(range(len(labels)), round(share * len(labels))))
    flipped = [rng.choice([c for c in classes if c != label]) if i in rows else label for i, label in enumerate(labels)]
    return flipped, rows


def write_flipped(task: str, train: Path, out: Path) -> tuple[Path, dict[str, str]]:
    """The train file with 5% of its labels flipped: a text CSV, or an image manifest (absolute paths). Returns
    the file and, per flipped item's key (the text, or the image path, as the audit's items carry them), its
    true label."""
    out.mkdir(parents=True, exist_ok=True)
    if task == "text":
        rows = [(text.replace("\r", " ").replace("\n", " "), label) for text, label in read_text_rows(train)]
        items = [text for text, _ in rows]
        path = out / "train.csv"
    else:
        pairs = image_items(train)
        rows = [(str(file.resolve()), label) for file, label in pairs]
        items = [file for file, _ in rows]
        path = out / "manifest.csv"
    labels, changed = flip([label for _, label in rows])
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(("text", "label") if task == "text" else ("path", "label"))
        writer.writerows(zip(items, labels, strict=True))
    return path, {items[i].strip(): rows[i][1] for i in changed}


def audit_flipped(task: str, path: Path, flipped: dict[str, str]) -> dict[str, Any]:
    """The audit as `kiln run` runs it on the flipped file, scored against the planted flips."""
    from training.config import load_config
    from training.data.clean import load_source
    from training.data.dataset import Source, joined
    from training.data.label_audit import audit_and_exclude
    from training.data.split import split_dataset

    cfg = load_config(None)
    dataset = load_source(task, Source(str(path)), cfg.data)
    train, val, _ = split_dataset(dataset, cfg.data)
    audit, _, _ = audit_and_exclude(dataset, train, val, cfg.data)  # kiln run's own step, its seed included
    if audit is None:
        raise SystemExit(f"{path}: the label audit does not run on this data set")
    audited = joined(train, val)  # the items the audit's indices count
    # a flipped item kept by cleaning and carrying its flipped label (a duplicate may have kept the true one)
    planted = {
        i
        for i, (item, label) in enumerate(zip(audited.inputs, audited.labels, strict=True))
        if str(item).strip() in flipped and flipped[str(item).strip()] != label
    }
    ranked = [issue.index for issue in audit.issues]
    k = len(planted)
    found = len(planted & set(ranked[:k]))
    return {
        "items_audited": len(audited),
        "flipped_in_file": len(flipped),
        "flipped_audited": k,
        "flagged": len(ranked),
        "precision_at_k": round(found / k, 4) if k else None,
        "recall_of_flagged": round(len(planted & set(ranked)) / k, 4) if k else None,
        "estimated_noise_rate": round(audit.noise_rate, 4),
        "model": audit.model,
        "model_accuracy": round(audit.model_accuracy, 4),  # out of fold, against the (flipped) given labels
        "audit_seconds": round(audit.seconds, 2),
    }


def run_pair(name: str, flipped_train: Path, workdir: Path, shared: Path, measured: str) -> dict[str, Any]:
    """`kiln run` on the flipped file with report and with exclude, each scored on the clean test file."""
    split = prepare_split(split_source(name, workdir, shared), workdir / "splits")
    test = load_items(split, "test")
    exclude = workdir / "exclude.yaml"
    exclude.write_text("data:\n  label_issues: exclude\n", encoding="utf-8")
    out: dict[str, Any] = {}
    for mode, config in (("report", None), ("exclude", exclude)):
        flipped = dataclasses.replace(split, name=f"{name}-flips-{mode}", train=flipped_train)
        column, _ = kiln_run(flipped, test, workdir, None, measured, config)
        report = json.loads((workdir / "runs" / f"{flipped.name}-default" / "report.json").read_text())
        audit = report["data"].get("label_issues") or {}
        out[mode] = {
            "accuracy": column["accuracy"],
            "macro_f1": column["macro_f1"],
            "run_seconds": column["run_seconds"],
            "peak_rss_mib": column["peak_rss_mib"],
            "audit_seconds": audit.get("seconds"),
            "flagged": audit.get("flagged"),
            "excluded": report["data"].get("label_issues_excluded", 0),
        }
    return out


def run_bench(
    workdir: Path, only: list[str] | None, runs: list[str], shared: Path, previous: dict[str, Any] | None
) -> dict[str, Any]:
    measured = utc_now()
    sets = [n for n in available_sets(shared) if not only or n in only]
    before = {row["name"]: row for row in (previous or {}).get("rows", [])}
    rows = []
    for name in sets:
        split = prepare_split(split_source(name, workdir, shared), workdir / "splits")
        path, flipped = write_flipped(split.task, split.train, workdir / "flipped" / name)
        print(f"{name}: {len(flipped):,} labels flipped in {path}", flush=True)
        row = {"name": name, "task": split.task} | audit_flipped(split.task, path, flipped)
        print(f"{name}: precision at K={row['flipped_audited']}: {row['precision_at_k']}", flush=True)
        if name in runs:
            row["runs"] = run_pair(name, path, workdir, shared, measured)
        elif before.get(name, {}).get("runs"):
            row["runs"] = before[name]["runs"]  # the earlier full runs of this set stay
        rows.append(row)
    rows += [row for n, row in before.items() if n not in sets]
    parameters = {"flip_share": FLIP_SHARE, "seed": SEED, "only": only, "runs": runs}
    return envelope("label_flips", parameters, measured=measured, rows=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="data sets to audit (default: every one present)")
    parser.add_argument("--runs", nargs="*", default=[], help="data sets to also train twice (report vs exclude)")
    parser.add_argument("--workdir", type=Path, default=Path(".kiln/bench-quality"), help="splits, runs (reused)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "label_flips.json")
    parser.add_argument("--datasets", type=Path, default=SHARED, help="folder of the shared data sets")
    args = parser.parse_args()
    from bench.render import after_benchmark

    result = run_bench(args.workdir.resolve(), args.only, args.runs, args.datasets, read_result(args.out))
    after_benchmark(write_result(args.out, result))


if __name__ == "__main__":
    main()
