"""Multi-worker training for real: two `kiln run` processes on loopback ports, each told its role by TF_CONFIG,
train one model with MultiWorkerMirroredStrategy in lockstep; only the chief compresses and registers."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serving.store import ModelStore
from tests.conftest import TINY_CONFIG, make_image_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def free_ports(n: int) -> list[int]:
    """Ports the OS hands out now (bound together, so they differ, then released for the workers)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def losses(run_dir: Path) -> list[float]:
    with (run_dir / "history.csv").open() as fh:
        return [float(row["loss"]) for row in csv.DictReader(fh)]


def test_two_workers_train_one_model_and_only_the_chief_registers(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path / "images", per_class=20)
    config = yaml.safe_load(TINY_CONFIG)
    config["train"] |= {"epochs": 3, "distribute": "mirrored"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    store = tmp_path / "store"

    workers = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            "PREFECT_HOME": str(tmp_path / f"prefect-{index}"),  # each its own temporary Prefect server
        }
        cmd = [sys.executable, "-m", "flows.cli", "run", "--task", "image", "--data", str(images)]
        cmd += ["--config", str(tmp_path / "c.yaml"), "--store", str(store), "--out", str(tmp_path / f"run{index}")]
        log = (tmp_path / f"worker{index}.log").open("w")
        workers.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env))
    try:
        codes = [worker.wait(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], f"exit codes {codes}\n--- chief\n{logs[0][-4000:]}\n--- worker 1\n{logs[1][-4000:]}"

    # One model, trained in lockstep: gradients were all-reduced, so both saw the same loss every epoch.
    chief_run, worker_run = tmp_path / "run0", tmp_path / "run1"
    assert losses(chief_run) == losses(worker_run) and len(losses(chief_run)) >= 1
    report = json.loads((chief_run / "report.json").read_text())
    assert report["training"]["device"].endswith("MultiWorkerMirroredStrategy (TF_CONFIG)")
    assert "worker done" in logs[1] and not (worker_run / "report.json").exists()
    assert not (worker_run / "artifacts").exists()  # the worker compressed nothing

    models = ModelStore(store)
    assert models.versions("image") == ["v0001"] and models.production("image") == "v0001"
