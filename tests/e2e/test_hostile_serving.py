"""Hostile but well-formed load against the real `kiln serve`: bounded work per text, health probes that answer
while the classify routes are saturated."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from serving.client import KilnServer
from serving.preprocess import TextSpec
from tests.conftest import TEXT_LABELS, onnx_text_model, register_onnx

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.serial]  # time bounds: run alone

# A text model that reads words, bigrams, character n-grams and the whole-document bag: every hashing path.
SPEC = TextSpec(
    labels=TEXT_LABELS,
    vocabulary=("", "[UNK]", "good", "bad", "film"),
    max_length=16,
    ngram_buckets=64,
    char_buckets=4096,
    char_length=64,
    bag_length=64,
)


def _server_rss(server: KilnServer) -> int:
    """Bytes resident in `kiln serve` and every process it started (BentoML's workers)."""
    assert server.process is not None
    root = psutil.Process(server.process.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


@pytest.fixture()
def text_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "store"
    register_onnx(root, "text", onnx_text_model(TEXT_LABELS, SPEC.input_vocabulary, SPEC.input_length), SPEC.to_dict())
    with KilnServer(root) as server:
        yield server


def test_huge_words_are_answered_quickly_with_bounded_memory(text_server: KilnServer) -> None:
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))

    # 8 requests of 256 texts, each one 19,000-letter word, all different: under every limit (about 4.9 MB each).
    # Written before the clock starts: the time measured is the server's.
    bodies = [
        {"texts": ["".join(rng.choice(letters, 19_000)) + str(seed * 1000 + i) for i in range(256)]}
        for seed in range(8)
    ]

    def hostile(body: dict) -> httpx.Response:
        return httpx.post(text_server.url + "/classify_text", json=body, timeout=60)

    httpx.post(text_server.url + "/classify_text", json={"texts": ["good film"]})  # warm
    before = _server_rss(text_server)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(hostile, bodies))
    took = time.monotonic() - started
    growth = _server_rss(text_server) - before
    assert [r.status_code for r in answers] == [200] * 8, answers[0].text[:300]
    assert all(len(r.json()["predictions"]) == 256 for r in answers)
    assert took < 30, f"8 hostile requests took {took:.1f} s"
    assert growth < 300e6, f"the server grew by {growth / 1e6:.0f} MB"


def test_health_probes_answer_while_classify_is_saturated(text_server: KilnServer) -> None:
    stop = threading.Event()
    answered = [0]
    texts = [f"good film number {i} " * 40 for i in range(32)]

    def client() -> None:
        with httpx.Client(base_url=text_server.url, timeout=30) as http:
            while not stop.is_set():
                r = http.post("/classify_text", json={"texts": texts})
                assert r.status_code in (200, 503), r.text
                answered[0] += 1

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)  # saturated
        latencies = []
        with httpx.Client(base_url=text_server.url, timeout=10) as probe:
            for path in ["/livez", "/readyz"] * 15:
                started = time.perf_counter()
                assert probe.get(path).status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert answered[0] > 20, "the classify routes were not kept busy"
    assert float(np.median(latencies)) < 0.05, f"median probe {np.median(latencies) * 1000:.0f} ms"
    assert float(np.percentile(latencies, 90)) < 0.05, f"p90 probe {np.percentile(latencies, 90) * 1000:.0f} ms"
