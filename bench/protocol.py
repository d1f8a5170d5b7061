"""The quality benchmark's user protocol (issue 17) as data: which data sets, the row schema, and how one row is
judged (the win/tie/loss bar and McNemar's exact test).

Light on purpose (the renderer computes verdicts with it): scipy is imported only inside ``mcnemar_p``.

- A **win**: Kiln's default beats the best peer by at least 0.5 accuracy points or 40% of the peer's error,
  whichever is smaller. A **loss** is the reverse: the peer beats Kiln's default by at least 0.5 points or 40% of
  Kiln's error, whichever is smaller. Anything else is a **tie**. A difference of zero is always a tie (so a perfect
  peer, whose bar is 0, is tied by a perfect Kiln and never beaten).
- **McNemar's exact test** on the same test items: of the items exactly one side classifies correctly, Kiln alone
  is right on ``b`` and the peer alone on ``c``; under "equally good" b ~ Binomial(b + c, 1/2). The p-value is the
  two-sided binomial test (scipy.stats.binomtest).
"""

from __future__ import annotations

from collections.abc import Sequence

# quality.json rows measured under the user protocol carry "schema": 2; rows without it (schema 1) came from the
# earlier protocol (Kiln's own split scored, the peer's C chosen on Kiln's validation split) and are not shown as
# user-protocol results.
ROW_SCHEMA = 2
# Every data set the benchmark knows, in table order: the bundled sample data, then ../shared/datasets.
SAMPLE_SETS = ("sample_digits", "sample_texts")
OFFICIAL_TEXT_SETS = ("sst2", "ohsumed23", "snips", "clinc150")  # train.csv [+ dev.csv] / test.csv
SPLIT_TEXT_SETS = ("mr", "subj", "cr", "mpqa", "ag_news")  # data.csv only
OFFICIAL_IMAGE_SETS = ("gtsrb",)  # train/ / test/
SPLIT_IMAGE_SETS = ("notmnist", "flowers5")  # images/ only
SET_ORDER = (
    *SAMPLE_SETS,
    "mr",
    "subj",
    "cr",
    "mpqa",
    "sst2",
    "ag_news",
    "ohsumed23",
    "snips",
    "clinc150",
    "notmnist",
    "gtsrb",
    "flowers5",
)
# Names the earlier protocol's rows used, by the set they stand for.
EARLIER_NAMES = {"sample digits": "sample_digits", "sample texts": "sample_texts", "sst2 (train.csv)": "sst2"}


def set_name(row: dict[str, object]) -> str:
    """The data set a quality.json row stands for, under either protocol's naming."""
    name = str(row["name"])
    return EARLIER_NAMES.get(name, name)


def is_user_protocol(row: dict[str, object]) -> bool:
    """Whether a row was measured under the user protocol (schema 2 or later)."""
    schema = row.get("schema", 1)
    return isinstance(schema, int) and schema >= ROW_SCHEMA


WIN_POINTS = 0.5  # accuracy points
WIN_ERROR_SHARE = 0.4  # of the beaten side's error
EPSILON = 1e-9  # accuracies are ratios of item counts: compare points with this slack


def bar_points(accuracy: float) -> float:
    """How many points one must beat a side of this accuracy by: min(0.5, 40% of its error in points)."""
    return min(WIN_POINTS, WIN_ERROR_SHARE * 100.0 * (1.0 - accuracy))


def verdict(kiln: float, peer: float) -> str:
    """``win``, ``tie`` or ``loss`` for Kiln's accuracy against the best peer's (both fractions in [0, 1])."""
    diff = 100.0 * (kiln - peer)
    if diff > EPSILON and diff >= bar_points(peer) - EPSILON:
        return "win"
    if -diff > EPSILON and -diff >= bar_points(kiln) - EPSILON:
        return "loss"
    return "tie"


def discordant(kiln_correct: Sequence[bool], peer_correct: Sequence[bool]) -> tuple[int, int]:
    """(b, c): items only Kiln got right, items only the peer got right."""
    if len(kiln_correct) != len(peer_correct):
        raise ValueError(f"McNemar needs the same items: {len(kiln_correct)} against {len(peer_correct)}")
    b = sum(bool(k) and not bool(p) for k, p in zip(kiln_correct, peer_correct, strict=True))
    c = sum(bool(p) and not bool(k) for k, p in zip(kiln_correct, peer_correct, strict=True))
    return b, c


def mcnemar_p(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value from the discordant counts; 1.0 when there are none."""
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(b, b + c, 0.5).pvalue)


def compare(kiln_correct: Sequence[bool], peer_correct: Sequence[bool]) -> dict[str, float | int | str]:
    """Kiln against the peer on the same items: the difference in points, b, c, McNemar's p and the verdict."""
    n = len(kiln_correct)
    b, c = discordant(kiln_correct, peer_correct)
    kiln, peer = sum(map(bool, kiln_correct)) / n, sum(map(bool, peer_correct)) / n
    return {
        "difference_points": round(100.0 * (kiln - peer), 4),
        "kiln_only_correct": b,
        "peer_only_correct": c,
        "mcnemar_p": mcnemar_p(b, c),
        "verdict": verdict(kiln, peer),
    }
