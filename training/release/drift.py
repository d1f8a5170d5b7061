"""The training summary of the drift signals that every version stores (serving.drift.BASELINE): the inputs of
up to ``MAX_ITEMS`` items the shipped model learnt from, and the served variant's top-1 scores on the test
split (held out, so they look like what production should send). A server compares what it sees with it.

>>> write_baseline(train_and_val, spec, compressed.test_scores, Path("out/artifacts"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from serving.drift import BASELINE, image_signals, summary, text_signals
from serving.preprocess import Spec, TextSpec
from training.data.dataset import Dataset
from training.data.features import to_inputs

MAX_ITEMS = 5000  # a seeded sample: bucket shares from 5,000 items are within about 1 point of the whole set's
CHUNK = 512  # items decoded at a time, so memory stays flat on large image sets


def input_signals(dataset: Dataset, spec: Spec, seed: int = 0) -> dict[str, np.ndarray]:
    """The drift signals of a sample of ``dataset``'s inputs, computed as the server computes them."""
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(dataset), min(MAX_ITEMS, len(dataset)), replace=False).tolist())
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(picked), CHUNK):
        chunk = dataset.subset(picked[start : start + CHUNK])
        batch = to_inputs(chunk, spec)
        if isinstance(spec, TextSpec):
            parts.append(text_signals([str(t) for t in chunk.inputs], batch, spec))
        else:
            parts.append(image_signals([Path(p).stat().st_size for p in chunk.inputs], batch))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def write_baseline(learnt_from: Dataset, spec: Spec, test_scores: np.ndarray, directory: Path) -> Path:
    """drift.json under ``directory`` (the version's files): the signals of ``learnt_from`` and the scores."""
    values = input_signals(learnt_from, spec) | {"score": np.asarray(test_scores, dtype=np.float64)}
    baseline = summary(learnt_from.task, values) | {
        "items": {"inputs": int(min(MAX_ITEMS, len(learnt_from))), "scores": int(len(test_scores))},
        "scores_from": "the served variant on the test split",
    }
    path = directory / BASELINE
    path.write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
    return path
