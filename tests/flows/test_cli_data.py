"""`kiln data inspect` and the one-line stop (exit 2, no traceback) for every kind of unusable data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import add_dirt, make_image_folder, make_texts, png_bytes, write_csv

runner = CliRunner()


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (kiln arguments after --task/--data, expected message)."""
    (tmp / "empty").mkdir()
    (tmp / "noimg" / "a").mkdir(parents=True)
    (tmp / "noimg" / "a" / "readme.txt").write_text("x")
    write_csv(tmp / "gone.csv", [("a.png", "x"), ("b.png", "y")], header=("path", "label"))
    (tmp / "binary.csv").write_bytes(png_bytes())
    (tmp / "header.csv").write_text("text,label\n")
    write_csv(tmp / "one.csv", [(f"text {w}", "same") for w in "abcdefgh"])
    write_csv(tmp / "nolabels.csv", [(f"text {w}", "  ") for w in "abcdefgh"])
    write_csv(tmp / "five.csv", [("1", "t a", "x", "y", "z")], header=("id", "text", "label", "d", "e"))
    (tmp / "broken.jsonl").write_text("{oops\n{still not json\n")
    return {
        "empty folder": (["image", str(tmp / "empty")], "holds no files"),
        "folder without images": (["image", str(tmp / "noimg")], "no image files in label folders"),
        "manifest files all missing": (["image", str(tmp / "gone.csv")], "none of the 2 files listed"),
        "binary file as CSV": (["text", str(tmp / "binary.csv")], "not a text table"),
        "CSV with only a header": (["text", str(tmp / "header.csv")], "header but no data rows"),
        "one class": (["text", str(tmp / "one.csv")], "only one class"),
        "all labels empty": (["text", str(tmp / "nolabels.csv")], "8 without a label"),
        "column that does not exist": (["text", str(tmp / "five.csv"), "--text-column", "9"], "no text column '9'"),
        "JSONL all broken": (["text", str(tmp / "broken.jsonl")], "no line of"),
    }


def test_every_kind_of_bad_input_stops_with_one_line(tmp_path: Path) -> None:
    for name, (args, message) in _bad_inputs(tmp_path).items():
        task, data, *rest = args
        out = str(tmp_path / "out")
        r = runner.invoke(app, ["data", "inspect", "--task", task, "--data", data, "--out", out, "--no-plots", *rest])
        assert r.exit_code == 2, (name, r.output)
        errors = [line for line in r.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (name, r.output)
        assert "Traceback" not in r.output, name


@pytest.mark.slow
def test_kiln_run_stops_on_bad_data_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "run",
        "--task",
        "image",
        "--data",
        str(tmp_path / "empty"),
        "--out",
        str(tmp_path / "run"),
        "--store",
        str(tmp_path / "store"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: image folder" in result.stderr and "holds no files" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_inspect_writes_report_quarantine_and_plots_for_images(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path / "images", per_class=12)
    dirt = add_dirt(images)
    out = tmp_path / "inspect"
    r = runner.invoke(app, ["data", "inspect", "--task", "image", "--data", str(images), "--out", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "data_report.json").read_text())
    for key, count in dirt.items():
        assert report[key] == count
    assert report["leakage"] == {"test_near_train": 0, "validation_near_train": 0}
    assert report["summary"]["images"]["colour"] is True and "split_classes" in report["summary"]
    with (out / "quarantine.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == report["quarantined"] == 7
    markdown = (out / "data_report.md").read_text()
    assert "truncated.png" in markdown and "not an image type" in markdown  # names quarantined files
    for plot in ("classes", "image_sizes", "samples", "augmented"):
        png = out / "plots" / f"{plot}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", plot
        assert f"plots/{plot}.png" in markdown


def test_inspect_texts_reports_lengths_coverage_and_imbalance(tmp_path: Path) -> None:
    rows = [r for r in make_texts(40) if r[1] != "food"] + [r for r in make_texts(40) if r[1] == "food"][:8]
    long_rows = [(" ".join(["word"] * 300) + f" {w}", "food") for w in "abc"]
    data = write_csv(tmp_path / "t.csv", rows + long_rows)
    out = tmp_path / "inspect"
    r = runner.invoke(app, ["data", "inspect", "--task", "text", "--data", str(data), "--out", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "data_report.json").read_text())
    texts = report["summary"]["texts"]
    assert texts["tokens"]["max"] >= 300 and 0 < texts["test_vocabulary_coverage"] <= 1
    assert report["summary"]["imbalance"]["class_weights"] == "balanced"  # 40 vs 11
    assert (out / "plots" / "text_lengths.png").exists() and (out / "plots" / "classes.png").exists()
    assert "imbalance ratio" in r.output and "class weights balanced" in r.output


def test_labels_spelt_two_ways_are_reported_not_merged(tmp_path: Path) -> None:
    """ "pos" and " POS" are almost surely one class: the CLI and the report say so, and training data is untouched
    (two classes each way, as the file has them)."""
    rows = make_texts(40)
    spelt = [(text, f" {label.upper()}" if i % 3 == 0 else label) for i, (text, label) in enumerate(rows)]
    data = write_csv(tmp_path / "t.csv", spelt)
    out = tmp_path / "inspect"
    r = runner.invoke(app, ["data", "inspect", "--task", "text", "--data", str(data), "--out", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "data_report.json").read_text())
    names = sorted({label for _, label in rows})
    groups = report["summary"]["lookalike_labels"]
    assert [sorted(g, key=str.casefold) for g in groups] == [[n.upper(), n] for n in names]
    assert len(report["classes"]) == 2 * len(names)  # reported, not merged
    assert f"warning: labels '{names[0].upper()}' / '{names[0]}' differ only in case" in r.output
    assert "**Warning:** labels that differ only in case, spacing" in (out / "data_report.md").read_text()
    clean = write_csv(tmp_path / "clean.csv", rows)
    r = runner.invoke(app, ["data", "inspect", "--task", "text", "--data", str(clean), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0 and "warning: labels" not in r.output
    assert json.loads((tmp_path / "c" / "data_report.json").read_text())["summary"]["lookalike_labels"] == []


def test_multi_label_rows_are_reported_as_combined_classes(tmp_path: Path) -> None:
    """A label that joins other labels ("billing,delivery") or is a JSON list makes single-label training learn
    each combination as a class: the CLI and the report say so, and nothing is changed."""
    rows = make_texts(40)
    names = sorted({label for _, label in rows})
    joined_label = f"{names[0]},{names[1]}"
    mixed = [(text, joined_label if i % 4 == 0 else label) for i, (text, label) in enumerate(rows)]
    data = write_csv(tmp_path / "t.csv", mixed)
    out = tmp_path / "inspect"
    r = runner.invoke(app, ["data", "inspect", "--task", "text", "--data", str(data), "--out", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "data_report.json").read_text())
    assert report["summary"]["combined_labels"] == [joined_label]
    assert joined_label in report["classes"]  # reported, not split
    assert f"warning: labels that are several labels at once ('{joined_label}')" in r.output
    assert "**Warning:** labels that are several labels at once" in (out / "data_report.md").read_text()
    clean = write_csv(tmp_path / "clean.csv", rows)
    r = runner.invoke(app, ["data", "inspect", "--task", "text", "--data", str(clean), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0 and "several labels at once" not in r.output
