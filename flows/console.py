"""What the `kiln` CLI and the demo print: one-line errors, run and tuning summaries, the variant table.

>>> print_run_summary(report, Path(".kiln/runs/x"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from training.data.dataset import MULTI_LABEL_ADVICE, SKIP_COUNTERS, first_of


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code`` (2: the user's input was wrong)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def print_tuning_summary(result: dict) -> None:
    typer.echo(
        f"\n{result['trials']} trial(s) in study {result['study']} ({result['complete']} complete, "
        f"{result['pruned']} pruned); best trial {result['best_trial']}: validation loss {result['best_value']:.4f}, "
        f"accuracy {result['best_val_accuracy']:.4f}"
    )
    if "beat_default" in result:
        verdict = "scored lower than" if result["beat_default"] else "did not score lower than"
        typer.echo(
            f"the best trial {verdict} the default configuration (validation loss {result['default_value']:.4f}, "
            f"accuracy {result['default_val_accuracy']:.4f})"
        )
    typer.echo(f"best parameters: {result['best_params']}")
    if result.get("compared"):
        verdict = "adopted the best trial" if result["adopted"] == "best" else "kept the default configuration"
        z = result["gain"] / result["gain_se"] if result["gain_se"] else float("inf")
        typer.echo(
            f"{verdict}: its paired gain on validation is {result['gain']:.4f} per item, {z:.2f} standard errors "
            f"({result['z_needed']:.2f} needed: the best of several trials is partly the luckiest)"
        )
    elif result.get("not_compared"):
        typer.echo(f"adopted the {result['adopted']} configuration: {result['not_compared']}")
    typer.echo(f"tuned config: {result['files']['best_config']} (kiln run --config {result['files']['best_config']})")


def print_run_summary(report: dict, out_dir: Path) -> None:
    if report.get("role") == "worker":
        typer.echo(f"worker done: trained {report['training']['epochs_run']} epochs; the chief registers the model")
        return
    test = report["metrics"]
    typer.echo("")
    print_data_summary(report["data"], out_dir)
    print_variant_table(report)
    model = report["model"]
    verdict = "PROMOTED" if report["promoted"] else "NOT PROMOTED"
    typer.echo(
        f"{model['name']} {model['version']}: serves {report['served_variant']} "
        f"(test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}); {verdict} — {report['gate']}"
    )
    typer.echo(f"report: {out_dir / 'report.json'}")


def print_variant_table(report: dict) -> None:
    """The compression report's table (compression_report.md) as aligned text, skipped variants below it."""
    from compression.report import COLUMNS, not_served, skipped, variant_rows

    rows = [list(COLUMNS)] + variant_rows(report["variants"], report["served_variant"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    split = next(iter(report["variants"].values())).get("split", "test")
    typer.echo(f"variants ({split} split, test columns after the choice; ratios against fp32):")
    for row in rows:
        typer.echo(
            "  "
            + "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for name, reason in skipped(report.get("parity", {})).items():
        typer.echo(f"  {name} skipped: {reason}")
    for name, reason in not_served(report["variants"]).items():
        typer.echo(f"  {name} {reason}")


def print_data_summary(data: dict, out_dir: Path) -> None:
    skipped = {k: data[k] for k in SKIP_COUNTERS if data.get(k)}
    listed = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in skipped.items()) or "nothing skipped"
    typer.echo(
        f"data: {data['rows_read']} read, {data['rows_kept']} kept in {len(data['classes'])} classes "
        f"({data['near_duplicates']} with a near duplicate); {listed}"
    )
    if "split" in data:
        leak = data.get("leakage", {})
        typer.echo(
            f"split: {data['split']}; leakage test/validation near train: "
            f"{leak.get('test_near_train')}/{leak.get('validation_near_train')}"
        )
    for group in data.get("summary", {}).get("lookalike_labels") or []:
        typer.secho(
            f"warning: labels {' / '.join(repr(label) for label in group)} differ only in case, spacing, hyphens or "
            "underscores and are trained as different classes; write each class one way in the data if they are one",
            fg=typer.colors.YELLOW,
        )
    combined = data.get("summary", {}).get("combined_labels")
    if combined:
        typer.secho(f"warning: {MULTI_LABEL_ADVICE.format(shown=first_of(combined, 5))}", fg=typer.colors.YELLOW)
    imb = data.get("summary", {}).get("imbalance")
    if imb:
        typer.echo(f"imbalance ratio {imb['ratio']}: class weights {imb['class_weights']}")
    typer.echo(f"data report: {out_dir / 'data_report.md'}; quarantined items: {out_dir / 'quarantine.csv'}")


def print_prediction_summary(summary: dict) -> None:
    """`kiln predict`'s closing lines: where the rows went and how many of each label."""
    typer.echo(
        f"{summary['items']:,} items -> {summary['out']} in {summary['seconds']} s with {summary['task']} "
        f"{summary['version']} ({summary['variant']}): {summary['scored']:,} scored, {summary['errors']:,} errors, "
        f"{summary['abstained']:,} abstained"
    )
    for label, count in summary["labels"].items():
        typer.echo(f"  {label:24s} {count:>10,d}")
