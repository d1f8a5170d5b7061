"""BentoML's own client against the real `kiln serve`: both routes work as the OpenAPI page documents them."""

from __future__ import annotations

from pathlib import Path

import bentoml
import pytest

from serving.client import KilnServer
from tests.conftest import IMAGE_LABELS, TEXT_LABELS, png_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_bentoml_sync_client_classifies_images_and_texts(onnx_store: Path, tmp_path: Path) -> None:
    picture = tmp_path / "picture.png"
    picture.write_bytes(png_bytes())
    with KilnServer(onnx_store) as server, bentoml.SyncHTTPClient(server.url, server_ready_timeout=30) as client:
        image = client.classify_image(image=picture)
        assert image["label"] in IMAGE_LABELS and image["model"]["version"] == "v0001"
        texts = client.classify_text(texts=["good film", "bad"])
        assert [p["label"] in TEXT_LABELS for p in texts["predictions"]] == [True, True]
        assert texts["model"]["name"] == "kiln-text"
