"""The models a server answers with, one per task, kept in step with the store's production pointers.

A watcher thread reads each task's pointer every ``reload_interval`` seconds. When it moves, the new version
is loaded, its served file verified against its recorded hash, and its session warmed with one prediction;
only then is it swapped in (one dict assignment: requests already running keep the Classifier they hold).
A version that fails leaves the current one serving, is logged and counted, and is tried again with backoff
(reload_interval doubling up to MAX_BACKOFF seconds): a file still being copied or a full disk heals without
a restart. While the served version differs from the pointer, kiln_model_stale{task} is 1 and /readyz's body says
since when and why. At start-up, a production version that fails verification is reported loudly and the
newest earlier version in the pointer's history that loads is served instead.

    >>> live = LiveModels(ModelStore(".kiln/store"), Settings())  # doctest: +SKIP
    >>> live.refresh(); live.get("image")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from serving import metrics
from serving.drift import DriftCounts, same_buckets
from serving.preprocess import ImageSpec
from serving.runtime import Classifier
from serving.settings import Settings
from serving.store import TASKS, ModelStore, ModelVersion

log = logging.getLogger("serving")


MAX_BACKOFF = 300.0  # seconds between retries of a version that keeps failing to load


@dataclass
class Pending:
    """A production pointer the server does not serve yet: since when, how often its load failed, why, and
    when (monotonic clock) it is tried next."""

    pointer: str
    since: float  # Unix time
    failures: int = 0
    error: str = ""
    next_try: float = 0.0


class LiveModels:
    def __init__(self, store: ModelStore, settings: Settings):
        self.store = store
        self.settings = settings
        self._models: dict[str, Classifier] = {}
        self._loaded: dict[str, str] = {}  # the pointer value each task last loaded
        self._pending: dict[str, Pending] = {}  # tasks whose pointer is not what they serve
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, task: str) -> Classifier | None:
        return self._models.get(task)

    def ready(self) -> tuple[bool, str]:
        """Ready when every task that must be served (KILN_TASKS, else every task with a production pointer)
        has a model loaded; the message says what is missing."""
        required = self.settings.required_tasks() or [t for t in TASKS if self.store.production(t)]
        missing = [t for t in required if t not in self._models]
        return (not missing, f"waiting for {', '.join(missing)}" if missing else "ready")

    def status(self) -> dict[str, Any]:
        """Per task: the version served, the production pointer and, while they differ, since when and the last
        load error (the body of /readyz)."""
        out: dict[str, Any] = {}
        for task in TASKS:
            model, pending = self._models.get(task), self._pending.get(task)
            if model is None and pending is None:
                continue
            entry: dict[str, Any] = {"serving": model.info["version"] if model else None}
            if pending is not None:
                entry |= {
                    "production": pending.pointer,
                    "stale_since": datetime.fromtimestamp(pending.since, UTC).isoformat(timespec="seconds"),
                    "failed_loads": pending.failures,
                    "error": pending.error,
                }
            else:
                entry["production"] = self._loaded.get(task)
            out[task] = entry
        return out

    def _load(self, model: ModelVersion) -> Classifier:
        self.store.verify_for_serving(model)
        classifier = Classifier.from_version(
            model, device=self.settings.device, threads=self.settings.ort_threads, spinning=self.settings.ort_spinning
        )
        classifier.info["variant"] = model.manifest["served_variant"]
        classifier.min_confidence = self.settings.abstain_below(model.task)
        baseline = self.store.drift_baseline(model)
        if baseline is not None and not same_buckets(baseline):
            log.warning("%s %s: drift.json uses other buckets than this Kiln; no drift PSI", model.task, model.version)
            baseline = None
        classifier.drift = DriftCounts(model.task, baseline)
        _warm(classifier)
        return classifier

    def _swap(self, task: str, classifier: Classifier) -> None:
        old = self._models.get(task)
        self._models[task] = classifier
        if old is not None:  # set to 0, not removed: removal does not reach multiprocess metric files
            metrics.MODEL_INFO.labels(task=task, version=old.info["version"], variant=old.info["variant"]).set(0)
            if old.drift is not None and old.info["version"] != classifier.info["version"]:
                for signal in old.drift.counts:  # a version no longer served alerts no more
                    metrics.DRIFT_PSI.labels(task=task, version=old.info["version"], signal=signal).set(0)
        metrics.MODEL_INFO.labels(
            task=task, version=classifier.info["version"], variant=classifier.info["variant"]
        ).set(1)

    def refresh(self) -> None:
        """Load what moved since the last call (every task at the first)."""
        for task in TASKS:
            try:
                pointer = self.store.production(task)
            except Exception as exc:  # noqa: BLE001 - a pointer being rewritten or unreadable: next tick
                log.warning("cannot read the %s production pointer: %s", task, exc)
                continue
            if pointer is None or self._loaded.get(task) == pointer:
                self._settled(task)
                continue
            pending = self._pending.get(task)
            if pending is None or pending.pointer != pointer:  # a new pointer: try at once
                pending = self._pending[task] = Pending(pointer, since=time.time())
                metrics.STALE.labels(task=task).set(1)
                metrics.STALE_SINCE.labels(task=task).set(pending.since)
            if time.monotonic() < pending.next_try:
                continue
            if self._load_task(task, pointer):
                self._loaded[task] = pointer
                self._settled(task)
            else:
                pending.failures += 1
                backoff = min(MAX_BACKOFF, self.settings.reload_interval * 2**pending.failures)
                pending.next_try = time.monotonic() + backoff
                log.error("%s: retrying %s in %.0f s (failed %d times)", task, pointer, backoff, pending.failures)

    def _settled(self, task: str) -> None:
        if self._pending.pop(task, None) is not None:
            metrics.STALE.labels(task=task).set(0)
            metrics.STALE_SINCE.labels(task=task).set(0)

    def _load_task(self, task: str, pointer: str) -> bool:
        """Serve ``pointer`` (True), or, with nothing served yet, the newest earlier version that loads; False
        while the pointer's own version does not load (it is retried)."""
        first = task not in self._models
        candidates = [pointer]
        if first:  # nothing serving yet: fall back through the pointer's history rather than serve nothing
            candidates += [v for v in reversed(self.store.history(task)) if v != pointer]
        for version in candidates:
            try:
                classifier = self._load(self.store.get(task, version))
            except Exception as exc:  # noqa: BLE001 - a bad version must never take the server down
                metrics.RELOADS.labels(task=task, result="failure").inc()
                log.error("cannot serve %s %s: %s", task, version, exc)
                if version == pointer:
                    self._pending[task].error = f"{type(exc).__name__}: {exc}"[:500]
                continue
            self._swap(task, classifier)
            metrics.RELOADS.labels(task=task, result="success").inc()
            if version != pointer:
                log.error(
                    "PRODUCTION %s %s FAILED TO LOAD; serving the earlier %s %s instead - fix the store or "
                    "`kiln rollback --task %s`",
                    task,
                    pointer,
                    task,
                    version,
                    task,
                )
            else:
                log.info("serving %s %s (%s)", task, version, classifier.info["variant"])
            return version == pointer
        if not first:
            log.error("%s stays on %s", task, self._models[task].info["version"])
        return False

    def start(self) -> None:
        """Load now, then watch the pointers in a daemon thread."""
        self.refresh()
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="kiln-model-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.reload_interval):
            self.refresh()
            try:
                self.publish_drift()
            except Exception:  # a drift summary must never stop this thread from following production
                log.exception("publishing the drift PSI failed")

    def publish_drift(self) -> None:
        """kiln_drift_psi per task and signal, for each served version with enough items seen."""
        for task, classifier in list(self._models.items()):
            if classifier.drift is None:
                continue
            for row in classifier.drift.compare():
                if row["psi"] is not None:
                    version = classifier.info["version"]
                    metrics.DRIFT_PSI.labels(task=task, version=version, signal=row["signal"]).set(row["psi"])


def _warm(classifier: Classifier) -> None:
    """One prediction, so the first request does not pay for ORT's lazy initialisation."""
    spec = classifier.spec
    if isinstance(spec, ImageSpec):
        batch = np.zeros((1, spec.height, spec.width, spec.channels), dtype=np.float32)
    else:
        batch = classifier.prepare_texts(["warm up"])
    classifier.predict(batch)


def describe(classifier: Classifier) -> dict[str, Any]:
    """The ``model`` field of a response: which version (and variant) answered."""
    return dict(classifier.info)
