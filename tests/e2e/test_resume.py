"""`kiln run --resume`: a run killed with SIGKILL mid-training continues from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_texts, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EPOCHS = 40
CONFIG = """
text_model: {embedding_dim: 16, filters: 16, dense_units: 16, max_length: 16, dropout: 0.1}
train: {epochs: 40, batch_size: 8, learning_rate: 0.001, early_stopping_patience: 1000}
compress: {latency_runs: 5, calibration_samples: 16}
"""


def _epochs_logged(history: Path) -> int:
    return max(0, len(history.read_text().splitlines()) - 1) if history.exists() else 0


def test_sigkill_mid_training_then_resume_carries_the_epoch_count_on(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", make_texts(60))
    (tmp_path / "c.yaml").write_text(CONFIG)
    run_dir = tmp_path / "run"
    base = [sys.executable, "-m", "flows.cli", "run"]
    args = ["--task", "text", "--data", str(data), "--out", str(run_dir), "--store", str(tmp_path / "store")]
    first = subprocess.Popen(
        [*base, *args, "--config", str(tmp_path / "c.yaml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while _epochs_logged(run_dir / "history.csv") < 3:
        assert first.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "training did not start in time"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    done_before = _epochs_logged(run_dir / "history.csv")
    assert 3 <= done_before < EPOCHS and any((run_dir / "checkpoints").rglob("*"))

    resumed = subprocess.run([*base, "--resume", str(run_dir)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming text model" in resumed.stdout
    report = json.loads((run_dir / "report.json").read_text())
    assert report["training"]["epochs_run"] == EPOCHS  # the epoch count carried on
    assert report["config"]["train"]["batch_size"] == 8  # the saved configuration was used
    lines = (run_dir / "history.csv").read_text().splitlines()
    epochs = sorted({int(line.split(",")[0]) for line in lines[1:]})
    assert epochs == list(range(EPOCHS))
    # the resumed process trained only the remaining epochs, not all of them again
    assert len(lines) - 1 < EPOCHS + 3
    assert report["promoted"] and report["model"]["version"] == "v0001"
