"""The run file: what a `kiln run` was asked to do, saved in its directory so `--resume` can continue it.

>>> write_run_file(Path("run"), {"task": "text", "data": "t.csv"}, cfg)  # doctest: +SKIP
>>> read_run_file(Path("run"))["params"]["task"]  # doctest: +SKIP
'text'
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.config import ConfigError, RunConfig, config_to_dict, load_config

RUN_FILE = "run.json"


def runs_root() -> Path:
    """Where run directories go: $KILN_RUNS, default .kiln/runs."""
    return Path(os.environ.get("KILN_RUNS", Path(".kiln") / "runs"))


def new_run_dir(name: str) -> Path:
    """A fresh run directory: $KILN_RUNS (default .kiln/runs) / NAME-<UTC timestamp>."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return runs_root() / f"{name}-{stamp}"


def old_run_dirs(task: str, days: float, root: Path | None = None) -> list[Path]:
    """Run directories of ``task`` (``kiln run``'s, holding a run file) under ``root`` (default $KILN_RUNS or
    .kiln/runs) last modified more than ``days`` ago, oldest first."""
    root = root or runs_root()
    if not root.is_dir():
        return []
    cutoff = datetime.now(UTC).timestamp() - days * 86400
    runs = [p for p in root.glob(f"{task}-*") if (p / RUN_FILE).is_file() and p.stat().st_mtime < cutoff]
    return sorted(runs, key=lambda p: p.stat().st_mtime)


def write_run_file(run_dir: Path, params: dict[str, Any], cfg: RunConfig) -> Path:
    """Save the run's parameters and its resolved configuration (the config file may change later)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_FILE
    path.write_text(json.dumps({"params": params, "config": config_to_dict(cfg)}, indent=2) + "\n", encoding="utf-8")
    return path


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """The saved parameters and configuration of the run in ``run_dir``."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a kiln run directory (no {RUN_FILE}); give the --out of an earlier run")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is damaged ({exc}); start a new run instead") from None
    return {"params": saved["params"], "config": saved["config"]}


def resumed_config(saved: dict[str, Any]) -> RunConfig:
    return load_config(None, saved["config"])


@dataclass(frozen=True)
class Run:
    """A started run: its one configuration, and whether tuning already chose it (a resumed, tuned run)."""

    config: RunConfig
    tuned: bool = False


def data_fingerprint(data: str | os.PathLike[str]) -> str:
    """A digest of the data a run reads: a file's bytes; a folder's file names, sizes and modification times
    (reading every picture of a large folder would cost more than the check is worth)."""
    path = Path(data)
    h = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    elif path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = item.stat()
            h.update(f"{item.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    else:
        return "missing"
    return h.hexdigest()


def start_run(run_dir: Path, params: dict[str, Any], resume: bool) -> Run:
    """Build the run's configuration once: the saved one when resuming, else defaults + the config file +
    ``params['epochs']``, saved with ``params`` and a fingerprint of the data in the run file so --resume can
    continue it. A resume refuses data that changed since the run started: the vocabulary, the spec and the
    split would no longer be the ones its checkpoints were trained with."""
    if resume:
        saved = read_run_file(run_dir)
        recorded, data = saved["params"].get("data_fingerprint"), saved["params"].get("data")
        now = data_fingerprint(data) if recorded and data else recorded
        if now == "missing":
            raise ConfigError(f"{data}, which the run in {run_dir} trained on, is not there; resume from where it is")
        if now != recorded:
            raise ConfigError(
                f"{data} changed since the run in {run_dir} started; --resume continues training on the data it "
                "started with - start a new run (without --resume) to train on the new data"
            )
        return Run(resumed_config(saved), bool(saved["params"].get("tuned")))
    epochs = params.get("epochs")
    cfg = load_config(params.get("config"), {"train": {"epochs": epochs}} if epochs else None)
    fingerprint = {"data_fingerprint": data_fingerprint(params["data"])} if params.get("data") else {}
    write_run_file(run_dir, params | fingerprint, cfg)
    return Run(cfg)
