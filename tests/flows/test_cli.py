"""The `kiln` CLI: fast start without TensorFlow, clear errors, models and rollback on a real store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import TEXT_LABELS, onnx_text_model, register_onnx

runner = CliRunner()


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_and_serving_import_no_tensorflow() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from flows.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0 and 'run' in r.output, r.output\n"
        "import serving.service, serving.runtime, serving.client\n"
        "bad = [m for m in ('tensorflow', 'tf_keras', 'prefect') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr


def test_run_with_missing_data_or_bad_config_fails_with_message(tmp_path: Path) -> None:
    r = runner.invoke(app, ["run", "--task", "text", "--data", str(tmp_path / "missing.csv")])
    assert r.exit_code == 2 and "does not exist" in r.output
    data = tmp_path / "t.csv"
    data.write_text("text,label\na,b\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epoch: 3}\n")
    r = runner.invoke(app, ["run", "--task", "text", "--data", str(data), "--config", str(bad)])
    assert r.exit_code == 2 and "valid keys: epochs" in r.output
    r = runner.invoke(app, ["run", "--task", "audio", "--data", str(data)])
    assert r.exit_code == 2 and "audio" in r.output


def test_models_lists_versions_and_rollback_restores_previous(tmp_path: Path) -> None:
    from serving.preprocess import TextSpec

    store = tmp_path / "store"
    spec = TextSpec(labels=TEXT_LABELS, vocabulary=("", "[UNK]", "a"), max_length=4).to_dict()
    register_onnx(store, "text", onnx_text_model(TEXT_LABELS, 3, 4), spec, accuracy=0.8)
    register_onnx(store, "text", onnx_text_model(TEXT_LABELS, 3, 4), spec, accuracy=0.9)

    r = runner.invoke(app, ["models", "--store", str(store)])
    assert r.exit_code == 0
    assert "* v0002" in r.output and "  v0001" in r.output and "accuracy 0.9000" in r.output
    listing = json.loads(runner.invoke(app, ["models", "--store", str(store), "--json"]).output)
    assert [v["production"] for v in listing["text"]] == [False, True] and listing["image"] == []

    r = runner.invoke(app, ["rollback", "--task", "text", "--store", str(store)])
    assert r.exit_code == 0 and "v0002 -> v0001" in r.output
    r = runner.invoke(app, ["rollback", "--task", "text", "--store", str(store)])
    assert r.exit_code == 2 and "no earlier production text version" in r.output


def test_store_defaults_to_kiln_store_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KILN_STORE", str(tmp_path / "from-env"))
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "from-env" in r.output


def test_sample_data_writes_digits_and_texts(tmp_path: Path) -> None:
    r = runner.invoke(app, ["sample-data", str(tmp_path / "s")])
    assert r.exit_code == 0
    digits = list((tmp_path / "s" / "images").rglob("*.png"))
    assert len(digits) == 1797 and len(list((tmp_path / "s" / "images").iterdir())) == 10


def test_compress_names_a_missing_version_before_starting_anything(tmp_path: Path) -> None:
    r = runner.invoke(app, ["compress", "--task", "image", "--version", "v0042", "--store", str(tmp_path)])
    assert r.exit_code == 2 and "no image version 'v0042'" in r.output


def test_a_resumed_run_hands_the_flow_only_its_parameters(tmp_path: Path) -> None:
    """The run file also records what the run learnt (``tuned``); resuming must not pass that to the flow."""
    import inspect

    from flows.cli import RUN_PARAMETERS, _resumable
    from flows.retrain import retrain
    from training.config import load_config
    from training.runs import write_run_file

    assert set(inspect.signature(retrain.fn).parameters) - {"resume"} == set(RUN_PARAMETERS)
    saved = {"task": "text", "data": "t.csv", "store": "s", "config": None, "epochs": 2, "text_column": None}
    saved |= {"label_column": None, "header": True, "allow_label_change": False, "trials": 3, "tuned": True}
    write_run_file(tmp_path, saved, load_config(None))
    params = _resumable(tmp_path)
    assert "tuned" not in params and params["out"] == str(tmp_path) and params["trials"] == 3


def test_schedule_without_its_server_waits_then_says_so_in_one_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from serving.client import free_port

    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    monkeypatch.setenv("PREFECT_API_URL", url)
    monkeypatch.setenv("KILN_SERVER_WAIT", "1.5")
    result = runner.invoke(app, ["schedule", "--list"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith(f"waiting up to 2 s for the Prefect server at {url}")
    assert lines[1].startswith("error: no Prefect server answers at") and "PREFECT_API_URL" in lines[1]
    assert len(lines) == 2


def test_gc_deletes_old_versions_and_old_run_directories(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    from serving.preprocess import TextSpec
    from serving.store import ModelStore

    store = tmp_path / "store"
    spec = TextSpec(labels=TEXT_LABELS, vocabulary=("", "[UNK]", "good"), max_length=4).to_dict()
    for _ in range(4):
        register_onnx(store, "text", onnx_text_model(TEXT_LABELS, 3, 4), spec)
    runs = tmp_path / "runs"
    monkeypatch.setenv("KILN_RUNS", str(runs))
    for name, age_days in (("text-old", 10), ("text-new", 1), ("image-old", 10)):
        (runs / name).mkdir(parents=True)
        (runs / name / "run.json").write_text("{}")
        then = time.time() - age_days * 86400
        os.utime(runs / name, (then, then))
    result = runner.invoke(
        app, ["gc", "--task", "text", "--keep", "2", "--runs-older-than", "7", "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    assert "deleted 2 version(s): v0001, v0002" in result.output
    assert ModelStore(store).versions("text") == ["v0003", "v0004"]
    assert sorted(p.name for p in runs.iterdir()) == ["image-old", "text-new"]
