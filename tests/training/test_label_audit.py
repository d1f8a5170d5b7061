"""The label audit finds planted label errors in texts and images from out-of-fold predictions (confident
learning), names them as quarantine.csv does, and with `exclude` leaves them out of training and validation."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TEXT_CLASSES, make_image_folder, write_csv
from training.config import DataConfig, RunConfig
from training.data.clean import clean_images, clean_texts
from training.data.dataset import joined
from training.data.label_audit import HEADER, audit_and_exclude, audit_labels, confident_learning
from training.data.split import split_dataset

ADJECTIVES = ["again", "today", "at last", "as usual", "for once", "twice", "loudly", "quietly", "early", "late"]
VERBS = ["was great", "looked odd", "surprised us", "ended early", "is back", "felt long", "was late"]


def labelled_texts(flip: int, seed: int = 0) -> tuple[list[tuple[str, str]], set[int]]:
    """Distinct texts whose subject says the class, with ``flip`` of them given another class; the flipped rows'
    CSV line numbers (header on line 1)."""
    rng = random.Random(seed)
    rows = [
        (f"{subject} {verb} {adjective}", label)
        for label, subjects in TEXT_CLASSES.items()
        for subject in subjects
        for verb in VERBS
        for adjective in ADJECTIVES[:3]
    ]
    rng.shuffle(rows)
    flipped = set(rng.sample(range(len(rows)), flip))
    labels = sorted(TEXT_CLASSES)
    for i in flipped:
        text, label = rows[i]
        rows[i] = (text, labels[(labels.index(label) + 1) % len(labels)])
    return rows, {i + 2 for i in flipped}


def test_confident_learning_flags_as_many_as_its_noise_rate_least_self_confident_first() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.85, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.6, 0.35, 0.05]]
        + [[0.05, 0.05, 0.9], [0.3, 0.3, 0.4]]
    )
    suspects, noise = confident_learning(probs, y)
    # the confident joint puts items 2 (labelled 0, sure of 1) and 5 (labelled 1, past class 0's threshold) off its
    # diagonal: a noise rate of 2 in 8, so two suspects, the lower p(given) first; item 7 is unsure, not accused
    assert noise == pytest.approx(0.25)
    assert [i for i, _, _ in suspects] == [2, 5]
    assert [likely for _, likely, _ in suspects] == [1, 0]  # the most probable other class
    assert [score for _, _, score in suspects] == pytest.approx([0.9, 0.65])


def test_planted_text_label_errors_are_found_and_named_by_line(tmp_path: Path) -> None:
    rows, flipped_lines = labelled_texts(flip=12)
    dataset = clean_texts(write_csv(tmp_path / "t.csv", rows))
    audit = audit_labels(dataset)

    found = {int(issue.item.removeprefix("line ")) for issue in audit.issues}
    assert all(issue.item.startswith("line ") for issue in audit.issues)
    assert len(found & flipped_lines) >= 9, (sorted(found), sorted(flipped_lines))  # recall >= 0.75
    assert len(found - flipped_lines) <= 4  # few clean items accused
    assert 0.02 < audit.noise_rate < 0.2  # 12 of 378 are wrong: 3%
    scores = [issue.score for issue in audit.issues]
    assert scores == sorted(scores, reverse=True)  # most suspect first
    for issue in audit.issues:
        assert issue.given != issue.suggested and issue.suggested in TEXT_CLASSES

    path = audit.write_csv(tmp_path / "label_issues.csv")
    with path.open() as fh:
        table = list(csv.reader(fh))
    assert tuple(table[0]) == HEADER and len(table) == len(audit.issues) + 1


def test_planted_image_label_errors_are_found_and_named_by_path(tmp_path: Path) -> None:
    # 5% of the labels wrong, as in the label-flip benchmark (on a few dozen pictures the confident joint, whose
    # thresholds easy items set near 1, counts too few wrong labels to flag them all)
    root = make_image_folder(tmp_path / "images", per_class=100)
    moves = [
        (path, target)
        for source, target in (("horizontal", "vertical"), ("vertical", "diagonal"), ("diagonal", "horizontal"))
        for path in sorted((root / source).glob("*.png"))[:5]
    ]
    for path, target in moves:
        shutil.move(path, root / target / path.name)
    moved = {f"{target}/{path.name}" for path, target in moves}
    dataset = clean_images(root)
    audited = moved & set(dataset.names)  # cleaning drops a moved picture whose exact copy keeps the true label
    audit = audit_labels(dataset)
    found = {issue.item for issue in audit.issues}
    assert len(found & audited) >= len(audited) // 2, (sorted(found), sorted(audited))
    assert len(found - audited) <= 2


def test_exclude_leaves_suspects_out_of_training_and_validation(tmp_path: Path) -> None:
    rows, flipped_lines = labelled_texts(flip=12, seed=1)
    dataset = clean_texts(write_csv(tmp_path / "t.csv", rows))
    kept_before = dataset.report.rows_kept
    cfg = DataConfig(label_issues="exclude")
    train, val, test = split_dataset(dataset, cfg)
    audit, fit_train, fit_val = audit_and_exclude(dataset, train, val, cfg)

    assert audit is not None and audit.issues
    suspects = {issue.item for issue in audit.issues}
    fitted = {joined(fit_train, fit_val).name(i) for i in range(len(fit_train) + len(fit_val))}
    assert not suspects & fitted and len(fitted) == len(train) + len(val) - len(suspects)
    quarantined = {q.item for q in dataset.report.quarantine if q.kind == "label_issues_excluded"}
    assert quarantined == suspects
    assert dataset.report.to_dict()["label_issues_excluded"] == len(suspects)
    assert dataset.report.rows_kept == kept_before - len(suspects)
    # the test split is never audited, nor thinned
    tested = {test.name(i) for i in range(len(test))}
    assert not tested & suspects and len(test) == len(split_dataset(dataset, cfg)[2])

    report_only, same_train, same_val = audit_and_exclude(dataset, train, val, DataConfig())
    assert report_only is not None and (same_train, same_val) == (train, val)


def test_off_skips_the_audit(tmp_path: Path) -> None:
    rows, _ = labelled_texts(flip=0)
    dataset = clean_texts(write_csv(tmp_path / "t.csv", rows))
    train, val, _ = split_dataset(dataset, DataConfig())
    assert audit_and_exclude(dataset, train, val, DataConfig(label_issues="off")) == (None, train, val)


def test_data_inspect_writes_label_issues(tmp_path: Path) -> None:
    from training.data.inspect import inspect_data

    rows, _ = labelled_texts(flip=10, seed=2)
    data = write_csv(tmp_path / "t.csv", rows)
    _, paths = inspect_data("text", data, tmp_path / "inspect", RunConfig(), plots=False)
    assert paths["label_issues"] == tmp_path / "inspect" / "label_issues.csv"
    report = paths["json"].read_text()
    assert '"label_issues"' in report and '"estimated_noise_rate"' in report
    assert "## Label audit" in paths["markdown"].read_text()


def test_data_that_cannot_be_cross_validated_is_not_audited(tmp_path: Path) -> None:
    rows = [("the match was great", "sports")] + [(f"the storm {w}", "weather") for w in ADJECTIVES]
    dataset = clean_texts(write_csv(tmp_path / "t.csv", rows))
    train, val, _ = split_dataset(dataset, DataConfig())
    assert audit_and_exclude(dataset, train, val, DataConfig())[0] is None  # one sports item: nothing to judge by


def test_a_weak_audit_model_is_called_out_in_the_data_report() -> None:
    """Where the fast model agrees with few labels, its suspects are mostly hard items: the report says so."""
    from training.data.inspect import _label_issue_lines
    from training.data.label_audit import WEAK_MODEL, Audit

    weak, strong = (Audit([], 0.5, 600, 1.0, "16x16 pixels", model_accuracy=a) for a in (0.45, WEAK_MODEL + 0.1))
    assert strong.caveat() is None and "Caution" not in "\n".join(_label_issue_lines(strong, "image"))
    caution = [line for line in _label_issue_lines(weak, "image") if line.startswith("**Caution:**")]
    assert len(caution) == 1 and "only 45% of the labels" in caution[0] and weak.caveat() in caution[0]


def test_classes_too_small_to_cross_validate_are_left_out_and_the_rest_audited(tmp_path: Path) -> None:
    rows, flipped_lines = labelled_texts(flip=12, seed=3)
    rare = [(f"the rare thing number {w}", f"rare {k}") for k, w in enumerate(["one", "two", "three"])]
    rare += [("the odd case again", "odd"), ("the odd case once more", "odd")]
    dataset = clean_texts(write_csv(tmp_path / "t.csv", rows + rare))
    items = joined(*split_dataset(dataset, DataConfig())[:2])
    cfg = DataConfig(label_issues="exclude")
    train, val, _ = split_dataset(dataset, cfg)
    audit, fit_train, fit_val = audit_and_exclude(dataset, train, val, cfg)

    assert audit is not None and audit.issues  # one class of two items no longer stops the whole audit
    small = {label for label in items.labels if label.startswith(("rare", "odd"))}
    assert set(audit.classes_not_audited) == small
    assert audit.items_not_audited == sum(label in small for label in items.labels)
    assert audit.items + audit.items_not_audited == len(items)
    found = {int(issue.item.removeprefix("line ")) for issue in audit.issues}
    assert len(found & flipped_lines) >= 9  # the audit of the rest is as good as without the small classes
    fitted = joined(fit_train, fit_val)
    fitted_names = {fitted.name(i) for i in range(len(fitted))}
    assert not {issue.item for issue in audit.issues} & fitted_names  # exclusion maps back to the right items
    assert {items.name(i) for i, label in enumerate(items.labels) if label in small} <= fitted_names
    assert audit.summary()["classes_not_audited"] == sorted(small)
