"""Scheduled retraining and batch prediction on a Prefect server (``kiln schedule``).

A schedule is a Prefect deployment of the retrain flow (or, with ``kiln schedule --predict-out``, of the predict
flow) with a cron schedule on the server at PREFECT_API_URL. Two ways to run it:

- **served** (default): ``flow.serve`` registers the deployment and keeps this process polling for its runs and
  running them here. One process, no work pool or worker to set up: the right choice on one machine (a VM, a
  systemd unit, a container that holds the data and the store).
- **work pool** (``--pool``): the deployment is registered for a work pool and this process exits; the pool's
  worker runs each retrain wherever the pool says. With deploy/k8s, that is the Kubernetes pool whose worker
  starts each run as a Job from the training image its job template pins; the deployment chooses only the
  namespace (flows.pool_job.job_variables).

Either way a deployment runs at most one retrain at a time (a deployment concurrency limit of 1), and the store's
run lock stops a second retrain of the same task from any other source.

    >>> register_schedule("nightly", "0 3 * * *", {"task": "image", "data": "/data/images"})  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import EntrypointType

from flows.pool_job import NAMESPACE, job_variables
from flows.predict import predict
from flows.retrain import retrain

FLOWS: dict[str, Any] = {"retrain": retrain, "predict": predict}  # what a schedule can run, by flow name


class ScheduleError(ValueError):
    """A schedule cannot be registered or changed; the message says what to fix."""


def check_server() -> str:
    """The Prefect server's API URL; schedules need a server that outlives this process."""
    url = os.environ.get("PREFECT_API_URL", "")
    if not url:
        raise ScheduleError(
            "PREFECT_API_URL is not set: schedules live on a Prefect server that keeps running - start one "
            "(`prefect server start`) and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return url


SERVER_WAIT = 60.0  # seconds `kiln schedule` waits for its Prefect server (KILN_SERVER_WAIT overrides)


def wait_for_server(url: str, notify: Callable[[str], None], timeout: float | None = None) -> None:
    """Return once the Prefect server at ``url`` answers its health check; a server still starting (a service
    manager starting both at once) gets ``timeout`` seconds, announced once through ``notify``."""
    timeout = float(os.environ.get("KILN_SERVER_WAIT", SERVER_WAIT)) if timeout is None else timeout
    deadline, told = time.monotonic() + timeout, False
    while True:
        try:
            if httpx.get(url.rstrip("/") + "/health", timeout=5).status_code == 200:
                return check_credentials(url)
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline:
            raise ScheduleError(
                f"no Prefect server answers at {url} (PREFECT_API_URL) after {timeout:.0f} s: start it "
                "(`prefect server start`) or point PREFECT_API_URL at a running one"
            )
        if not told:
            notify(f"waiting up to {timeout:.0f} s for the Prefect server at {url} (PREFECT_API_URL) ...")
            told = True
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def check_credentials(url: str) -> None:
    """A server that requires authentication (PREFECT_SERVER_API_AUTH_STRING) refuses a client without
    PREFECT_API_AUTH_STRING, or with the wrong one: say so in one line, not in a traceback later."""
    from prefect.settings import PREFECT_API_AUTH_STRING

    auth = PREFECT_API_AUTH_STRING.value()
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    if httpx.get(url.rstrip("/") + "/admin/version", headers=headers, timeout=5).status_code == 401:
        given = "the PREFECT_API_AUTH_STRING given" if auth else "no PREFECT_API_AUTH_STRING"
        raise ScheduleError(
            f"the Prefect server at {url} requires authentication and refused {given}: export "
            "PREFECT_API_AUTH_STRING=user:password (in the cluster: the kiln-prefect-auth Secret, docs/DEPLOY.md)"
        )


def check_cron(cron: str) -> str:
    try:
        CronSchedule(cron=cron)
    except ValueError as exc:
        raise ScheduleError(f"--cron {cron!r} is not a valid cron expression ({exc}); e.g. '0 3 * * *'") from None
    return cron


def register_schedule(
    name: str,
    cron: str,
    parameters: dict[str, Any],
    pool: str | None = None,
    image: str | None = None,
    namespace: str = NAMESPACE,
    flow: str = "retrain",
) -> None:
    """Register ``FLOW/NAME`` (``flow``: retrain or predict) with a cron schedule; without ``pool``, serve its runs
    in this process (blocks). For a pool, the deployment records Kiln's job variables (the namespace) and the
    image; Kiln's own job template runs the image it pins."""
    check_server()
    check_cron(cron)
    what = f"to {parameters['out']}" if flow == "predict" else "model"
    common: dict[str, Any] = {
        "name": name,
        "cron": cron,
        "parameters": parameters,
        "description": f"kiln {flow} of the {parameters['task']} {what} from {parameters['data']}",
        "tags": ["kiln", parameters["task"], flow],
    }
    chosen = FLOWS[flow]
    if pool:
        chosen.deploy(
            work_pool_name=pool,
            image=image or "kiln-training:0.1.0",
            job_variables=job_variables(namespace),
            build=False,
            push=False,
            concurrency_limit=1,
            entrypoint_type=EntrypointType.MODULE_PATH,
            print_next_steps=False,
            **common,
        )
        return
    chosen.serve(global_limit=1, print_starting_message=True, **common)


def _deployment(client: Any, name: str) -> Any:
    for flow in FLOWS:
        try:
            return client.read_deployment_by_name(f"{flow}/{name}")
        except Exception:  # noqa: BLE001, S112 - Prefect raises ObjectNotFound, or an HTTP error for odd names
            continue
    known = ", ".join(d["name"] for d in list_schedules()) or "none"
    raise ScheduleError(f"no schedule named {name!r} on {check_server()} (schedules: {known})")


def list_schedules() -> list[dict[str, Any]]:
    """Every retrain and predict deployment: name, flow, cron, paused, parameters."""
    check_server()
    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        rows = []
        for d in client.read_deployments():
            if flows.get(d.flow_id) not in FLOWS:
                continue
            crons = [getattr(s.schedule, "cron", None) for s in d.schedules]
            rows.append(
                {
                    "name": d.name,
                    "flow": flows[d.flow_id],
                    "cron": ", ".join(c for c in crons if c) or "-",
                    "paused": bool(d.paused),
                    "task": d.parameters.get("task"),
                    "data": d.parameters.get("data"),
                    "pool": d.work_pool_name,
                }
            )
        return rows


def set_paused(name: str, paused: bool) -> None:
    check_server()
    with get_client(sync_client=True) as client:
        deployment = _deployment(client, name)
        (client.pause_deployment if paused else client.resume_deployment)(deployment.id)


def delete_schedule(name: str) -> None:
    check_server()
    with get_client(sync_client=True) as client:
        client.delete_deployment(_deployment(client, name).id)


def run_now(name: str) -> str:
    """Start a run of the schedule now (its served process or pool worker runs it); returns the run's id."""
    check_server()
    with get_client(sync_client=True) as client:
        deployment = _deployment(client, name)
        if deployment.paused:
            raise ScheduleError(f"schedule {name!r} is paused; `kiln schedule --resume {name}` first")
        run = client.create_flow_run_from_deployment(deployment.id)
        return str(run.id)
