"""The Kubernetes Job that the `kiln-k8s` work pool's worker creates for a scheduled retrain, rendered offline with
prefect-kubernetes' own code, so `make k8s-check` validates exactly what the worker would submit.

Kiln's job template (deploy/k8s/retraining/work-pool-job-template.json) pins the image, the command, the
environment, the service account, labels and annotations; a deployment chooses only the namespace, the Job's name,
its resources and timeouts (``job_variables``). The worker's own Prefect settings reach the Job's environment; it
is told which Secret holds the API's credentials, so the Job reads them by reference, never as plain text.

    $ python -m flows.pool_job --template deploy/k8s/retraining/work-pool-job-template.json \\
        --worker deploy/k8s/retraining/prefect-worker.yaml --out pool-job.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "kiln"
POOL_STORE = "/models"  # where the job template mounts the model store (a pool run's default --store)
WORKER = "kiln-prefect-worker"  # the worker's Deployment and container in deploy/k8s/retraining/prefect-worker.yaml
# How the worker is told which Secret holds the API's `user:password` (prefect-kubernetes' settings).
SECRET_NAME = "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME"
SECRET_KEY = "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY"


def job_variables(namespace: str = NAMESPACE) -> dict[str, Any]:
    """What `kiln schedule --pool` records on the deployment: everything else is the template's."""
    return {"namespace": namespace}


def worker_environment(manifests: str) -> dict[str, str]:
    """The worker container's environment from its manifests; a value read from a Secret is a placeholder."""
    for doc in yaml.safe_load_all(manifests):
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == WORKER:
            (container,) = [c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == "worker"]
            return {e["name"]: str(e.get("value", f"<from {e.get('valueFrom')}>")) for e in container.get("env", [])}
    raise ValueError(f"no Deployment {WORKER} in the worker manifests")


@contextlib.contextmanager
def _process_environment(env: dict[str, str]) -> Iterator[None]:
    """This process's Prefect variables replaced by ``env`` for a moment (the worker's settings reach the Job)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(env)
    try:
        yield
    finally:
        for k in env:
            os.environ.pop(k, None)
        os.environ.update(saved)


async def render_job(
    base_job_template: dict[str, Any],
    variables: dict[str, Any],
    flow_run: Any,
    worker_env: dict[str, str],
    deployment: Any = None,
    flow: Any = None,
) -> dict[str, Any]:
    """The Job manifest a worker with ``worker_env`` submits for ``flow_run``: prefect-kubernetes' configuration
    and preparation, then its replacement of the API credentials by a Secret reference, as the API server
    stores it."""
    from prefect.context import SettingsContext, get_settings_context
    from prefect.settings import Settings
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    with _process_environment(worker_env):
        settings = Settings()
    with SettingsContext(profile=get_settings_context().profile, settings=settings):
        config = await KubernetesWorkerJobConfiguration.from_template_and_values(base_job_template, variables)
        config.prepare_for_flow_run(flow_run=flow_run, deployment=deployment, flow=flow)
    if worker_env.get(SECRET_NAME) and worker_env.get(SECRET_KEY):
        worker = KubernetesWorker(work_pool_name="kiln-k8s")
        await worker._replace_env_variable_with_secret(
            "PREFECT_API_AUTH_STRING", config, worker_env[SECRET_NAME], worker_env[SECRET_KEY]
        )
    return as_stored(config.job_manifest)


def as_stored(manifest: dict[str, Any]) -> dict[str, Any]:
    """prefect-kubernetes refuses a template without ``parallelism`` and ``completions`` in the Pod spec, where
    Kubernetes does not read them (the API server drops unknown fields); the Job spec carries the real ones."""
    stored = json.loads(json.dumps(manifest))
    for field in ("parallelism", "completions"):
        stored["spec"]["template"]["spec"].pop(field, None)
    return stored


def example_flow_run(variables: dict[str, Any]) -> Any:
    """A scheduled retrain's flow run, as the server would hand it to the worker."""
    from prefect.client.schemas.objects import Flow, FlowRun

    flow = Flow(name="retrain", labels={})
    run = FlowRun(flow_id=flow.id, name="nightly-images", deployment_id=uuid.uuid4(), job_variables=variables)
    return run, flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, required=True, help="The work pool's base job template (JSON).")
    parser.add_argument("--worker", type=Path, required=True, help="The worker's manifests (its environment).")
    parser.add_argument("--out", type=Path, required=True, help="Where to write the Job manifest (YAML).")
    parser.add_argument("--namespace", default=NAMESPACE)
    args = parser.parse_args()
    variables = job_variables(args.namespace)
    run, flow = example_flow_run(variables)
    worker_env = worker_environment(args.worker.read_text())
    job = asyncio.run(render_job(json.loads(args.template.read_text()), variables, run, worker_env, flow=flow))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # kubectl would fill in the name from generateName; the offline validators need one.
    job["metadata"]["name"] = job["metadata"].pop("generateName").rstrip("-")
    args.out.write_text(yaml.safe_dump(job, sort_keys=False))
    sys.stdout.write(f"wrote {args.out}: the Job for a scheduled retrain in namespace {args.namespace}\n")


if __name__ == "__main__":
    main()
