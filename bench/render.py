"""docs/BENCHMARKS.md, rendered from the benchmark results in docs/bench/*.json (never edited by hand).

Each benchmark writes its own JSON file and then calls this renderer; every section below is built from one
file, and a section whose file is missing is left out (the page lists what has not been measured yet). The
prose explaining how a table was measured sits next to the function that renders that table, and every
statement that depends on numbers (targets met or missed, win counts, which rows this run measured) is computed
here from the data.

    $ .venv/bin/python -m bench.render                       # docs/bench/*.json -> docs/BENCHMARKS.md
    $ .venv/bin/python -m bench.render --dir /tmp/b --out /tmp/B.md
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, describe_machine, markdown_for, read_results, show_utc
from bench.protocol import SET_ORDER, WIN_ERROR_SHARE, WIN_POINTS, is_user_protocol, set_name, verdict
from training.config import RETRAINED_VARIANTS, CompressConfig

Result = dict[str, Any]

# The targets, checked against the data wherever a section reports them.
RSS_LIMIT_MIB = 3072  # data pipeline: peak RSS of the main process
CLEANING_MIN_IPS = 500  # data pipeline: images/s through cleaning
PIPELINE_OVER_TRAINING_MIN = 3.0  # data pipeline: input pipeline at least this much faster than training
PRUNED_INT8_MIN_RATIO = 10.0  # compression: pruned_int8 at least this much smaller (gzip) than fp32 ...
PRUNED_INT8_MAX_DROP = 1.0  # ... within this many accuracy points
SERVED_MIN_B32_SPEEDUP = 1.5  # compression: the served variant at least this much faster than fp32 at batch 32
SKIP_REASON_CHARS = 140  # a skipped variant's reason is cut to this length in the variants table


# ---------------------------------------------------------------------------------------------- formatting


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table; cells are str()-ed."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def num(x: float, decimals: int = 2) -> str:
    """A number with at most ``decimals`` decimals and no trailing zeros: 30.4, 563.8, 600."""
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def names(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"


def measured_line(result: Result, how: str = "") -> str:
    """``Measured 2026-11-24 14:03 UTC [by `make bench`] on: <machine>.``"""
    return f"Measured {show_utc(result['measured'])}{how} on: {describe_machine(result['machine'])}."


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# ------------------------------------------------------------------------------- training and compression


def training_section(r: Result) -> list[str]:
    """The sample models through the retrain flow, every variant re-timed (bench.serving)."""
    p = r["parameters"]
    lines = [
        "## Training and compression (CPU)\n",
        measured_line(r, " by `make bench`"),
        f"Sample data: scikit-learn digits ({p['sample_images']:,} 8x8 PNGs) and the generated "
        f"{p['sample_texts']:,}-text corpus. Accuracy and macro-F1 are on the validation split, where the served "
        "variant is chosen (the default `balanced` objective: the smallest gzip size within 1 point of fp32 that "
        "is not slower than fp32 at batch 1 or 32); after the refit the model has learnt those items, so each "
        "variant's test accuracy and calibration error (ECE) are measured on the test split too, after the "
        "choice; the served variant's test score follows the table. Latencies "
        f"are re-timed here ({p['latency_runs']} runs per batch size, ONNX Runtime on the CPU).\n",
    ]
    rows, notes = [], []
    # runs from 2026-12-07 on score every variant on the test split after the choice (report.json's test block)
    unseen = all("test_accuracy" in v for t in r["rows"] for v in t["variants"])
    for t in r["rows"]:
        fp32 = next(v for v in t["variants"] if v["variant"] == "fp32")
        for v in t["variants"]:
            shown = f"{v['variant']} (served)" if v["variant"] == t["served"] else v["variant"]
            rows.append(
                [
                    t["task"],
                    f"{t['wall_seconds']:.0f}",
                    f"{t['train_seconds']:.0f}",
                    t["epochs"],
                    shown,
                    f"{v['bytes']:,}",
                    f"{v['gzip_bytes']:,}",
                    f"{fp32['gzip_bytes'] / v['gzip_bytes']:.2f}",
                    f"{v.get('sparsity', 0.0):.2f}",
                    f"{v['accuracy']:.4f}",
                    f"{v['macro_f1']:.4f}",
                    *([f"{v['test_accuracy']:.4f}", f"{v['test_ece']:.4f}"] if unseen else []),
                    f"{v['latency_ms_p50']:.3f}",
                    f"{v['latency_ms_p95']:.3f}",
                    f"{v['latency_ms_b32_p50']:.3f}",
                ]
            )
        test = t["test"]
        notes.append(
            f"\n{t['task']}: serves {t['served']}, test accuracy {test['accuracy']:.4f}, "
            f"macro-F1 {test['macro_f1']:.4f} ({test['items']} items)."
        )
    header: tuple[str, ...] = (
        "task",
        "wall s (flow)",
        "train s",
        "epochs",
        "variant",
        "bytes",
        "gzip bytes",
        "gzip x smaller",
    )
    header += ("sparsity", "val accuracy", "val macro-F1")
    header += ("test accuracy", "test ECE") if unseen else ()
    header += ("b1 p50 ms", "b1 p95 ms", "b32 p50 ms")
    return lines + table(header, rows) + notes


def gpu_section(r: Result) -> list[str]:
    """No benchmark times the CUDA provider yet; say why the page has no GPU numbers."""
    if r["machine"].get("gpu"):
        why = "a GPU is present, but no benchmark times the CUDA provider yet."
    else:
        why = (
            "no GPU on this machine. CUDA paths choose the CUDA provider only when the NVIDIA driver reports a device."
        )
    return ["## GPU\n", f"Not measured in the `make bench` run of {show_utc(r['measured'])}: {why}"]


# ------------------------------------------------------------------------------------------------------ HTTP

SERVERS = ("kiln", "bare", "keras")


def http_section(r: Result) -> list[str]:
    """`kiln serve` beside a bare ONNX Runtime app and a Keras app, interleaved rounds (bench.serving)."""
    p, m = r["parameters"], r["machine"]
    lines = [
        "## HTTP service against its peers (CPU)\n",
        f"{measured_line(r)} One closed-loop client on the same machine (it shares the {m['cores']} cores). All "
        f"three servers run at once and are measured in turn, {p['rounds']} rounds of {p['seconds'] / p['rounds']:g} "
        "s per row and server; each cell is the median round. **kiln**: `kiln serve` (BentoML, default settings: "
        "1 worker); **bare**: Starlette + ONNX Runtime in one uvicorn process, same model file, preprocessing and "
        "ONNX Runtime session settings (idle threads sleep), "
        "no input checks (`bench/peers.py`); **keras**: FastAPI calling the trained Keras model's `predict`. "
        "Latencies p50/p95/p99 in ms.\n",
    ]
    models = p.get("models", {})
    if models:
        lines.append(
            "Models: " + "; ".join(f"**{task}**: {what}" for task, what in models.items()) + " (`bench/serving.py`, "
            "a default `kiln run` on notMNIST and on CR's training split). The image route sends one "
            f"{p.get('image_bytes', 0):,}-byte PNG.\n"
        )

    def lat(s: dict[str, Any]) -> str:
        return "/".join(num(s[f"latency_ms_{q}"]) for q in ("p50", "p95", "p99"))

    rows = []
    for row in r["rows"]:
        k, b, f = (row["servers"][n] for n in SERVERS)
        kb, kf = _ratio(k["requests_per_s"], b["requests_per_s"]), _ratio(k["requests_per_s"], f["requests_per_s"])
        rows.append(
            [
                row["route"],
                row["payload"],
                row["concurrency"],
                *(f"{s['requests_per_s']:.1f}" for s in (k, b, f)),
                f"{kb:.2f}" if kb is not None else "",
                f"{kf:.1f}" if kf is not None else "",
                *(lat(s) for s in (k, b, f)),
                "/".join(str(s["errors"]) for s in (k, b, f)),
            ]
        )
    header: tuple[str, ...] = (
        "route",
        "payload",
        "concurrency",
        "kiln req/s",
        "bare req/s",
        "keras req/s",
        "kiln / bare",
    )
    header += ("kiln / keras", "kiln p50/p95/p99", "bare p50/p95/p99", "keras p50/p95/p99", "errors (kiln/bare/keras)")
    lines += table(header, rows)
    slower = [
        row for row in r["rows"] if row["servers"]["kiln"]["requests_per_s"] < row["servers"]["bare"]["requests_per_s"]
    ]
    errors = sum(row["servers"][n]["errors"] for row in r["rows"] for n in SERVERS)
    lines.append(
        f"\n`kiln serve` reaches {_range(r['rows'], 'kiln', 'bare')} of the bare app's throughput "
        f"({len(r['rows']) - len(slower)} of {len(r['rows'])} rows at or above it) and "
        f"{_range(r['rows'], 'kiln', 'keras', 1)} the Keras app's; "
        + ("no request failed." if errors == 0 else f"{errors} requests failed in all (last column).")
    )
    return lines


def _range(rows: list[Result], a: str, b: str, decimals: int = 2) -> str:
    """``0.53-1.04x``: the span of a's requests/s over b's across the rows."""
    ratios = [_ratio(row["servers"][a]["requests_per_s"], row["servers"][b]["requests_per_s"]) for row in rows]
    known = [x for x in ratios if x is not None]
    if not known:
        return "an unmeasured share"
    return f"{min(known):.{decimals}f}-{max(known):.{decimals}f}x"


# --------------------------------------------------------------------------------------------- data pipeline


def data_pipeline_section(r: Result) -> list[str]:
    """50,000 generated JPEGs through ingest, cleaning, split and one epoch, in one fresh process."""
    p, x = r["parameters"], r["result"]
    ratio = x["pipeline_ips"] / x["training_ips"]
    leaked = sum(x["leakage"].values())

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    split = ", ".join(f"{name} {n:,}" for name, n in x["split"].items())
    leakage = ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in x["leakage"].items())
    rows = [
        ["peak RSS, main process (whole run)", f"{x['peak_rss_mib']:,.0f} MiB"]
        + [f"< {RSS_LIMIT_MIB:,} MiB: {verdict(x['peak_rss_mib'] < RSS_LIMIT_MIB)}"],
        ["peak RSS after cleaning and split", f"{x['peak_rss_after_cleaning_mib']:,.0f} MiB", ""],
        ["peak RSS of one cleaning worker process", f"{x['peak_rss_worker_mib']:,.0f} MiB", ""],
        ["cleaning throughput", f"{x['cleaning_ips']:,.0f} images/s ({num(x['cleaning_s'], 1)} s)"]
        + [f">= {CLEANING_MIN_IPS} images/s: {verdict(x['cleaning_ips'] >= CLEANING_MIN_IPS)}"],
        ["input pipeline alone", f"{x['pipeline_ips']:,.0f} images/s", ""],
        [
            f"training (one epoch incl. its validation pass, {num(x['epoch_s'], 1)} s)",
            f"{x['training_ips']:,.0f} images/s",
            "",
        ],
        ["pipeline / training", f"{ratio:.1f}x"]
        + [f">= {PIPELINE_OVER_TRAINING_MIN:g}x: {verdict(ratio >= PIPELINE_OVER_TRAINING_MIN)}"],
        ["kept / near duplicates", f"{x['kept']:,} / {x['near_duplicates']:,}", ""],
        ["split / leakage", f"{split} / {leakage}", f"leakage 0: {verdict(leaked == 0)}"],
    ]
    return [
        "## Data pipeline at scale (CPU)\n",
        measured_line(r),
        f"{x['images']:,} generated {p['image_size']}x{p['image_size']} colour JPEGs in {p['classes']} classes go "
        "through ingest, cleaning (decode, validate, hash, near-duplicate search), the stable split and one "
        f"training epoch (default config, model input {x['input']}, no image cache), in one fresh process; "
        f"{x['wall_seconds']:.0f} s in all.\n",
        *table(("measure", "value", "target"), rows),
        "\nThe generated shapes sit on noise at random places, so many images of one shape are perceptual near "
        "duplicates (grouped into one split) and some shapes of different classes look alike to the hash (dropped "
        "as conflicting labels); real photo sets have far fewer.",
    ]


# ---------------------------------------------------------------------------------------------------- quality


def tuned_cell(row: Result) -> str:
    """The tuned column: the served variant's test accuracy, its trials, and whether tuning beat the default on
    Kiln's validation split; or why there is none."""
    tuned = row.get("tuned")
    if tuned is None:
        return str(row.get("tuned_note") or "—")
    parts = [tuned["model"], tuned["variant"]]
    if tuned.get("trials"):
        parts.append(f"{tuned['trials']} trials{_tuning_verdict(tuned)}")
    vs = tuned.get("vs_peer")
    if vs:
        shown = p_value(vs["mcnemar_p"])
        parts.append(f"{vs['difference_points']:+.2f} vs peer, p{'' if shown.startswith('<') else '='}{shown}")
    return f"{tuned['accuracy']:.4f} ({', '.join(parts)})"


def _tuning_verdict(tuned: dict[str, Any]) -> str:
    """What tuning made of the default on validation: the best trial adopted, the default kept because the best
    trial's gain was within validation noise (training.fit.tune.adopted_trial), or the default was the best."""
    beat, adopted = tuned.get("beat_default"), tuned.get("adopted")
    if beat is None:
        return ""
    if not beat:
        return ", the default was the best trial"
    if adopted == "default":
        return ", kept the default: the best trial's gain on val was within noise"
    return ", beat the default on val"


def p_value(p: float) -> str:
    """McNemar's p as the table shows it: ``<0.001``, ``0.042``, ``1``."""
    return "<0.001" if p < 0.001 else num(p, 3)


def count(n: int, noun: str) -> str:
    """``1 win``, ``2 wins``, ``0 losses``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("s") else f"{n} {noun}s"


def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def cost_line(rows: list[dict[str, Any]]) -> str:
    """The default runs' cost against issue 17's bounds: peak RSS under 2 GiB, a text row's served model under
    5 MB gzipped (10^6 bytes), a stored version under 50 MB; a part no row measured is left out."""

    def largest(field: str, pool: list[dict[str, Any]]) -> tuple[float, str] | None:
        return max(((row["default"][field], row["name"]) for row in pool if field in row["default"]), default=None)

    parts = []
    if rss := largest("peak_rss_mib", rows):
        parts.append(f"the largest peak RSS is {rss[0]:,.0f} MiB ({rss[1]}; bound 2,048)")
    if gz := largest("gzip_bytes", [row for row in rows if row["task"] == "text"]):
        parts.append(f"the largest served text model {gz[0]:,} bytes gzipped ({gz[1]}; bound 5,000,000)")
    if stored := largest("stored_bytes", rows):
        parts.append(f"the largest stored version {stored[0] / 1e6:.1f} MB ({stored[1]}; bound 50)")
    return f"Cost: {', '.join(parts[:-1])} and {parts[-1]}." if len(parts) > 1 else f"Cost: {''.join(parts)}."


def stored_part(column: Result) -> str:
    """``; version 12.3 MB on disk``: the registered version's directory (none for rows measured before it was)."""
    return f"; version {column['stored_bytes'] / 1e6:,.1f} MB on disk" if "stored_bytes" in column else ""


def _latest(row: Result) -> str:
    """When a data set's row last changed: the newest stamp of its peer, default and tuned parts."""
    return max(part["measured"] for part in (row["peer"], row["default"], row.get("tuned")) if part)


def provenance(r: Result, rows: list[Result]) -> str:
    """Which of ``rows`` this run measured, which columns it reused, and when the other rows were measured."""
    run = r["measured"]
    now = [row["name"] for row in rows if _latest(row) == run]
    kept = sorted({row["tuned"]["measured"] for row in rows if row.get("tuned") and _latest(row) == run} - {run})
    kept_note = (
        f"; their tuned columns are kept from the runs of {', '.join(show_utc(s) for s in kept)}, made by the code of "
        "that date (`--keep-tuned`)"
        if kept
        else ""
    )
    if len(now) == len(rows) and all(row["default"]["measured"] == run for row in rows):
        return f"This run measured every row{kept_note}."
    text = f"This run measured {names(now)}" if now else "This run measured no row"
    reused = sorted(
        {row["default"]["measured"] for row in rows if _latest(row) == run and row["default"]["measured"] != run}
    )
    if reused:
        text += (
            f" (their peer and default columns are from {', '.join(show_utc(s) for s in reused)}, `--reuse-default`)"
        )
    text += kept_note
    earlier: dict[str, list[str]] = {}
    for row in rows:
        if _latest(row) != run:
            earlier.setdefault(_latest(row), []).append(row["name"])
    if earlier:
        text += "; the other rows are from earlier runs: " + "; ".join(
            f"{names(group)} on {show_utc(stamp)}" for stamp, group in sorted(earlier.items())
        )
    return text + "."


def not_yet_measured(r: Result) -> list[str]:
    """The data sets found by the run that wrote ``r`` (every set the benchmark knows, for a file of the earlier
    protocol) or held in its rows, without a user-protocol row, in table order."""
    done = {set_name(row) for row in r["rows"] if is_user_protocol(row)}
    known = [*r["parameters"].get("sets", SET_ORDER), *(set_name(row) for row in r["rows"])]
    order = {name: i for i, name in enumerate(SET_ORDER)}
    missing = {name for name in known if name not in done}
    return sorted(missing, key=lambda name: (order.get(name, len(order)), name))


QUALITY_PROTOCOL = (
    "Protocol (issue 17, DESIGN.md contract 6): every data set has one fixed train file and one test file, written "
    "once and reused: the official split where the set has one (a separate dev file joins the train file: users hand "
    "over everything labelled they have), else a stratified {split} split (seed {seed}; exact duplicates kept on "
    "one side). `kiln run` gets the whole train file with default settings in a fresh process, exactly as a user "
    "would hand it over (its internal split is its own business and never the scoring split); its registered "
    "served variant then classifies the test file it never saw, {scoring}. The classic peer fits the same whole "
    "train file: for texts TF-IDF 1-2-grams (sublinear) + LinearSVC, TF-IDF unigrams (sublinear) + LinearSVC and "
    "counts + multinomial naive Bayes; for images an RBF SVM (C=10) and logistic regression on raw pixels at Kiln's "
    "model input size; scikit-learn defaults otherwise. The best candidate on the test file is the peer (the "
    "strongest classic baseline; every candidate's score is in the second table). No setting of Kiln or the peer "
    "is chosen by looking at a test file. Difference = Kiln default minus best peer, in accuracy points; McNemar = "
    "exact two-sided binomial test on the items exactly one of them gets right (counts: Kiln only / peer only). "
    "Verdict: a win is Kiln ahead by at least {points:g} points or {share:.0%} of the peer's error, whichever is "
    "smaller; a loss the reverse (the peer ahead by min({points:g} points, {share:.0%} of Kiln's error)); else a "
    "tie. Train s: Kiln's fitting time as report.json states it (in brackets: the whole `kiln run` process, start "
    "to exit); peak RSS: the largest process of that run (wait4)."
)


def quality_section(r: Result) -> list[str]:
    """Default and tuned Kiln against the best classic peer under the user protocol (bench.quality). Rows of the
    earlier protocol are not shown here; the section names their data sets as not yet measured."""
    rows = [row for row in r["rows"] if is_user_protocol(row)]
    p = r["parameters"]
    scoring = (
        "in this process through `serving.runtime.Classifier` (ONNX Runtime with `kiln serve`'s preprocessing, no HTTP)"
    )
    fraction = p.get("test_fraction", 0.2)
    lines = [
        "## Quality against classic peers (CPU)\n",
        (measured_line(r) + " " if rows else "")
        + QUALITY_PROTOCOL.format(
            split=f"{1 - fraction:.0%}/{fraction:.0%}",
            seed=p.get("seed", 42),
            scoring=scoring,
            points=WIN_POINTS,
            share=WIN_ERROR_SHARE,
        )
        + (f" {provenance(r, rows)}" if rows else "")
        + "\n",
    ]
    pending = not_yet_measured(r)
    earlier = [row["name"] for row in r["rows"] if not is_user_protocol(row)]
    pending_line = f"Not yet measured under the user protocol: {names(pending)}." if pending else ""
    if earlier:
        pending_line += (
            f" quality.json still holds rows of the earlier protocol (Kiln's own split scored) for {names(earlier)}; "
            "they are not shown here."
        )
    if not rows:
        return [
            *lines,
            "No data set has been measured under the user protocol yet (quality.json was last written "
            f"{show_utc(r['measured'])}). {pending_line}",
        ]
    cells, verdicts = [], []
    for row in rows:
        peer, default, c = row["peer"], row["default"], row["comparison"]
        found = verdict(default["accuracy"], peer["accuracy"])
        verdicts.append(found)
        cells.append(
            [
                row["name"],
                row["task"],
                f"{row['train_items']:,}",
                f"{row['test_items']:,}",
                f"{default['accuracy']:.4f} ({default['model']}, {default['variant']}, "
                f"{kib(default['gzip_bytes'])} gzip{stored_part(default)})",
                tuned_cell(row),
                f"{peer['name']} {peer['accuracy']:.4f}",
                f"{100 * (default['accuracy'] - peer['accuracy']):+.2f}",
                f"{p_value(c['mcnemar_p'])} ({c['kiln_only_correct']}/{c['peer_only_correct']})",
                found,
                f"{default['train_seconds']:.0f} ({default['run_seconds']:.0f})",
                f"{default['peak_rss_mib']:,.0f}",
            ]
        )
    significant = [
        row["name"]
        for row, v in zip(rows, verdicts, strict=True)
        if v != "tie" and row["comparison"]["mcnemar_p"] < 0.05
    ]
    summary = (
        f"Kiln default against the best classic peer: {count(verdicts.count('win'), 'win')}, "
        f"{count(verdicts.count('tie'), 'tie')}, {count(verdicts.count('loss'), 'loss')} on "
        f"{count(len(rows), 'data set')}; McNemar's p < 0.05 on "
        f"{len(significant)} of the wins and losses ({names(significant)})."
    )
    tuned_rows = [row for row in rows if row.get("tuned")]
    if tuned_rows:
        better = [row["name"] for row in tuned_rows if row["tuned"]["accuracy"] > row["default"]["accuracy"]]
        worse = [row["name"] for row in tuned_rows if row["tuned"]["accuracy"] < row["default"]["accuracy"]]
        mean = 100 * sum(row["tuned"]["accuracy"] - row["default"]["accuracy"] for row in tuned_rows) / len(tuned_rows)
        summary += (
            f" Tuning was run on {len(tuned_rows)}; its served model scores higher on the test file than the "
            f"default's on {len(better)} ({names(better)}), lower on {len(worse)} ({names(worse)}); "
            f"tuned minus default: {mean:+.2f} points on average."
        )
    untuned = [row["name"] for row in rows if not row.get("tuned")]
    if untuned:
        summary += f" No tuned run: {names(untuned)}."
    summary += " " + cost_line(rows)
    header: tuple[str, ...] = ("data set", "task", "train items", "test items", "Kiln default", "Kiln tuned")
    header += ("best peer", "difference (points)", "McNemar p (Kiln only / peer only)", "verdict")
    header += ("train s (whole run)", "peak RSS MiB")
    detail = []
    for row in rows:
        s = row["split"]
        peers = "; ".join(
            f"{x['name']} {x['accuracy']:.4f} / {x['macro_f1']:.4f}"
            + ("" if x.get("converged", True) else " (not converged)")
            for x in row["peer"]["candidates"]
        )
        detail.append(
            [
                row["name"],
                f"{s['method']}: {s['described']}",
                s["test_in_train"],
                f"{row['default']['kept_items']:,}",
                f"{row['default']['accuracy']:.4f} / {row['default']['macro_f1']:.4f}",
                peers,
            ]
        )
    detail_header: tuple[str, ...] = ("data set", "split", "test items also in train", "kept by Kiln's cleaning")
    detail_header += ("Kiln default accuracy / macro-F1", "every peer candidate: accuracy / macro-F1")
    return [
        *lines,
        *table(header, cells),
        f"\n{summary}" + (f" {pending_line}" if pending_line else ""),
        "",
        *table(detail_header, detail),
        *calibration_table(rows),
    ]


ECE_TARGET = 0.03  # issue 20: the served variant's ECE on every development set, after calibration


def calibration_table(rows: list[Result]) -> list[str]:
    """The served scores' calibration on each test file (bench.quality.calibration_of), for the rows that have it."""
    measured = [row for row in rows if row["default"].get("calibration")]
    if not measured:
        return []
    cells = []
    for row in measured:
        c = row["default"]["calibration"]
        cells.append(
            [
                row["name"],
                "sigmoid link" if c.get("link") == "sigmoid" else f"T = {c['temperature']:.3f}",
                f"{c['ece_uncalibrated']:.4f}",
                f"{c['ece']:.4f}",
                "yes" if c["ece"] <= ECE_TARGET else "no",
                str(c["labels_changed"]),
            ]
        )
    met = sum(row["default"]["calibration"]["ece"] <= ECE_TARGET for row in measured)
    header: tuple[str, ...] = ("data set", "calibration map", "ECE without it", "ECE served (with it)")
    header += (f"<= {ECE_TARGET}", "labels it changed")
    return [
        "",
        "Calibration of the served scores on each test file (expected calibration error, 15 equal-width bins). The "
        "map, a temperature T or a sigmoid link (training/models/calibration.py), is chosen and fitted on Kiln's "
        "validation split before the refit and built into every exported graph; without it: the same graph with "
        "the map taken out): "
        f"{met} of {len(measured)} data sets within {ECE_TARGET}.\n",
        *table(header, cells),
    ]


# -------------------------------------------------------------------------------------- compression variants


def _variants(row: Result) -> dict[str, Result]:
    return {v["variant"]: v for v in row["default"]["variants"]}


def target_check(row: Result) -> dict[str, Any]:
    """The compression targets for one data set's default run, as numbers and verdicts."""
    v = _variants(row)
    served = row["default"]["variant"]
    out: dict[str, Any] = {"served": served}
    if "pruned_int8" in v:
        ratio, drop = v["pruned_int8"]["vs_fp32"]["gzip_x_smaller"], v["pruned_int8"]["vs_fp32"]["accuracy_drop_points"]
        out["pruned_int8"] = {
            "ratio": ratio,
            "drop": drop,
            "met": ratio >= PRUNED_INT8_MIN_RATIO and drop <= PRUNED_INT8_MAX_DROP,
        }
    s = v[served]["vs_fp32"]
    speed, b1 = s.get("b32_x_faster") or 0.0, s.get("b1_time") or 1.0  # unknown b1: not slower
    out["speed"] = {"b32": speed, "b1": b1, "met": speed >= SERVED_MIN_B32_SPEEDUP and b1 <= 1.0}
    return out


def _targets_cell(check: dict[str, Any]) -> str:
    notes = []
    if "pruned_int8" in check:
        p = check["pruned_int8"]
        notes.append(
            f"pruned_int8 {p['ratio']:.1f}x smaller, {p['drop']:+.2f} points: {'met' if p['met'] else 'missed'}"
        )
    s = check["speed"]
    notes.append(
        f"served {check['served']} {s['b32']:.2f}x faster at b32, b1 {s['b1']:.2f}x fp32's time: "
        + ("met" if s["met"] else "missed")
    )
    return "; ".join(notes)


def _int8_speedups(rows: list[Result], task: str) -> list[tuple[float, Result]]:
    found = []
    for row in rows:
        v = _variants(row)
        if row["task"] == task and v.get("int8", {}).get("vs_fp32", {}).get("b32_x_faster"):
            found.append((v["int8"]["vs_fp32"]["b32_x_faster"], row))
    return found


def why_targets_missed(rows: list[Result]) -> str:
    """The explanation of missed targets. The model facts (weights, the sparsity experiment) come from the
    investigation behind it; the INT8 speed-ups are computed from this table."""
    text_int8, image_int8 = _int8_speedups(rows, "text"), _int8_speedups(rows, "image")
    parts = [
        "Where a target is missed, why: the image models are small (0.1-0.4 M weights), so the graph's own bytes "
        "and the unpruned first and last layers weigh more than in the text models, and 0.8 sparsity, which would "
        "pass 10x, cost digits 3-4 points"
    ]
    if text_int8:
        low, high = min(s for s, _ in text_int8), max(s for s, _ in text_int8)
        parts.append(
            "text models spend most of their time outside the quantized convolutions (embedding gathers, the bag of "
            f"n-grams, float glue between QDQ pairs), so INT8 runs batch 32 only {low:.2f}-{high:.2f}x as fast as fp32"
        )
    if image_int8:
        speed, best = max(image_int8, key=lambda sr: sr[0])
        served = best["default"]["variant"]
        v = _variants(best)
        tail = (
            "and is served"
            if served == "int8"
            else f"but a smaller variant within budget ({served}) is served"
            if v[served]["gzip_bytes"] < v["int8"]["gzip_bytes"]
            else f"but {served} is served"
        )
        parts.append(f"image INT8 reaches {speed:.2f}x ({best['name']}) {tail}")
    return (
        "; ".join(parts) + ". Timings on this shared machine move by up to 2x between minutes: runs from "
        "2026-12-07 on time every variant side by side in interleaved rounds, so that drift no longer decides which "
        "one `balanced` serves; earlier rows timed each variant as it was made."
    )


def variants_section(r: Result) -> list[str]:
    """Every compression variant of each data set's default run (bench.quality), and the targets checked. Rows of
    the earlier quality protocol are kept here (their variants were measured the same way) and named as such."""
    rows = [row for row in r["rows"] if row["default"].get("variants")]
    earlier = [row["name"] for row in rows if not is_user_protocol(row)]
    checks = {row["name"]: target_check(row) for row in rows}
    table_rows: list[list[str]] = []
    blank = [""] * 10
    for row in rows:
        unseen = row["default"].get("internal_test_variants", {}).get("variants", {})
        for name, x in _variants(row).items():
            vs = x["vs_fp32"]
            table_rows.append(
                [
                    row["name"],
                    _variant_cell(name, x, row["default"]["variant"]),
                    x.get("method", ""),
                    f"{x['gzip_bytes']:,}",
                    f"{vs['gzip_x_smaller']:.2f}",
                    f"{x.get('sparsity', 0.0):.2f}",
                    f"{x['accuracy']:.4f}",
                    f"{vs['accuracy_drop_points']:+.2f}",
                    f"{x['latency_ms_p50']:.3f}",
                    f"{x['latency_ms_b32_p50']:.3f}",
                    f"{vs['b32_x_faster']:.2f}" if vs.get("b32_x_faster") is not None else "",
                    f"{x['agreement']:.4f}" if "agreement" in x else "",
                    _unseen_cell(unseen.get(name)),
                ]
            )
        for name, reason in row["default"].get("skipped", {}).items():
            cut = reason if len(reason) <= SKIP_REASON_CHARS else reason[: SKIP_REASON_CHARS - 1] + "…"
            table_rows.append([row["name"], name, f"skipped: {cut}", *blank])
        table_rows.append([row["name"], f"targets: {_targets_cell(checks[row['name']])}", "", *blank])
    small = [n for n, c in checks.items() if c.get("pruned_int8", {}).get("met")]
    with_pruned = [n for n, c in checks.items() if "pruned_int8" in c]
    fast = [n for n, c in checks.items() if c["speed"]["met"]]
    lines = [
        "## Compression variants per data set (CPU)\n",
        "Every variant of each data set's default `kiln run`, measured on Kiln's own validation split of the data "
        "it was given (where the served one is chosen) with ONNX Runtime on all cores; ratios and the accuracy drop "
        "(points) are against fp32, computed by the benchmark from the unrounded measurements. Targets: pruned_int8 "
        f"at least {PRUNED_INT8_MIN_RATIO:g}x smaller (gzip) within "
        f"{PRUNED_INT8_MAX_DROP:g} point; the served variant at least {SERVED_MIN_B32_SPEEDUP:g}x faster than fp32 "
        "at batch 32 and not slower at batch 1."
        + (
            f" From runs under the earlier quality protocol (Kiln given the whole data file): {names(earlier)}."
            if earlier
            else ""
        )
        + "\n",
        f"The pruned_int8 target is met on {len(small)} of {len(with_pruned)} data sets ({names(small)}); the "
        f"served-variant speed target on {len(fast)} of {len(rows)} ({names(fast)}).\n",
    ]
    if len(small) < len(with_pruned) or len(fast) < len(rows):
        lines.append(why_targets_missed(rows) + "\n")
    lines.append(unseen_summary(rows))
    header: tuple[str, ...] = ("data set", "variant", "method", "gzip bytes", "gzip x smaller", "sparsity", "accuracy")
    header += ("drop vs fp32", "b1 p50 ms", "b32 p50 ms", "b32 x faster", "agrees with fp32")
    header += ("internal test: accuracy (agrees with fp32)",)
    return lines + table(header, table_rows)


def _variant_cell(name: str, variant: Result, served: str) -> str:
    return f"{name} (served)" if name == served else f"{name} (not servable)" if "not_served" in variant else name


def _unseen_cell(scored: Result | None) -> str:
    return f"{scored['accuracy']:.4f} ({scored['agreement']:.4f})" if scored else ""


def unseen_summary(rows: list[Result]) -> str:
    """What the internal test split (items no fit saw) says of the fine-tuned variants that validation passed."""
    required = 1 - CompressConfig().max_accuracy_drop
    agree_val, agree_test, drops = [], [], []
    for row in rows:
        unseen = row["default"].get("internal_test_variants", {}).get("variants", {})
        for name, x in _variants(row).items():
            if name in RETRAINED_VARIANTS and name in unseen and x.get("agreement", 0.0) >= required - 1e-9:
                agree_val.append(x["agreement"])
                agree_test.append(unseen[name]["agreement"])
                drops.append(100 * (unseen["fp32"]["accuracy"] - unseen[name]["accuracy"]))
    if not any("internal_test_variants" in row["default"] for row in rows):
        return "The last columns (Kiln's internal test split) are not yet measured for these runs.\n"
    text = (
        "*agrees with fp32*: the share of validation items on which the variant's top-1 label is fp32's, which "
        f"selection requires to be at least {required:.0%} (1 - max_accuracy_drop); the last column scores every "
        "variant on Kiln's internal test split of the same train file, which no fit, refit or choice saw "
        "(report.json's per-variant test block, compression.compress.score_unseen)."
    )
    if not agree_test:
        return text + "\n"
    on_seen, on_unseen = _between(agree_val, "{:.1%}"), _between(agree_test, "{:.1%}")
    return text + (
        " After the refit the model has learnt the validation items, and there the fine-tuned variants (pruned, "
        f"pruned_int8, qat, pruned_qat) that passed agreed with fp32 on {on_seen} of them; on the unseen "
        f"items the same variants agreed on {on_unseen}, with accuracy {-max(drops):+.2f} to "
        f"{-min(drops):+.2f} points against fp32 ({count(len(drops), 'variant')}). Hence "
        "`compress.serve_retrained: false`: after a refit they are made and measured, marked *not servable*, "
        "and never served.\n"
    )


# ------------------------------------------------------------------------------------------------ label flips

PRECISION_TARGET = 0.7  # issue 20: share of flipped items among the audit's top K, K = the flipped items audited


def label_flips_section(r: Result) -> list[str]:
    """The label audit against planted flips (bench.label_flips), and report vs exclude where both were run."""
    rows = r["rows"]
    p = r["parameters"]
    cells = []
    for row in rows:
        cells.append(
            [
                row["name"],
                row["task"],
                f"{row['items_audited']:,}",
                f"{row['flipped_audited']:,} of {row['flipped_in_file']:,}",
                f"{row['precision_at_k']:.3f}" if row["precision_at_k"] is not None else "-",
                "yes" if (row["precision_at_k"] or 0) >= PRECISION_TARGET else "no",
                f"{row['flagged']:,}"
                + (f" ({row['recall_of_flagged']:.0%} of the flips)" if row["recall_of_flagged"] is not None else ""),
                f"{row['audit_seconds']:.1f}",
                f"{row['model']}" + (f", {row['model_accuracy']:.3f}" if "model_accuracy" in row else ""),
            ]
        )
    met = [row["name"] for row in rows if (row["precision_at_k"] or 0) >= PRECISION_TARGET]
    header: tuple[str, ...] = ("data set", "task", "items audited", "flipped (audited of file)")
    header += ("precision at K", f">= {PRECISION_TARGET}", "flagged (recall)", "audit s")
    header += ("audit model, its out-of-fold accuracy",)
    lines = [
        "## Label audit against planted label errors (CPU)\n",
        measured_line(r)
        + f" On each data set's train file, {p['flip_share']:.0%} of the labels were flipped, each uniformly to "
        f"another class (seed {p['seed']}). The audit runs as `kiln run` runs it: the flipped file loaded and cleaned "
        "(a flip that made two copies of one item disagree is dropped there as a conflict, so fewer flips reach the "
        "audit), Kiln's split, out-of-fold probabilities over training + validation, confident learning. Precision "
        "at K: the share of flipped items among its K most suspect, K being the flipped items it audited. "
        f"{len(met)} of {len(rows)} data sets reach {PRECISION_TARGET} ({names(met)}).\n",
        *table(header, cells),
    ]
    runs = [row for row in rows if row.get("runs")]
    if runs:
        run_cells = []
        for row in runs:
            rep, exc = row["runs"]["report"], row["runs"]["exclude"]
            run_cells.append(
                [
                    row["name"],
                    f"{rep['accuracy']:.4f}",
                    f"{exc['accuracy']:.4f} ({exc['excluded']:,} left out)",
                    f"{100 * (exc['accuracy'] - rep['accuracy']):+.2f}",
                    f"{rep['audit_seconds']:.1f} of {rep['run_seconds']:.0f}",
                ]
            )
        lines += [
            "",
            "`kiln run` on the flipped train file, served model scored on the (clean) test file: "
            "`data.label_issues: report` (the default, nothing dropped) against `exclude`.\n",
            *table(
                (
                    "data set",
                    "report: test accuracy",
                    "exclude: test accuracy",
                    "exclude - report (points)",
                    "audit s of whole run s",
                ),
                run_cells,
            ),
        ]
    return lines


# ------------------------------------------------------------------------------------------- image recipe


_RECIPE_SCORES = ("val_accuracy", "test_accuracy", "val_ece", "test_ece")


def _recipe_cell(row: Result) -> str:
    """Validation / internal test accuracy, then their ECE where the row has it (rows from 2026-12-07 on)."""
    cell = f"{row['val_accuracy']:.4f} / {row['test_accuracy']:.4f}"
    return cell + (
        f", ECE {row['val_ece']:.3f} / {row['test_ece']:.3f}" if {"val_ece", "test_ece"} <= row.keys() else ""
    )


def _recipe_table(r: Result) -> list[str]:
    """A recipe benchmark's table (bench.recipes): each recipe on Kiln's own validation and internal test splits
    of each set's train file, one row per data set and their mean, then the settings and the verdict."""
    rows = r["rows"]
    recipes = [name for name in r["parameters"]["recipes"] if any(row["recipe"] == name for row in rows)]
    sets = list(dict.fromkeys(row["data_set"] for row in rows))
    by = {(row["data_set"], row["recipe"]): row for row in rows}
    cells = []
    for name in sets:
        first = next(by[(name, recipe)] for recipe in recipes if (name, recipe) in by)
        items = first["items"]
        split = f"{items['train']:,} / {items['validation']:,} / {items['test']:,}"
        if first.get("recordings"):
            split += f" ({first['recordings']:,} recordings kept whole)"
        row_cells = [name, split]
        for recipe in recipes:
            row = by.get((name, recipe))
            row_cells.append(
                f"{_recipe_cell(row)} ({row['epochs_run']} ep, {row['train_seconds']:.0f} s)" if row else "-"
            )
        cells.append(row_cells)

    def mean(recipe: str, names: list[str]) -> str:
        done = [by[(name, recipe)] for name in names]
        keys = [k for k in _RECIPE_SCORES if all(k in row for row in done)]
        return _recipe_cell({k: sum(row[k] for row in done) / len(done) for k in keys})

    means = ["mean", ""]
    for recipe in recipes:
        done = [name for name in sets if (name, recipe) in by]
        cell = mean(recipe, done) if done else "-"
        if done and len(done) < len(sets):
            cell += f" ({len(done)} of {len(sets)} sets"
            if recipe != "default" and all((name, "default") in by for name in done):
                cell += f"; default on them: {mean('default', done)}"  # the comparison the partial mean allows
            cell += ")"
        means.append(cell)
    cells.append(means)
    complete = [recipe for recipe in recipes if all((name, recipe) in by for name in sets)]

    def best(key: str, among: list[str], sign: int = 1) -> str:
        return max(among, key=lambda recipe: sign * sum(by[(name, recipe)][key] for name in sets))

    if len(complete) > 1:
        verdict = (
            f" Of the recipes run on every data set, **{best('val_accuracy', complete)}** has the highest mean "
            f"validation accuracy and **{best('test_accuracy', complete)}** the highest mean internal test accuracy."
        )
        scored = [recipe for recipe in complete if all("val_ece" in by[(name, recipe)] for name in sets)]
        if len(scored) > 1:
            verdict += (
                f" Of those with ECE measured, **{best('val_ece', scored, -1)}** has the lowest mean validation ECE "
                f"and **{best('test_ece', scored, -1)}** the lowest mean internal test ECE."
            )
    elif complete:  # nothing to rank: each other recipe is compared with it on the sets it ran (the mean row)
        verdict = f" Only **{complete[0]}** ran on every data set; the mean row compares each other recipe with it."
    else:
        verdict = ""
    settings = "; ".join(
        f"**{recipe}**: "
        + ", ".join(f"{k} {v}" for k, v in by[next((n, recipe) for n in sets if (n, recipe) in by)]["settings"].items())
        for recipe in recipes
    )
    return [*table(("data set", "split", *recipes), cells), "", f"Settings: {settings}.{verdict}"]


def _recipe_section(r: Result, title: str, how: str) -> list[str]:
    """A recipe benchmark's section: its title, what the recipes ran (``how``), what every cell holds, the table."""
    return [
        f"## {title} (CPU)\n",
        f"{measured_line(r)} {how} The quality benchmark's test files are never read. Each cell: validation / "
        "internal test accuracy of the model as it ships (calibrated on validation), and on rows measured from "
        "2026-12-07 on their expected calibration error, ECE (15 bins), likewise (epochs run, training seconds). "
        "Split: training / validation / internal test items.\n",
        *_recipe_table(r),
    ]


def image_recipe_section(r: Result) -> list[str]:
    """How the image training defaults were chosen (bench.image_recipe)."""
    return _recipe_section(
        r,
        "Image training recipe",
        "How the image training defaults were chosen (issue 17 item 4; `bench/image_recipe.py`): each recipe "
        "trains the network alone (no kernel model, no refit) on Kiln's own split of each image set's train file, "
        "the quality benchmark's train side; its early stopping picks the epoch on Kiln's validation split, and "
        "Kiln's internal test split, which neither the fit nor the epoch choice saw, scores it once more. "
        "**default without smoothing** asks whether label smoothing is what keeps the image sets' served ECE "
        "above 0.03 (issue 20): a smoothed network's confidence has a shape no temperature undoes. Smoothing stays "
        "in the default; `training/config.py` (TASK_TRAIN_DEFAULTS) says why.",
    )


def text_recipe_section(r: Result) -> list[str]:
    """How text training defaults were chosen (bench.text_recipe)."""
    return _recipe_section(
        r,
        "Text training recipe",
        "How text training defaults were chosen (issue 17; `bench/text_recipe.py`): each recipe runs the whole "
        "text training once (the linear half's fits and their choice by cross-validation, the network, the "
        "choice of what ships; no refit, no label audit) on Kiln's own split of each text set's train file, the "
        "quality benchmark's train side, and the model it would ship is scored on Kiln's validation split, where "
        "every choice was made, and on its internal test split, which none saw.",
    )


# ------------------------------------------------------------------------------------------------ predict

PREDICT_RSS_MIB = 1024  # issue 21: under 1 GiB peak
PREDICT_RATIO = 0.8  # and at least 80% of ONNX Runtime's own throughput at the same batch size


def _span(rows: list[Result], key: str, fmt: str) -> str:
    """``12,995-14,899``: the lowest and highest of a field over the rounds (one value when they agree)."""
    return _between([row[key] for row in rows], fmt)


def _between(values: list[float], fmt: str) -> str:
    """The lowest and highest of ``values`` as ``fmt`` shows them, or one value when they show the same."""
    low, high = (fmt.format(f(values)) for f in (min, max))
    return low if low == high else f"{low}-{high}"


def predict_section(r: Result) -> list[str]:
    """`kiln predict` at scale against ONNX Runtime alone (bench.predict), one line per task and setting with the
    range over the interleaved rounds."""
    p = r["parameters"]
    groups: dict[tuple[str, int], list[Result]] = {}
    for row in r["rows"]:
        groups.setdefault((row["task"], row["workers"]), []).append(row)
    cells = []
    for (task, workers), rows in groups.items():
        rss = max(row["peak_rss_mib"] for row in rows)
        ratios = [row["ratio"] for row in rows]
        cells.append(
            [
                f"{rows[0]['items']:,} {task}s ({r['variants'].get(task)})",
                "this process" if workers <= 1 else f"local Dask, {workers} workers",
                _span(rows, "items_per_s", "{:,.0f}"),
                _span(rows, "ort_items_per_s", "{:,.0f}"),
                _span(rows, "ratio", "{:.2f}"),
                _span(rows, "seconds", "{:.1f}"),
                f"{rss:,}",
                "yes" if rss < PREDICT_RSS_MIB else "no",
                "yes" if min(ratios) >= PREDICT_RATIO else "no",
            ]
        )
    header = (
        "input",
        "shards run in",
        "kiln predict items/s",
        "ORT alone items/s",
        "ratio",
        "flow s",
        "peak RSS MiB",
        f"< {PREDICT_RSS_MIB} MiB",
        f"ratio >= {PREDICT_RATIO}",
    )
    return [
        "## Batch prediction at scale (CPU)\n",
        measured_line(r)
        + f" `kiln predict` on {p['texts']:,} short texts (one CSV) and {p['images']:,} small PNG images (a folder), "
        "drawn from the sample data with the sample models, against a bare ONNX Runtime InferenceSession of the same "
        f"file fed inputs encoded beforehand (inference only), both at batch {p['batch']}, in {p['rounds']} "
        "interleaved rounds (ranges below). kiln predict's items/s count everything the flow does (reading, decoding, "
        "preprocessing, inference, writing), not Prefect's start-up; peak RSS is the whole process tree's, Dask "
        "workers included.\n",
        *table(header, cells),
    ]


# ------------------------------------------------------------------------------------------------------ page

# (result file's benchmark name, section, what measures it when it is missing), in page order
SECTIONS: list[tuple[str, Callable[[Result], list[str]], str]] = [
    ("training", training_section, "training and compression (`make bench`)"),
    ("http", http_section, "HTTP service (`make bench`)"),
    ("training", gpu_section, ""),
    ("data_pipeline", data_pipeline_section, "data pipeline (`make bench-data`)"),
    ("quality", quality_section, "quality against classic peers (`make bench-quality`)"),
    ("quality", variants_section, ""),
    ("label_flips", label_flips_section, "label audit against planted flips (`make bench-label-flips`)"),
    ("image_recipe", image_recipe_section, "image training recipe (`make bench-image-recipe`)"),
    ("text_recipe", text_recipe_section, "text training recipe (`make bench-text-recipe`)"),
    ("predict", predict_section, "batch prediction at scale (`make bench-predict`)"),
]


def render(results: dict[str, Result]) -> str:
    """The whole page from the results by benchmark name; sections without a result are left out."""
    missing = [what for name, _, what in SECTIONS if what and name not in results]
    lines = [
        "# Benchmarks",
        "",
        "<!-- Rendered by `python -m bench.render` from docs/bench/*.json: rerun a benchmark or edit "
        "bench/render.py; do not edit this file. -->",
        "",
        "Each section comes from one result file in [`docs/bench/`](bench/) (machine, UTC date, parameters and "
        "every number as data) and says when and where it was measured."
        + (f" Not measured yet: {'; '.join(missing)}." if missing else ""),
    ]
    for name, section, _ in SECTIONS:
        if name in results:
            lines += ["", *section(results[name])]
    return "\n".join(lines) + "\n"


def render_dir(directory: Path = BENCH_DIR) -> str:
    return render(read_results(directory))


def write_markdown(directory: Path = BENCH_DIR, out: Path | None = None) -> Path:
    """Render ``directory``'s result files into ``out`` (default: BENCHMARKS.md beside the directory)."""
    out = out or markdown_for(Path(directory) / "any.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_dir(directory), encoding="utf-8")
    return out


def after_benchmark(*result_paths: Path) -> None:
    """What each benchmark calls once its result files are written: re-render the page beside them."""
    for directory in dict.fromkeys(Path(p).parent for p in result_paths):
        out = write_markdown(directory)
        print(f"wrote {', '.join(str(p) for p in result_paths if Path(p).parent == directory)}; rendered {out}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=BENCH_DIR, help="folder of result files (default: docs/bench)")
    parser.add_argument("--out", type=Path, help="the Markdown to write (default: BENCHMARKS.md beside --dir)")
    args = parser.parse_args(argv)
    print(f"wrote {write_markdown(args.dir, args.out)}")


if __name__ == "__main__":
    main()
