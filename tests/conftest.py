"""Shared fixtures: small, learnable, deliberately messy data, and real ONNX models in a real store."""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Each test session gets its own Prefect home (temporary server database) and quiet, offline Prefect.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

PATTERNS = ("horizontal", "vertical", "diagonal")
TINY_CONFIG = """
image_model: {height: 16, width: 16, filters: [8], dense_units: 16, dropout: 0.1, kernel: false}
text_model: {embedding_dim: 16, filters: 16, dense_units: 16, max_length: 16, dropout: 0.1}
train: {epochs: 12, batch_size: 16, learning_rate: 0.01, early_stopping_patience: 4}
augment: {enabled: false}
compress: {latency_runs: 5, calibration_samples: 32, prune_epochs: 1}
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--phase",
        choices=("all", "parallel", "serial"),
        default="all",
        help="`make test` runs the suite in two phases: `parallel` leaves out the tests marked serial (they bound "
        "latency under load), `serial` runs only those. Any -m or -k still applies.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    phase = config.getoption("--phase")
    if phase == "all":
        return
    keep = [item for item in items if (item.get_closest_marker("serial") is not None) == (phase == "serial")]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _prefect_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server for the in-process flow tests, stopped inside the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def pattern_image(kind: str, size: int, rng: random.Random, colour: bool = False) -> Image.Image:
    """Bars or a diagonal on a noisy background: easy for a CNN, impossible by mean brightness."""
    arr = np.array([[rng.random() * 60 for _ in range(size)] for _ in range(size)], dtype=np.float64)
    step = max(2, size // 4)
    for i in range(size):
        for j in range(size):
            on = (
                (i // step) % 2 == 0
                if kind == "horizontal"
                else (j // step) % 2 == 0
                if kind == "vertical"
                else abs(i - j) < step
            )
            if on:
                arr[i, j] = 200 + rng.random() * 55
    grey = Image.fromarray(arr.astype(np.uint8), mode="L")
    if colour:
        return Image.merge("RGB", (grey, grey.point(lambda v: v * 0.5), grey.point(lambda v: 255 - v)))
    return grey


def make_image_folder(root: Path, per_class: int = 30, seed: int = 0) -> Path:
    """Clean images of three patterns at mixed sizes and modes under root/<label>/."""
    rng = random.Random(seed)
    for kind in PATTERNS:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            size = rng.choice([12, 16, 24, 40])
            img = pattern_image(kind, size, rng, colour=k % 5 == 0)
            fmt = ["png", "jpeg", "bmp", "webp"][k % 4] if k % 5 else "png"
            if k % 7 == 3:
                img = img.convert("RGBA")
                fmt = "png"
            img.save(root / kind / f"{kind}_{k}.{'jpg' if fmt == 'jpeg' else fmt}", format=fmt.upper())
    return root


def add_dirt(root: Path) -> dict[str, int]:
    """Corrupt, duplicate, hidden and stray files; returns the counts cleaning must report."""
    good = sorted((root / "horizontal").glob("*.png"))[0]
    data = good.read_bytes()
    (root / "horizontal" / "empty.png").write_bytes(b"")
    (root / "horizontal" / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "vertical" / "not_an_image.jpg").write_bytes(b"this is plain text, not a JPEG")
    (root / "vertical" / "notes.txt").write_text("labelling notes")
    (root / "horizontal" / "copy_of_first.png").write_bytes(data)  # byte-identical
    Image.open(good).save(root / "horizontal" / "same_pixels.bmp")  # pixel-identical, other format
    (root / "diagonal" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / ".hidden_label").mkdir()
    (root / ".hidden_label" / "x.png").write_bytes(data)
    (root / "stray_in_root.png").write_bytes(data)
    return {"unreadable_skipped": 4, "duplicates_removed": 2, "hidden_ignored": 2, "missing_label_skipped": 1}


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "images")


TEXT_CLASSES = {
    "sports": ["the match", "our striker", "the final", "the coach", "the league", "the keeper"],
    "weather": ["the forecast", "the storm", "the rain", "the sunshine", "the wind", "the fog"],
    "food": ["the soup", "the pasta", "the bakery", "the curry", "the salad", "the dessert"],
}
TEXT_VERBS = ["was great", "looked odd", "surprised us", "ended early", "is back", "felt long", "was late"]


def make_texts(n_per_class: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows, seen = [], set()
    for label, subjects in TEXT_CLASSES.items():
        while sum(1 for _, lab in rows if lab == label) < n_per_class:
            opener, subject, verb = rng.choice(["", "today ", "again "]), rng.choice(subjects), rng.choice(TEXT_VERBS)
            text = f"{opener}{subject} {verb} {rng.randint(1, 99)}"
            if text not in seen:
                seen.add(text)
                rows.append((text, label))
    rng.shuffle(rows)
    return rows


def write_csv(
    path: Path,
    rows: list[tuple[str, ...]],
    header: tuple[str, ...] | None = ("text", "label"),
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


@pytest.fixture()
def texts_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "texts.csv", make_texts())


@pytest.fixture()
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


# ------------------------------------------------------------- real ONNX models without TensorFlow


def onnx_image_model(labels: tuple[str, ...], size: int = 8, channels: int = 1) -> bytes:
    """Linear classifier over pixels: (N, size, size, C) float32 -> softmax probabilities."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    features = size * size * channels
    weights = rng.normal(size=(features, len(labels))).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["image", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, size, size, channels])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(labels)])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array([-1, features], np.int64), "shape")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


def onnx_text_model(
    labels: tuple[str, ...], vocab_size: int, max_length: int, table: np.ndarray | None = None
) -> bytes:
    """Bag of embeddings: (N, max_length) int32 -> softmax probabilities. Ids are read modulo ``vocab_size``, so
    a spec whose inputs carry counts (a whole-document bag) still indexes the table."""
    from onnx import TensorProto, helper, numpy_helper

    if table is None:
        table = np.random.default_rng(1).normal(size=(vocab_size, len(labels)))
    table = np.asarray(table, dtype=np.float32)  # (vocab_size, classes): each id's logits
    graph = helper.make_graph(
        [
            helper.make_node("Mod", ["tokens", "size"], ["ids"]),
            helper.make_node("Gather", ["table", "ids"], ["embedded"]),
            helper.make_node("ReduceSum", ["embedded", "axes"], ["logits"], keepdims=0),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "text",
        [helper.make_tensor_value_info("tokens", TensorProto.INT32, [None, max_length])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(labels)])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
            numpy_helper.from_array(np.array(vocab_size, np.int32), "size"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


def register_onnx(
    store_root: Path,
    task: str,
    onnx_bytes: bytes,
    spec: dict,
    promote: bool = True,
    accuracy: float = 0.9,
    files: dict[str, bytes] | None = None,
) -> str:
    """Put an ONNX model (and any other ``files`` of the version) into a real store the way the pipeline does;
    returns the version name."""
    from serving.store import ModelStore

    staging = store_root.parent / f"staging-{task}-{random.random()}"
    (staging / "variants").mkdir(parents=True)
    (staging / "variants" / "fp32.onnx").write_bytes(onnx_bytes)
    for name, data in (files or {}).items():
        (staging / name).write_bytes(data)
    variant = {
        "file": "variants/fp32.onnx",
        "bytes": len(onnx_bytes),
        "gzip_bytes": 0,
        "accuracy": accuracy,
        "macro_f1": accuracy,
        "latency_ms_p50": 0.1,
    }
    manifest = {
        "name": f"kiln-{task}",
        "spec": spec,
        "served_variant": "fp32",
        "variants": {"fp32": variant},
        "metrics": {"accuracy": accuracy, "macro_f1": accuracy},
        "gate": "test fixture",
    }
    store = ModelStore(store_root)
    version = store.register(task, staging, manifest)
    if promote:
        store.promote(task, version.version)
    return version.version


IMAGE_LABELS = ("cat", "dog", "owl")
TEXT_LABELS = ("neg", "pos")


@pytest.fixture()
def onnx_store(tmp_path: Path) -> Path:
    """A store with one production image model and one production text model (real ONNX files)."""
    from serving.preprocess import ImageSpec, TextSpec

    root = tmp_path / "store"
    image_spec = ImageSpec(labels=IMAGE_LABELS, height=8, width=8, channels=1)
    register_onnx(root, "image", onnx_image_model(IMAGE_LABELS), image_spec.to_dict())
    text_spec = TextSpec(labels=TEXT_LABELS, vocabulary=("", "[UNK]", "good", "bad", "film"), max_length=6)
    register_onnx(root, "text", onnx_text_model(TEXT_LABELS, 5, 6), text_spec.to_dict())
    return root


def png_bytes(size: tuple[int, int] = (20, 20), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color=128 if mode == "L" else (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()
