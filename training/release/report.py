"""report.json: what a run made and decided, built from the stored version's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from serving.store import ModelVersion


def write_report(path: Path, report: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def build_report(version: ModelVersion) -> dict[str, Any]:
    """report.json: the stored manifest with ``model`` {name, version} first. Sections grow per stage."""
    manifest = {k: v for k, v in version.manifest.items() if k != "files"}
    spec = manifest.pop("spec")
    return {
        "task": version.task,
        "model": {"name": version.name, "version": version.version, "path": str(version.path)},
        **manifest,
        "spec": _summarise_spec(spec),
    }


def _summarise_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without the (possibly 20,000-word) vocabulary, which stays in the store."""
    if "vocabulary" not in spec:
        return spec
    return {k: v for k, v in spec.items() if k != "vocabulary"} | {"vocabulary_size": len(spec["vocabulary"])}
