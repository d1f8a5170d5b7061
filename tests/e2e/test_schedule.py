"""Scheduled retraining on a real Prefect server (SQLite, loopback): register with `kiln schedule`, check the cron
and the upcoming runs the server's scheduler made, run one now and see a new version land in the store."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.client import free_port
from serving.store import ModelStore
from tests.conftest import TINY_CONFIG, make_texts, write_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _wait(condition, timeout: float, what: str) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextlib.contextmanager
def prefect_server(tmp_path: Path, **settings: str) -> Iterator[str]:
    """A real `prefect server start` on loopback with its own SQLite database (and ``settings``); its API URL."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(tmp_path / "prefect-server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env | settings,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait(lambda: httpx.get(api + "/health", timeout=2).status_code == 200, 180, "the Prefect server")
        yield api
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


@pytest.fixture()
def prefect_api(tmp_path: Path) -> Iterator[str]:
    with prefect_server(tmp_path) as api:
        yield api


def serve_schedule(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """`kiln schedule ARGS` serving its deployment in a process of its own, its output in serve.log."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "schedule", *args],
        stdout=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115 - the process owns it
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def registered(api: httpx.Client, flow: str, name: str) -> dict:
    """The deployment ``flow/name`` once the served process has registered it."""
    return _wait(  # type: ignore[return-value]
        lambda: (r := api.get(f"/deployments/name/{flow}/{name}")).status_code == 200 and r.json(),
        240,
        "the deployment",
    )


def created_run(api: httpx.Client, deployment_id: str) -> dict:
    """A new flow run of the deployment, once the server accepts it: the test server's SQLite database is shared
    with the served process, and under a loaded machine one POST can be answered without a run."""
    return _wait(  # type: ignore[return-value]
        lambda: (r := api.post(f"/deployments/{deployment_id}/create_flow_run", json={})).is_success and r.json(),
        60,
        "the flow run to be created",
    )


def finished_state(api: httpx.Client, run_id: str, what: str) -> str:
    """The final state type of a flow run: COMPLETED, FAILED or CRASHED."""
    return _wait(  # type: ignore[return-value]
        lambda: (
            (s := api.get(f"/flow_runs/{run_id}").json()["state"]["type"]) in ("COMPLETED", "FAILED", "CRASHED") and s
        ),
        300,
        what,
    )


def test_schedule_registers_a_cron_deployment_and_a_run_lands_a_version(tmp_path: Path, prefect_api: str) -> None:
    data = write_csv(tmp_path / "t.csv", make_texts(40))
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    store = tmp_path / "store"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(tmp_path / "client-home")}
    env["KILN_RUNS"] = str(tmp_path / "runs")

    def kiln(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", "schedule", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )

    bad = kiln("--task", "text", "--data", str(data), "--cron", "every night")
    assert bad.returncode == 2 and "not a valid cron expression" in bad.stderr

    served = serve_schedule(
        tmp_path, env, "--task", "text", "--data", str(data), "--cron", "0 3 * * *", "--name", "nightly",
        "--store", str(store), "--config", str(config),
    )  # fmt: skip
    try:
        api = httpx.Client(base_url=prefect_api, timeout=10)
        deployment = registered(api, "retrain", "nightly")
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 3 * * *"]
        # the server's scheduler has created the upcoming runs
        filters = {
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        }
        upcoming = _wait(lambda: api.post("/flow_runs/filter", json=filters).json(), 60, "scheduled runs")
        assert all(run["expected_start_time"][11:16] == "03:00" for run in upcoming)

        listed = kiln("--list")
        assert listed.returncode == 0 and "nightly" in listed.stdout and "0 3 * * *" in listed.stdout
        started = kiln("--run-now", "nightly")
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip().split()[-1]
        state = finished_state(api, run_id, "the retrain run")
        assert state == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
        assert ModelStore(store).production("text") == "v0001"
        assert list((tmp_path / "runs").glob("text-*/report.json"))  # each scheduled run has its own directory

        assert kiln("--pause", "nightly").returncode == 0
        assert api.get("/deployments/name/retrain/nightly").json()["paused"] is True
        assert kiln("--resume", "nightly").returncode == 0
        assert api.get("/deployments/name/retrain/nightly").json()["paused"] is False
        assert kiln("--delete", "nightly").returncode == 0
        assert api.get("/deployments/name/retrain/nightly").status_code == 404
        missing = kiln("--pause", "nightly")
        assert missing.returncode == 2 and "no schedule named 'nightly'" in missing.stderr
    finally:
        served.terminate()
        served.wait(timeout=60)


def test_a_scheduled_prediction_writes_its_file_on_each_run(tmp_path: Path, prefect_api: str, onnx_store: Path) -> None:
    data = tmp_path / "new.csv"
    data.write_text("text\ngood film\nbad\n")
    out = tmp_path / "scores" / "latest.jsonl"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(tmp_path / "client-home")}
    served = serve_schedule(
        tmp_path, env, "--task", "text", "--data", str(data), "--cron", "30 2 * * *", "--predict-out", str(out),
        "--store", str(onnx_store),
    )  # fmt: skip
    try:
        api = httpx.Client(base_url=prefect_api, timeout=10)
        deployment = registered(api, "predict", "predict-text")
        assert deployment["parameters"]["out"] == str(out.resolve())
        listed = subprocess.run(
            [sys.executable, "-m", "flows.cli", "schedule", "--list"], capture_output=True, text=True, env=env
        )
        assert "predict-text" in listed.stdout and "predict" in listed.stdout.split("predict-text")[1]
        run = created_run(api, deployment["id"])
        state = finished_state(api, run["id"], "the prediction run")
        assert state == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
        assert [line.split('"item": ')[1][:8] for line in out.read_text().splitlines()] == ['"line 2"', '"line 3"']
    finally:
        served.terminate()
        served.wait(timeout=60)
