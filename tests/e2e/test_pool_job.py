"""The cluster path on a real Prefect server that requires authentication: `kiln schedule --pool` registers a
deployment for Kiln's Kubernetes work pool (created with the job template from deploy/), and the Job the worker
would submit for a run, rendered with prefect-kubernetes' own code, is Kiln's whatever the run asks for."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.pool_job import render_job, worker_environment
from tests.e2e.test_schedule import prefect_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RETRAINING = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "retraining"
TEMPLATE = RETRAINING / "work-pool-job-template.json"


def _server_policy_components() -> list[str]:
    """The pod components the Prefect server's NetworkPolicy lets in."""
    docs = yaml.safe_load_all((RETRAINING / "prefect-server.yaml").read_text())
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    (expression,) = peer["podSelector"]["matchExpressions"]
    return expression["values"]


async def _render(api: str, auth: str, deployment_name: str, hostile: dict) -> tuple[dict, list[str], dict, dict]:
    """The deployment's job variables; the server's answer to each run that asks for one ``hostile`` job
    variable; the Job for a plain run, and the Job the template makes if the hostile variables reached it anyway."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    refusals = []
    with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"retrain/{deployment_name}")
            for key, value in hostile.items():
                with pytest.raises(PrefectHTTPStatusError) as refused:
                    await client.create_flow_run_from_deployment(deployment.id, job_variables={key: value})
                refusals.append(f"{refused.value.response.status_code} {refused.value.response.text}")
            run = await client.create_flow_run_from_deployment(deployment.id)
            flow = await client.read_flow(deployment.flow_id)
            pool = await client.read_work_pool(deployment.work_pool_name)
    worker_env = worker_environment((RETRAINING / "prefect-worker.yaml").read_text())
    variables = {**deployment.job_variables, **run.job_variables}
    job = await render_job(pool.base_job_template, variables, run, worker_env, deployment, flow)
    smuggled = {k: v for k, v in hostile.items() if k != "image"}
    bypass = await render_job(pool.base_job_template, variables | smuggled, run, worker_env, deployment, flow)
    return deployment.job_variables, refusals, job, bypass


def test_pool_schedule_renders_kiln_s_locked_job_on_an_authenticated_server(tmp_path: Path) -> None:
    auth = f"kiln:{secrets.token_hex(12)}"
    with prefect_server(tmp_path, PREFECT_SERVER_API_AUTH_STRING=auth) as api:
        env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "client-home")}

        def run(*cmd: str, auth_string: str | None = auth) -> subprocess.CompletedProcess[str]:
            run_env = {k: v for k, v in env.items() if k != "PREFECT_API_AUTH_STRING"}
            run_env |= {"PREFECT_API_AUTH_STRING": auth_string} if auth_string else {}
            return subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=300)

        kiln = [sys.executable, "-m", "flows.cli", "schedule"]
        for wrong in (None, "kiln:guessed"):
            refused = run(*kiln, "--list", auth_string=wrong)
            assert refused.returncode == 2, refused.stderr
            assert "requires authentication" in refused.stderr and "PREFECT_API_AUTH_STRING" in refused.stderr
            assert "Traceback" not in refused.stderr

        # The worker's init container creates the pool from the committed template; the server validates it.
        created = run(sys.executable, "-m", "prefect", "work-pool", "create", "kiln-k8s", "--type", "kubernetes",
                      "--base-job-template", str(TEMPLATE), "--overwrite")  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr
        # Paths are the Job's (/data is not on this machine): nothing is checked or resolved locally.
        scheduled = run(*kiln, "--task", "image", "--data", "/data/images", "--cron", "0 3 * * *",
                        "--name", "nightly-images", "--pool", "kiln-k8s")  # fmt: skip
        assert scheduled.returncode == 0, scheduled.stdout + scheduled.stderr

        hostile = {
            "image": "attacker/miner:latest",
            "command": "sh -c 'cat /models/*'",
            "env": {"LD_PRELOAD": "/data/evil.so"},
            "service_account_name": "cluster-admin",
            "annotations": {"container.apparmor.security.beta.kubernetes.io/prefect-job": "unconfined"},
        }
        recorded, refusals, job, bypass = asyncio.run(_render(api, auth, "nightly-images", hostile))

    assert recorded["namespace"] == "kiln"
    # The server refuses a run that asks for another image or any variable the template does not offer ...
    assert len(refusals) == len(hostile) and all(r.startswith("422") for r in refusals), refusals
    # ... and had one got through, the template has no place for it.
    assert json.dumps(bypass["spec"]["template"]["spec"]) == json.dumps(job["spec"]["template"]["spec"])
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "kiln"
    # Kubernetes reads completions and parallelism on the Job, not the Pod.
    assert job["spec"]["completions"] == 1 and job["spec"]["parallelism"] == 1
    pod = job["spec"]["template"]["spec"]
    assert "completions" not in pod and "parallelism" not in pod
    (container,) = pod["containers"]
    assert [container["image"]] == json.loads(TEMPLATE.read_text())["variables"]["properties"]["image"]["enum"]
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert "serviceAccountName" not in pod and pod["automountServiceAccountToken"] is False
    assert "apparmor" not in json.dumps(job)
    env = {e["name"]: e for e in container["env"]}
    assert "LD_PRELOAD" not in env and env["KILN_STORE"]["value"] == "/models"
    assert env["PREFECT_API_URL"]["value"] == "http://kiln-prefect-server:4200/api"
    # The API credentials come from the Secret by reference; the value is nowhere in the Job.
    assert env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"] == {
        "name": "kiln-prefect-auth",
        "key": "auth-string",
    }
    assert auth not in json.dumps(job) and "<from" not in json.dumps(job)
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    assert claims["model-store"] == "kiln-model-store" and claims["training-data"] == "kiln-training-data"
    assert claims["predictions"] == "kiln-predictions"  # where scheduled predictions write
    # The retrain pods are what the Prefect server's NetworkPolicy lets in, besides the worker.
    component = job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    assert component == "retrain"
    assert sorted(_server_policy_components()) == ["dask-worker", "prefect-worker", "retrain"]
