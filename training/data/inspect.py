"""Data inspection: the validation summary, data_report.json / data_report.md, quarantine.csv and plots.

``kiln data inspect`` and ``kiln run`` both call ``write_data_report`` after cleaning and splitting, so
the report a user reads before training is the one the run keeps.

    >>> paths = write_data_report(dataset, (train, val, test), cfg, Path("out"))  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['json', 'markdown', 'plots', 'quarantine']
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from serving.preprocess import build_vocabulary, tokenize
from training.config import RunConfig
from training.data.dataset import MULTI_LABEL_ADVICE, Dataset, first_of
from training.data.features import class_weights, text_length, token_counts
from training.data.label_audit import FOLDS, Audit, audit_and_exclude
from training.kinds import kind_of

log = logging.getLogger(__name__)

PERCENTILES = (5, 50, 90, 95, 99)
SUSPECTS_SHOWN = 20  # label-audit suspects shown in the data report (label_issues.csv has all)


def inspect_data(
    task: str,
    data: Path,
    out: Path,
    cfg: RunConfig,
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
    plots: bool = True,
) -> tuple[Dataset, dict[str, Path]]:
    """Ingest, clean and split ``data`` without training, and write the data report under ``out``."""
    from training.data.clean import load_dataset
    from training.data.split import split_dataset

    dataset = load_dataset(task, data, text_column, label_column, header, cfg.data)
    train, val, test = split_dataset(dataset, cfg.data)
    audit, train, val = audit_and_exclude(dataset, train, val, cfg.data)
    return dataset, write_data_report(dataset, (train, val, test), cfg, out, plots, audit)


def imbalance(train: Dataset, cfg: RunConfig) -> dict[str, Any]:
    """Largest over smallest class of the training split, and whether training weights classes because
    of it (the same decision ``training.fit.train.class_weights`` makes)."""
    counts = Counter(train.labels)
    ratio = max(counts.values()) / min(counts.values()) if counts else 1.0
    weighted = class_weights(train.labels, train.label_names, cfg.train) is not None if counts else False
    return {
        "ratio": round(ratio, 3),
        "threshold": cfg.train.imbalance_ratio,
        "class_weights": "balanced" if weighted else "none",
        "setting": cfg.train.class_weights,
    }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    return {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES} | {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": round(float(values.mean()), 2),
    }


def _channels(mode: str) -> str:
    bands = {"1": 1, "L": 1, "P": 3, "I": 1, "F": 1, "LA": 2, "PA": 4, "RGB": 3, "RGBA": 4, "CMYK": 4}
    return str(bands.get(mode, 1 if mode.startswith("I;") else 3))


def image_summary(dataset: Dataset) -> dict[str, Any]:
    widths = np.array([w for w, _ in dataset.sizes])
    heights = np.array([h for _, h in dataset.sizes])
    common = Counter(f"{w}x{h}" for w, h in dataset.sizes).most_common(5)
    return {
        "width": _percentiles(widths),
        "height": _percentiles(heights),
        "most_common_sizes": dict(common),
        "modes": dict(Counter(dataset.modes).most_common()),
        "channels": dict(Counter(_channels(mode) for mode in dataset.modes).most_common()),
        "colour": dataset.colour,
    }


def text_summary(dataset: Dataset, train: Dataset, test: Dataset, cfg: RunConfig) -> dict[str, Any]:
    """Token-length percentiles, the model length they lead to, and how much of the test split's text
    the training vocabulary covers."""
    vocabulary = set(build_vocabulary(train.inputs, cfg.text_model.max_tokens, cfg.text_model.min_count))
    test_tokens = [tok for text in test.inputs for tok in tokenize(text)]
    counts = token_counts(dataset.inputs)
    max_length = text_length(train.inputs, cfg) if len(train) else None
    return {
        "tokens": _percentiles(counts),
        "max_length": max_length,
        "truncated_share": round(float(np.mean(counts > max_length)), 4) if max_length and len(counts) else 0.0,
        "vocabulary_size": len(vocabulary),
        "test_vocabulary_coverage": (
            round(sum(tok in vocabulary for tok in test_tokens) / len(test_tokens), 4) if test_tokens else None
        ),
    }


def lookalike_labels(labels: Iterable[str]) -> list[list[str]]:
    """Groups of labels that differ only in letter case, spacing, hyphens or underscores ("pos" and " POS",
    "sci-fi" and "sci_fi"): almost always one class spelt two ways in the file, which training would learn as two.
    Kiln reports them and changes nothing: the file is the user's to fix.

    >>> lookalike_labels(["pos", "POS", "neg", "sci-fi", "Sci Fi"])
    [['POS', 'pos'], ['Sci Fi', 'sci-fi']]
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for label in sorted(set(labels)):
        groups[" ".join(re.split(r"[\s_\-]+", label.casefold())).strip()].append(label)
    return [group for group in groups.values() if len(group) > 1]


LABEL_SEPARATORS = (",", ";", "|")  # not "/": single labels hold it ("Sci/Tech")


def combined_labels(labels: Iterable[str]) -> list[str]:
    """Labels that are several labels at once: a JSON list, or other labels joined by a separator ("sports,
    politics" beside "sports" and "politics"). Multi-label data: single-label training learns each combination
    as a class of its own. Reported, never changed.

    >>> combined_labels(["sports", "politics", "sports,politics", "Sci/Tech", '["a", "b"]', "x;y"])
    ['["a", "b"]', 'sports,politics']
    """
    known = set(labels)
    found = []
    for label in sorted(known):
        if label.startswith("[") and label.endswith("]"):
            try:
                if isinstance(json.loads(label), list):
                    found.append(label)
                continue
            except ValueError:
                pass
        for sep in LABEL_SEPARATORS:
            parts = [part.strip() for part in label.split(sep)]
            if len(parts) > 1 and all(part in known for part in parts):
                found.append(label)
                break
    return found


def summarize(dataset: Dataset, splits: tuple[Dataset, Dataset, Dataset], cfg: RunConfig) -> dict[str, Any]:
    """The validation summary that goes into report.json ``data``."""
    train, val, test = splits
    summary: dict[str, Any] = {
        "imbalance": imbalance(train, cfg),
        "lookalike_labels": lookalike_labels(dataset.label_names),
        "combined_labels": combined_labels(dataset.label_names),
        "split_classes": {
            name: dict(sorted(Counter(part.labels).items()))
            for name, part in (("train", train), ("validation", val), ("test", test))
        },
    }
    return summary | kind_of(dataset.task).summary(dataset, train, test, cfg)


def near_duplicate_pairs(dataset: Dataset, limit: int = 12) -> list[tuple[int, int]]:
    """Up to ``limit`` pairs of kept items that share a near-duplicate group (first two of each group)."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(dataset.groups):
        members[group].append(i)
    pairs = [(m[0], m[1]) for m in members.values() if len(m) > 1]
    return pairs[:limit]


def write_data_report(
    dataset: Dataset,
    splits: tuple[Dataset, Dataset, Dataset],
    cfg: RunConfig,
    out: Path,
    plots: bool = True,
    audit: Audit | None = None,
) -> dict[str, Path]:
    """Summarise the data into its report, then write data_report.json, data_report.md, quarantine.csv,
    label_issues.csv (with a label ``audit``) and (optionally) PNG plots under ``out``."""
    from training.data import plots as draw

    out.mkdir(parents=True, exist_ok=True)
    dataset.report.details["summary"] = summarize(dataset, splits, cfg)
    paths: dict[str, Path] = {}
    if audit is not None:
        dataset.report.details["label_issues"] = audit.summary()
        paths["label_issues"] = audit.write_csv(out / "label_issues.csv")
    report = dataset.report.to_dict()
    paths["quarantine"] = dataset.report.write_quarantine(out / "quarantine.csv")
    images: dict[str, Path] = {}
    if plots:
        images = draw.draw_all(dataset, splits[0], cfg, out / "plots", near_duplicate_pairs(dataset))
        if audit is not None and audit.issues and dataset.task == "image":
            suspects = audit.issues[:SUSPECTS_SHOWN]
            images["label_issues"] = draw.label_issue_grid(suspects, out / "plots" / "label_issues.png")
    paths["json"] = out / "data_report.json"
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    paths["markdown"] = out / "data_report.md"
    paths["markdown"].write_text(render_markdown(dataset, report, images, out, audit), encoding="utf-8")
    paths.update({f"plot_{k}": v for k, v in images.items()})
    log.info(
        "data report: %s (%d quarantined items in %s)",
        paths["markdown"],
        len(dataset.report.quarantine),
        paths["quarantine"],
    )
    return paths


def _label_issue_lines(audit: Audit, task: str) -> list[str]:
    """The data report's label-audit section: what was measured, and the top suspects (texts in a table; images
    in the label_issues plot)."""
    s = audit.summary()
    lines = [
        "## Label audit",
        "",
        f"{s['flagged']} of {s['items_audited']} training and validation labels look wrong (estimated noise rate "
        f"{s['estimated_noise_rate']:.1%}; {s['method']}; {s['model']}; {s['seconds']:.1f} s). All of them, most "
        "suspect first, in label_issues.csv; `data.label_issues: exclude` leaves them out of fitting.",
    ]
    if audit.classes_not_audited:
        shown = first_of(audit.classes_not_audited, 20, lambda c: f"`{c}`")
        lines += [
            "",
            f"Not audited: {s['items_not_audited']} items of {len(audit.classes_not_audited)} class(es) with fewer "
            f"than {FOLDS} training and validation items, too few to cross-validate ({shown}); they are kept "
            "as labelled.",
        ]
    if caveat := audit.caveat():
        lines += ["", f"**Caution:** {caveat}."]
    if audit.issues and task == "text":
        rows = [
            (i.item, i.given, i.suggested, f"{i.score:.2f}", str(i.content)[:100])
            for i in audit.issues[:SUSPECTS_SHOWN]
        ]
        lines += ["", *_table(rows, ("item", "given", "suggested", "score", "text"))]
    return lines


def lookalike_lines(groups: list[list[str]] | None) -> list[str]:
    """The report's warning about labels spelt two ways (lookalike_labels), or nothing."""
    if not groups:
        return []
    shown = "; ".join(" / ".join(f"`{label}`" for label in group) for group in groups)
    return [
        "",
        "**Warning:** labels that differ only in case, spacing, hyphens or underscores are trained as different "
        f"classes: {shown}. If each group is one class, write it one way in the data and run again.",
    ]


def combined_lines(labels: list[str] | None) -> list[str]:
    """The report's warning about labels that are several labels at once (combined_labels), or nothing."""
    if not labels:
        return []
    shown = first_of(labels, 10, lambda label: f"`{label}`")
    return ["", f"**Warning:** {MULTI_LABEL_ADVICE.format(shown=shown)}"]


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def render_markdown(
    dataset: Dataset, report: dict[str, Any], images: dict[str, Path], out: Path, audit: Audit | None = None
) -> str:
    """The human-readable data report (also published as a Prefect markdown artifact)."""
    summary = report.get("summary", {})
    counted = [
        (k, report[k])
        for k in (
            "rows_read",
            "rows_kept",
            "duplicates_removed",
            "conflicting_labels",
            "near_duplicates",
            "unreadable_skipped",
            "missing_file_skipped",
            "empty_skipped",
            "missing_label_skipped",
            "malformed_skipped",
            "hidden_ignored",
        )
    ]
    lines = [f"# Data report: {report['source']}", "", f"Task: {dataset.task}.", ""]
    lines += _table(counted, ("count", "items"))
    split_classes = summary.get("split_classes", {})
    lines += ["", "## Classes", ""]
    rows = [
        (label, n, *(split_classes.get(s, {}).get(label, 0) for s in ("train", "validation", "test")))
        for label, n in report["classes"].items()
    ]
    lines += _table(rows, ("label", "kept", "train", "validation", "test"))
    lines += lookalike_lines(summary.get("lookalike_labels"))
    lines += combined_lines(summary.get("combined_labels"))
    imb = summary.get("imbalance")
    if imb:
        lines += [
            "",
            f"Imbalance ratio (largest / smallest class): {imb['ratio']}; class weights in training: "
            f"**{imb['class_weights']}** (train.class_weights = {imb['setting']}, threshold {imb['threshold']}).",
        ]
    if "leakage" in report:
        leak = report["leakage"]
        lines += [
            "",
            f"Leakage: {leak['test_near_train']} test and {leak['validation_near_train']} validation items "
            "have an exact or near duplicate in training.",
        ]
    if "images" in summary:
        s = summary["images"]
        lines += [
            "",
            "## Images",
            "",
            f"Modes: {s['modes']}; colour: {s['colour']}; most common sizes: {s['most_common_sizes']}.",
            f"Width {s['width']}; height {s['height']}.",
        ]
    if "texts" in summary:
        s = summary["texts"]
        lines += [
            "",
            "## Texts",
            "",
            f"Tokens per text: {s['tokens']}.",
            f"Model length: {s['max_length']} tokens ({s['truncated_share']:.1%} of texts are cut); "
            f"vocabulary {s['vocabulary_size']}; test vocabulary coverage {s['test_vocabulary_coverage']}.",
        ]
        pairs = near_duplicate_pairs(dataset, 10)
        if pairs:
            lines += ["", "### Near-duplicate texts (kept, same split)", ""]
            lines += _table([(dataset.inputs[a][:80], dataset.inputs[b][:80]) for a, b in pairs], ("text", "near copy"))
    if audit is not None:
        lines += ["", *_label_issue_lines(audit, dataset.task)]
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({path.relative_to(out)})" for name, path in images.items()]
    quarantine = dataset.report.quarantine
    lines += ["", f"## Quarantined items ({len(quarantine)}; all of them in quarantine.csv)", ""]
    if quarantine:
        lines += _table([(q.item, q.kind, q.reason) for q in quarantine[:200]], ("item", "kind", "reason"))
        if len(quarantine) > 200:
            lines += ["", f"... and {len(quarantine) - 200} more in quarantine.csv."]
    return "\n".join(lines) + "\n"
