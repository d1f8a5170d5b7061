"""Drift through the real `kiln serve`: the training summary stored with a version, the histograms the server
exports, and `kiln drift` reading them over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from serving.client import KilnServer
from serving.preprocess import TextSpec, build_vocabulary, encode_texts
from serving.runtime import Classifier, make_session
from tests.conftest import TEXT_LABELS, make_texts, onnx_text_model, register_onnx, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _send(url: str, texts: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        for start in range(0, len(texts), 64):
            r = http.post("/classify_text", json={"texts": texts[start : start + 64]})
            assert r.status_code == 200, r.text


def test_kiln_drift_passes_the_training_stream_and_flags_a_shifted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import app
    from training.data.clean import load_dataset
    from training.release.drift import write_baseline

    rows = make_texts(200)
    dataset = load_dataset("text", write_csv(tmp_path / "train.csv", rows))
    texts = [str(t) for t in dataset.inputs]
    spec = TextSpec(labels=TEXT_LABELS, vocabulary=build_vocabulary(texts, 200), max_length=8)
    model = onnx_text_model(TEXT_LABELS, len(spec.vocabulary), 8)
    # what training stores: the signals of the items learnt from, and the model's scores on held-out ones
    held_out = [t for t, _ in make_texts(100, seed=7)]
    scores = Classifier(make_session(model), spec).predict(encode_texts(held_out, spec)).max(axis=1)
    write_baseline(dataset, spec, scores, tmp_path)
    root = tmp_path / "store"
    version = register_onnx(
        root, "text", model, spec.to_dict(), files={"drift.json": (tmp_path / "drift.json").read_bytes()}
    )
    monkeypatch.setenv("KILN_RELOAD_INTERVAL", "0.2")
    runner = CliRunner()
    with KilnServer(root) as server:
        metrics = f"{server.url}/metrics"
        _send(server.url, [t for t, _ in make_texts(150, seed=3)])  # new texts from the same distribution
        same = runner.invoke(app, ["drift", "--task", "text", "--metrics", metrics, "--store", str(root)])
        rng = np.random.default_rng(0)
        shifted = [" ".join(f"zq{w}" for w in rng.integers(0, 10**6, 120)) for _ in range(600)]
        _send(server.url, shifted)  # long texts of words the model never saw
        time.sleep(0.6)  # the server publishes kiln_drift_psi each reload interval
        scrape = httpx.get(metrics).text
        moved = runner.invoke(app, ["drift", "--task", "text", "--metrics", metrics, "--store", str(root)])
    assert same.exit_code == 0, same.output
    assert f"text {version}" in same.output and "verdict: no drift" in same.output
    assert moved.exit_code == 1, moved.output
    assert "verdict: drifted" in moved.output and "unknown_share" in moved.output.splitlines()[-1]
    assert f'kiln_drift_psi{{signal="text_chars",task="text",version="{version}"}}' in scrape
    assert 'kiln_input_unknown_share_bucket{le="0.0",task="text",version="' in scrape


def test_kiln_drift_says_what_is_missing(tmp_path: Path) -> None:
    from flows.cli import app

    result = CliRunner().invoke(app, ["drift", "--task", "text", "--metrics", "http://127.0.0.1:9/metrics"])
    assert result.exit_code == 2 and "cannot read http://127.0.0.1:9/metrics" in result.output
