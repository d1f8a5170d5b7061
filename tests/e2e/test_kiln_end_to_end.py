"""End to end through the real CLI in subprocesses: `kiln run`, then `kiln serve`, then HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serving.client import KilnClient, KilnServer
from serving.store import ModelStore
from tests.conftest import TINY_CONFIG, add_dirt, make_image_folder, make_texts, write_csv
from tests.flows.test_retrain_flow import check_report_contract

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def kiln(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "flows.cli", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both tasks trained by `kiln run` into one store (dirty images, odd-layout TSV texts)."""
    tmp = tmp_path_factory.mktemp("e2e")
    images = make_image_folder(tmp / "images", per_class=25)
    add_dirt(images)
    texts = write_csv(
        tmp / "texts.tsv",
        [(label, text) for text, label in make_texts(60)],
        header=("category", "sentence"),
        delimiter="\t",
    )
    config = tmp / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    store = tmp / "store"
    kiln(
        "run",
        "--task",
        "image",
        "--data",
        str(images),
        "--out",
        str(tmp / "run-image"),
        "--store",
        str(store),
        "--config",
        str(config),
        cwd=tmp,
    )
    out = kiln(
        "run",
        "--task",
        "text",
        "--data",
        str(texts),
        "--out",
        str(tmp / "run-text"),
        "--store",
        str(store),
        "--config",
        str(config),
        "--text-column",
        "sentence",
        "--label-column",
        "0",
        "--epochs",
        "10",
        cwd=tmp,
    )
    assert "PROMOTED" in out.stdout
    return store


def test_reports_follow_the_contract(trained_store: Path) -> None:
    for task in ("image", "text"):
        report = json.loads((trained_store.parent / f"run-{task}" / "report.json").read_text())
        check_report_contract(report)
        assert report["promoted"] and report["variants"]["fp32"]["accuracy"] >= 0.8
    image = json.loads((trained_store.parent / "run-image" / "report.json").read_text())
    assert image["data"]["unreadable_skipped"] == 4 and image["data"]["duplicates_removed"] == 2


def test_serve_classifies_over_http(trained_store: Path) -> None:
    images = trained_store.parent / "images"
    with KilnServer(trained_store) as server:
        client = KilnClient(server.url)
        correct = 0
        samples = [
            p
            for label in ("horizontal", "vertical", "diagonal")
            for p in sorted((images / label).glob(f"{label}_*.png"))[:4]
        ]
        for path in samples:
            r = client.classify_image(path)
            assert r["model"]["name"] == "kiln-image" and set(r["scores"]) == {"horizontal", "vertical", "diagonal"}
            correct += r["label"] == path.parent.name
        assert correct >= 0.75 * len(samples)

        r = client.classify_text(["the soup was great 5", "the storm is back 12", "our striker ended early 3"])
        assert [p["label"] for p in r["predictions"]] == ["food", "weather", "sports"]

        bad = httpx.post(
            server.url + "/classify_text", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400
        bad = httpx.post(server.url + "/classify_image", files={"image": ("x.png", b"")})
        assert bad.status_code == 400 and "empty" in bad.json()["error"]
        assert httpx.get(server.url + "/livez").status_code == 200  # still up after bad requests
        metrics = httpx.get(server.url + "/metrics").text
        assert "classify_image" in metrics


def test_untrainable_data_exits_2_naming_the_fix(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "one.csv", [(f"sample text {i}", "spam") for i in range(20)])
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "run",
        "--task",
        "text",
        "--data",
        str(data),
        "--store",
        str(tmp_path / "s"),
    ]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: " in result.stderr and "only one class ('spam', 20 examples)" in result.stderr
    store = ModelStore(tmp_path / "s")
    assert store.versions("text") == [] and store.production("text") is None  # nothing registered
