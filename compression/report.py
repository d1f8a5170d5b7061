"""compression_report.md: every variant in one table (size, sparsity, validation metrics, latency, and the
test split's accuracy and calibration error, measured after the choice) with the skipped ones and why, and
PNG plots of accuracy against gzip size and against latency, the served variant marked. The CLI prints the
same table; the retrain flow publishes the report as a Prefect artifact.

    >>> write_compression_report(variants, "int8", parity, Path("out"))  # doctest: +SKIP
    PosixPath('out/compression_report.md')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = (
    "variant",
    "method",
    "bytes",
    "gzip bytes",
    "gzip x smaller",
    "sparsity",
    "accuracy",
    "macro-F1",
    "test accuracy",
    "test ECE",
    "b1 p50 ms",
    "b1 p95 ms",
    "b32 p50 ms",
    "b32 x faster",
    "items/s (b32)",
)


_ORDER = {name: i for i, name in enumerate(("fp32", "int8", "pruned", "pruned_int8", "qat", "pruned_qat", "fp16"))}


def variant_rows(variants: dict[str, dict[str, Any]], served: str) -> list[list[str]]:
    """One row of COLUMNS per variant, fp32 first; ratios are against fp32 (higher is better)."""
    fp32 = variants["fp32"]
    rows = []
    for name, v in sorted(variants.items(), key=lambda item: _ORDER.get(item[0], len(_ORDER))):
        rows.append(
            [
                f"{name} (served)" if name == served else name,
                v.get("method", ""),
                f"{v['bytes']:,}",
                f"{v['gzip_bytes']:,}",
                f"{fp32['gzip_bytes'] / v['gzip_bytes']:.2f}",
                f"{v.get('sparsity', 0.0):.2f}",
                f"{v['accuracy']:.4f}",
                f"{v['macro_f1']:.4f}",
                *_unseen_cells(v.get("test")),
                f"{v['latency_ms_p50']:.3f}",
                f"{v['latency_ms_p95']:.3f}",
                f"{v.get('latency_ms_b32_p50', 0.0):.3f}",
                f"{fp32['latency_ms_b32_p50'] / v['latency_ms_b32_p50']:.2f}" if v.get("latency_ms_b32_p50") else "",
                f"{v.get('throughput_per_s', 0.0):,.0f}",
            ]
        )
    return rows


def _unseen_cells(test: dict[str, Any] | None) -> list[str]:
    """The test block's accuracy and ECE (compression.compress.score_unseen); blank where it was not measured."""
    return [f"{test['accuracy']:.4f}", f"{test['ece']:.4f}"] if test else ["", ""]


def markdown_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def skipped(parity: dict[str, Any]) -> dict[str, str]:
    return {name: p["skipped"] for name, p in parity.items() if "skipped" in p}


def not_served(variants: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Variants made and measured that the selection could not consider, with the reason."""
    return {name: v["not_served"] for name, v in variants.items() if "not_served" in v}


def _scatter(variants: dict[str, dict[str, Any]], served: str, key: str, label: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, v in variants.items():
        chosen = name == served
        ax.scatter(v[key], v["accuracy"], s=90 if chosen else 40, marker="*" if chosen else "o", zorder=3)
        ax.annotate(
            name + (" (served)" if chosen else ""),
            (v[key], v["accuracy"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel(label)
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def draw_tradeoffs(variants: dict[str, dict[str, Any]], served: str, directory: Path) -> dict[str, Path]:
    """Accuracy against gzip size and against batch-32 latency, one point per variant."""
    return {
        "accuracy vs size": _scatter(variants, served, "gzip_bytes", "gzip bytes", directory / "variants_size.png"),
        "accuracy vs latency": _scatter(
            variants, served, "latency_ms_b32_p50", "batch-32 p50 latency (ms)", directory / "variants_latency.png"
        ),
    }


def write_compression_report(
    variants: dict[str, dict[str, Any]], served: str, parity: dict[str, Any], out_dir: Path
) -> Path:
    """Write ``out_dir``/compression_report.md and its plots under ``out_dir``/plots; returns the report."""
    split = next(iter(variants.values())).get("split", "validation")
    plots = draw_tradeoffs(variants, served, out_dir / "plots")
    fp32 = variants["fp32"]
    lines = [
        "# Compression report",
        "",
        f"Every variant measured on the {split} split with {fp32.get('threads', 1)} ONNX Runtime threads; "
        f"ratios are against fp32. Served: **{served}**. The test columns score every variant on the test "
        "split after the choice, which they had no say in: where the shipped model learnt from the validation "
        "items (a refit), only they show how a variant does on new items and how calibrated its scores are.",
        "",
        markdown_table(COLUMNS, variant_rows(variants, served)),
        "",
    ]
    for name, reason in skipped(parity).items():
        lines.append(f"- `{name}` skipped: {reason}")
    for name, reason in not_served(variants).items():
        lines.append(f"- `{name}` {reason}")
    lines += ["", *(f"![{title}]({path.relative_to(out_dir)})" for title, path in plots.items()), ""]
    path = out_dir / "compression_report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
