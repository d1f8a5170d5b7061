"""Hot reload under load through the real `kiln serve`: promotions and a rollback while 8 clients keep it busy."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from serving.client import KilnServer
from serving.preprocess import TextSpec
from serving.store import ModelStore
from tests.conftest import TEXT_LABELS, onnx_text_model, register_onnx

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS, SECONDS = 8, 18.0


def test_promote_and_rollback_under_load_without_a_failed_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    spec = TextSpec(labels=TEXT_LABELS, vocabulary=("", "[UNK]", "good", "bad", "film"), max_length=6)
    for promote in (True, False, False):  # v0001 in production; v0002 and v0003 waiting
        register_onnx(root, "text", onnx_text_model(TEXT_LABELS, 5, 6), spec.to_dict(), promote=promote)
    store = ModelStore(root)
    monkeypatch.setenv("KILN_RELOAD_INTERVAL", "0.5")
    seen: list[tuple[float, float, int, str]] = []  # sent, answered (seconds from the start), status, version
    lock = threading.Lock()
    with KilnServer(root) as server:
        started = time.monotonic()

        def client() -> None:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                while (sent := time.monotonic() - started) < SECONDS:
                    r = http.post("/classify_text", json={"texts": ["good film", "bad"]})
                    version = r.json().get("model", {}).get("version", "?") if r.status_code == 200 else r.text
                    with lock:
                        seen.append((sent, time.monotonic() - started, r.status_code, version))

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        changes = []
        for at, action in ((3.0, "v0002"), (8.0, "v0003"), (13.0, "rollback")):
            time.sleep(max(0.0, at - (time.monotonic() - started)))
            if action == "rollback":
                store.rollback("text")
            else:
                store.promote("text", action)
            changes.append((time.monotonic() - started, store.production("text")))
        for t in threads:
            t.join()
        metrics = httpx.get(server.url + "/metrics").text

    failed = [s for s in seen if s[2] != 200]
    assert not failed, f"{len(failed)} of {len(seen)} requests failed, first: {failed[:3]}"
    assert len(seen) > 100
    # Each pointer move is picked up before the next one, and the swap is atomic: once the new version has answered
    # a request, every request sent after that answer gets the new version (no flip back to the old one). How long
    # the pick-up takes depends on the machine's load, so the test keys on the first answer, not on a fixed delay.
    phases = [(0.0, "v0001"), *changes, (SECONDS + 60, None)]
    for (begin, version), (end, _) in zip(phases, phases[1:], strict=False):
        firsts = [answered for sent, answered, _, v in seen if v == version and begin <= answered < end]
        assert firsts, f"{begin:.1f}-{end:.1f} s: {version} never answered"
        swapped = min(firsts)
        window = {v for sent, answered, _, v in seen if sent >= swapped and answered < end}
        assert window == {version}, f"{begin:.1f}-{end:.1f} s: after {version} first answered, saw {window}"
    assert [v for _, v in changes] == ["v0002", "v0003", "v0002"]
    for name in (
        'kiln_model_info{task="text",variant="fp32",version="v0002"} 1.0',
        'kiln_model_reloads_total{result="success",task="text"} 4.0',
        'kiln_predictions_total{label="',
        'kiln_inference_seconds_bucket{le="0.001",task="text"}',
        'kiln_request_bytes_count{task="text"}',
        'kiln_model_stale{task="text"} 0.0',
    ):
        assert name in metrics, name
    assert 'kiln_model_info{task="text",variant="fp32",version="v0003"} 0.0' in metrics  # replaced
