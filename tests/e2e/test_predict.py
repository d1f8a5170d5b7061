"""`kiln predict` through the real CLI: folders, manifests and tables with corrupt items, scored exactly as the HTTP
service scores them, and the same output from a two-worker local Dask cluster."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.client import KilnClient, KilnServer
from tests.conftest import TEXT_LABELS, make_image_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TEXTS = ["good film", "bad", "good good bad film", "a film", "FILM bad bad", "unknown words only"]


def kiln(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "flows.cli", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env={**os.environ})
    if ok:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def image_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with label folders, a loose image, a corrupt file and a README; a manifest over part of it with a
    missing file."""
    folder = make_image_folder(tmp_path / "images", per_class=3)
    (folder / "loose.png").write_bytes((folder / "vertical" / "vertical_0.png").read_bytes())
    (folder / "vertical" / "corrupt.png").write_bytes(b"\x89PNG but not really")
    (folder / "README.txt").write_text("not an image")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\nimages/loose.png,x\nimages/vertical/corrupt.png,x\nimages/gone.png,x\n")
    return folder, manifest


def test_predict_matches_the_service_on_folders_manifests_and_tables(
    onnx_store: Path, tmp_path: Path, image_inputs: tuple[Path, Path]
) -> None:
    folder, manifest = image_inputs
    texts_csv = tmp_path / "texts.csv"
    with open(texts_csv, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows([[i, t] for i, t in enumerate(TEXTS)] + [[99, "!!!"], [100]])
    texts_parquet = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"sentence": TEXTS}), texts_parquet)
    texts_gz = tmp_path / "texts.csv.gz"
    texts_gz.write_bytes(gzip.compress(texts_csv.read_bytes()))
    posts = tmp_path / "posts"  # a folder of text files: one text per file, label folders ignored
    for n, text in enumerate(TEXTS):
        (posts / f"batch{n % 2}").mkdir(parents=True, exist_ok=True)
        (posts / f"batch{n % 2}" / f"{n:03d}.txt").write_text(text)
    (posts / "batch0" / "scan.pdf").write_bytes(b"%PDF-1.7 " + bytes(64))
    runs = [
        ("image", folder, "folder.jsonl"),
        ("image", manifest, "manifest.csv"),
        ("text", texts_csv, "csv.jsonl"),
        ("text", texts_parquet, "pq.csv"),
        ("text", texts_gz, "gz.jsonl"),
        ("text", posts, "posts.jsonl"),
    ]
    for task, data, out in runs:
        kiln("predict", "--task", task, "--data", str(data), "--out", str(tmp_path / out), "--store", str(onnx_store),
             cwd=tmp_path)  # fmt: skip

    folder_rows = read_rows(tmp_path / "folder.jsonl")
    names = [r["item"] for r in folder_rows]
    assert names == sorted(names) and "README.txt" not in names and "loose.png" in names
    errors = {r["item"]: r["error"] for r in folder_rows if r["error"]}
    assert list(errors) == ["vertical/corrupt.png"] and "image" in errors["vertical/corrupt.png"]
    manifest_rows = read_rows(tmp_path / "manifest.csv")
    assert [r["item"] for r in manifest_rows] == [
        "line 2: images/loose.png",
        "line 3: images/vertical/corrupt.png",
        "line 4: images/gone.png",
    ]
    assert manifest_rows[0]["error"] == "" and "file not found" in manifest_rows[2]["error"]
    text_rows = read_rows(tmp_path / "csv.jsonl")
    assert [r["item"] for r in text_rows] == [f"line {n}" for n in range(2, 10)]
    assert "no words" in text_rows[6]["error"] and "field" in text_rows[7]["error"]

    with KilnServer(onnx_store) as server:
        client = KilnClient(server.url)
        for row in folder_rows:
            if not row["error"]:
                answer = client.classify_image(folder / row["item"])
                assert (row["label"], row["score"]) == (answer["label"], answer["score"]), row["item"]
                assert row["top_k"][0] == {"label": answer["label"], "score": answer["score"]}
                assert row["top_k"][1]["score"] == answer["scores"][row["top_k"][1]["label"]]
        served = client.classify_text(TEXTS)["predictions"]
    assert [(r["label"], r["score"]) for r in text_rows[:6]] == [(p["label"], p["score"]) for p in served]
    parquet_rows = read_rows(tmp_path / "pq.csv")
    assert [r["item"] for r in parquet_rows] == [f"row {n}" for n in range(1, 7)]
    assert [(r["label"], float(r["score"])) for r in parquet_rows] == [(p["label"], p["score"]) for p in served]
    assert all(json.loads(r["top_k"])[0] == [r["label"], float(r["score"])] for r in parquet_rows)
    assert {r["label"] for r in parquet_rows} <= set(TEXT_LABELS)
    assert read_rows(tmp_path / "gz.jsonl") == text_rows
    post_rows = {r["item"]: r for r in read_rows(tmp_path / "posts.jsonl")}
    assert "not a text file" in post_rows.pop("batch0/scan.pdf")["error"]
    by_file = [post_rows[f"batch{n % 2}/{n:03d}.txt"] for n in range(len(TEXTS))]
    assert [(r["label"], r["score"]) for r in by_file] == [(p["label"], p["score"]) for p in served]


def test_a_two_worker_dask_cluster_writes_the_single_process_output(
    onnx_store: Path, tmp_path: Path, image_inputs: tuple[Path, Path]
) -> None:
    folder, _ = image_inputs
    common = ["predict", "--task", "image", "--data", str(folder), "--store", str(onnx_store), "--top-k", "2"]
    kiln(*common, "--out", str(tmp_path / "one.csv"), cwd=tmp_path)
    # Shards of 4 items: the 11 items are scored by both workers, and written back in input order.
    result = kiln(*common, "--out", str(tmp_path / "dask.csv"), "--workers", "2", "--shard-items", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-5000:]
    assert (tmp_path / "dask.csv").read_text() == (tmp_path / "one.csv").read_text()
    assert "distributed" in result.stderr  # it did run on Dask


def test_predict_refuses_bad_requests_in_one_line(onnx_store: Path, tmp_path: Path) -> None:
    data = tmp_path / "texts.csv"
    data.write_text("text,b\ngood film,y\nbad,w\n")
    store = ["--store", str(onnx_store)]
    cases = {
        ("--out", str(tmp_path / "out.txt")): "suffix must be one of",
        ("--out", str(tmp_path / "o.csv"), "--version", "v0042"): "no text version 'v0042'",
        ("--out", str(tmp_path / "o.csv"), "--text-column", "body"): "no text column 'body'",
    }
    for extra, message in cases.items():
        result = kiln("predict", "--task", "text", "--data", str(data), *store, *extra, cwd=tmp_path, ok=False)
        assert result.returncode == 2 and message in result.stderr + result.stdout, result.stderr[-2000:]
        assert not (tmp_path / "o.csv").exists()
    empty_store = ["--store", str(tmp_path / "nothing")]
    result = kiln(
        "predict",
        "--task",
        "text",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o.csv"),
        *empty_store,
        cwd=tmp_path,
        ok=False,
    )
    assert result.returncode == 2 and "no text model is in production" in result.stderr + result.stdout


def test_a_dask_run_holds_only_the_shards_in_flight_and_keeps_the_environment(
    onnx_store: Path, tmp_path: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # distributed keeps each connection's recent messages (1,000 by default), and every shard's items travel in
    # one: without flows.predict's setting, every item read stayed in memory until the run ended
    import gc

    import flows.predict as predict_flow
    from serving.batch import Item, RowWriter

    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "".join(f"{TEXTS[n % len(TEXTS)]} {n}\n" for n in range(160)))
    alive: list[int] = []
    write = RowWriter.write

    def counting_write(self: RowWriter, rows: Any) -> None:
        gc.collect()
        alive.append(sum(type(o) is Item for o in gc.get_objects()))
        write(self, rows)

    monkeypatch.setattr(RowWriter, "write", counting_write)
    out = tmp_path / "dask.csv"
    environment = dict(os.environ)
    predict_flow.predict(task="text", data=str(data), out=str(out), store=str(onnx_store), workers=2, shard_items=10)
    assert len(read_rows(out)) == 160
    # the local cluster's nannies wrote OMP_NUM_THREADS=1 and a malloc setting into this process's environment;
    # the flow puts it back, so later subprocesses (the allocator test's control, a training run) do not inherit them
    assert dict(os.environ) == environment
    # 16 shards of 10: the shards in flight (WINDOW_PER_WORKER x 2), each also as the in-process scheduler's copy
    # until its release arrives; with distributed's message log on, all 160 items stayed
    assert max(alive) < 100, alive
