"""The model store: immutable versions per task and an atomically replaced production pointer.

Layout::

    STORE/<task>/versions/v0001/     manifest.json, spec.json, drift.json, variants/<served>.onnx, keras/
    STORE/<task>/production.json     {"version": "v0002", "history": ["v0001", "v0002"]}
    STORE/<task>/digests/v0001.sha256  the sha256 of that version's manifest.json, written at registration

Integrity: the manifest records the sha256 of every file of its version, and the digest file records the
manifest's own. A server verifies the manifest, spec.json (labels, vocabulary, preprocessing) and the served ONNX
file before it loads a version; version names must match ``v`` + digits, and every file a manifest names must
resolve inside its version directory.

A version keeps the ONNX variant it serves and the trained Keras model, not every variant compression made: the
manifest keeps each one's measurements (``"stored": false``), the run directory (``--out``) holds its file while
it is kept, and `kiln compress --out DIR` makes them all again from the Keras model in DIR (registering a new
version, gated like any run). The other variants were most of a version's size (SUBJ: 88 of 117 MiB).

A version directory is filled under a staging name and renamed into place, so readers never see a
half-written version; the pointer is written to a temporary file, fsynced and renamed over the old
one, so a crash at any moment leaves the previous production version serving.

    >>> store = ModelStore("/tmp/kiln-doc-store")
    >>> store.production("image") is None or isinstance(store.production("image"), str)
    True
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.drift import BASELINE

log = logging.getLogger(__name__)

TASKS = ("image", "text")
POINTER = "production.json"
SPEC = "spec.json"
DIGESTS = "digests"
VERSION_NAME = re.compile(r"v\d{4,}")


class StoreError(RuntimeError):
    """The store is missing something or a request against it cannot be met; the message says what."""


@dataclass(frozen=True)
class ModelVersion:
    """One stored version: where it lives and what its manifest says."""

    task: str
    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", f"kiln-{self.task}"))

    @property
    def served_file(self) -> str:
        """The served variant's file, relative to the version (what promotion and loading verify)."""
        return str(self.manifest["variants"][self.manifest["served_variant"]]["file"])

    def variant_path(self, variant: str | None = None) -> Path:
        """Path of an ONNX variant (the served one by default); StoreError for one this version does not keep."""
        served = self.manifest["served_variant"]
        name = variant or served
        entry = self.manifest["variants"].get(name)
        if entry is None:
            known = ", ".join(self.manifest["variants"])
            raise StoreError(f"{self.task} {self.version} has no variant {name!r}; its variants: {known}")
        if entry.get("stored") is False:
            raise StoreError(
                f"{self.task} {self.version} does not keep variant {name!r}: a version stores the variant it serves "
                f"({served}) and the Keras model; the run that made it holds the file, and `kiln compress --task "
                f"{self.task} --version {self.version} --out DIR` makes every variant again in DIR/artifacts/variants "
                "(and registers a new version, gated like any run)"
            )
        return self.file(entry["file"])

    def file(self, relpath: str) -> Path:
        """A file of this version; a name that leads outside the version directory is refused."""
        path = (self.path / relpath).resolve()
        if not path.is_relative_to(self.path.resolve()):
            raise StoreError(f"{self.task} {self.version}: the manifest names {relpath!r}, outside the version")
        return path

    def spec(self) -> dict[str, Any]:
        """The preprocessing spec (labels, vocabulary, ...): spec.json, or the manifest's copy in a version stored
        before spec.json was hashed on its own."""
        path = self.path / SPEC
        if path.is_file():
            return dict(json.loads(path.read_text(encoding="utf-8")))
        return dict(self.manifest["spec"])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see either the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unserved_files(manifest: dict[str, Any]) -> set[str]:
    """The variant files (relative to the artefacts) of every variant but the served one; none without a served
    variant, and never the served variant's own file."""
    variants = manifest.get("variants", {})
    served = variants.get(manifest.get("served_variant"), {}).get("file")
    if served is None:
        return set()
    return {v["file"] for v in variants.values() if "file" in v} - {served}


def _leaving_out(root: Path, relpaths: set[str]) -> Any:
    """A shutil.copytree ``ignore`` that skips the files at ``relpaths`` under ``root``."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory).relative_to(root)
        return {name for name in names if str(here / name) in relpaths}

    return ignore


def _mark_unstored(manifest: dict[str, Any], left_out: set[str]) -> dict[str, Any]:
    """The manifest with ``"stored": false`` on each variant whose file is not kept (measurements stay)."""
    if not left_out:
        return manifest
    variants = {
        name: v | {"stored": False} if v.get("file") in left_out else v for name, v in manifest["variants"].items()
    }
    return manifest | {"variants": variants}


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (the data, then the names that point at it)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    for directory in sorted({p.parent for p in root.rglob("*")} | {root}, reverse=True):
        _fsync_dir(directory)


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise StoreError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")
    return task


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_NAME.fullmatch(version):
        raise StoreError(f"{version!r} is not a version name (v0001, v0002, ...); `kiln models` lists them")
    return version


class ModelStore:
    """Reads and writes a store directory. Safe for one writer per task at a time (file lock)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def _task_dir(self, task: str) -> Path:
        return self.root / _check_task(task)

    def versions(self, task: str) -> list[str]:
        """Version names of a task, oldest first."""
        vdir = self._task_dir(task) / "versions"
        if not vdir.is_dir():
            return []
        names = [p.name for p in vdir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        stray = [n for n in names if not VERSION_NAME.fullmatch(n)]
        if stray:
            log.warning("ignoring %s in %s: not version directories (v0001, v0002, ...)", ", ".join(stray), vdir)
        return sorted((n for n in names if VERSION_NAME.fullmatch(n)), key=lambda n: int(n[1:]))

    def get(self, task: str, version: str) -> ModelVersion:
        path = self._task_dir(task) / "versions" / _check_version(version)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            known = ", ".join(self.versions(task)) or "none"
            raise StoreError(f"no {task} version {version!r} in store {self.root} (versions: {known})")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        return ModelVersion(task=task, version=version, path=path, manifest=manifest)

    def production(self, task: str) -> str | None:
        """The production version name of a task, or None when nothing was promoted yet."""
        pointer = self._task_dir(task) / POINTER
        if not pointer.is_file():
            return None
        return str(json.loads(pointer.read_text(encoding="utf-8"))["version"])

    def production_version(self, task: str) -> ModelVersion | None:
        """The production ModelVersion, or None. A reload loop calls this to see what to serve."""
        version = self.production(task)
        return None if version is None else self.get(task, version)

    def history(self, task: str) -> list[str]:
        pointer = self._task_dir(task) / POINTER
        if not pointer.is_file():
            return []
        return list(json.loads(pointer.read_text(encoding="utf-8")).get("history", []))

    @contextlib.contextmanager
    def _lock(self, task: str) -> Iterator[None]:
        tdir = self._task_dir(task)
        tdir.mkdir(parents=True, exist_ok=True)
        with open(tdir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive_run(self, task: str, what: str = "retrain") -> Iterator[None]:
        """Hold the task's run lock for a whole run: at most one retrain (or recompression) per task and store at
        a time. A second run stops at once with a StoreError naming the one that holds it."""
        tdir = self._task_dir(task)
        tdir.mkdir(parents=True, exist_ok=True)
        with open(tdir / ".run.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise StoreError(
                    f"another run is already training or compressing the {task} model in store {self.root} "
                    f"({holder}); this {what} stops - wait for that one to finish"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(
                f"{what} pid {os.getpid()} on {socket.gethostname()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
            )
            fh.flush()
            try:
                yield
            finally:
                fh.truncate(0)
                fcntl.flock(fh, fcntl.LOCK_UN)

    def register(
        self,
        task: str,
        files: Path,
        manifest: dict[str, Any],
        promote: bool = False,
        expected_production: str | None = None,
        registration: str | None = None,
    ) -> ModelVersion:
        """Copy a directory of artefacts in as a new immutable version and return it.

        ``manifest`` gets ``task``, ``version``, ``created_at`` and the sha256 of every file added. Every file
        is fsynced before the version is renamed into place, so a crash never leaves a half-written version.
        With ``promote``, the version becomes production in the same locked step - only if production is
        still ``expected_production`` (the version the gate compared against; None: there was none).
        Otherwise another run promoted meanwhile: the version is registered, not promoted, and its
        manifest (``promoted``, ``gate``) says why.

        ``registration``: an id the caller keeps across retries of the same registration. A retry after a
        failure at any point finds the version the earlier attempt stored under that id and finishes its
        promotion instead of storing a second one: a registration is idempotent.
        """
        with self._lock(task):
            vdir = self._task_dir(task) / "versions"
            vdir.mkdir(parents=True, exist_ok=True)
            existing = self.versions(task)
            earlier = self._registered_as(task, registration, existing) if registration else None
            if earlier is not None:
                return self._finish(earlier, promote, expected_production)
            if registration:
                manifest = manifest | {"registration": registration}
            version = f"v{int(existing[-1][1:]) + 1:04d}" if existing else "v0001"
            staging = vdir / f".staging-{version}-{uuid.uuid4().hex[:8]}"
            left_out = _unserved_files(manifest)
            shutil.copytree(files, staging, ignore=_leaving_out(files, left_out))
            manifest = _mark_unstored(manifest, left_out)
            if "spec" in manifest and not (staging / SPEC).is_file():  # labels and vocabulary, hashed on their own
                (staging / SPEC).write_text(json.dumps(manifest["spec"], indent=2), encoding="utf-8")
            hashes = {str(p.relative_to(staging)): sha256_file(p) for p in sorted(staging.rglob("*")) if p.is_file()}
            current = self.production(task)
            if promote and current != expected_production:
                promote = False
                manifest = manifest | {
                    "promoted": False,
                    "gate": f"{manifest.get('gate', '')} — but not promoted: production moved from "
                    f"{expected_production or 'none'} to {current} while this run was gated; "
                    f"`kiln promote --task {task} --version {version}` if it should serve",
                }
            full = {
                **manifest,
                "task": task,
                "version": version,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": hashes,
            }
            write_json_atomic(staging / "manifest.json", full)
            _fsync_tree(staging)
            self._record_digest(task, version, staging / "manifest.json")
            os.rename(staging, vdir / version)
            _fsync_dir(vdir)
            if promote:
                self._set_production(task, version)
        return self.get(task, version)

    def _digest_path(self, task: str, version: str) -> Path:
        """Where the sha256 of a version's manifest.json is kept (outside the version it vouches for)."""
        return self._task_dir(task) / DIGESTS / f"{version}.sha256"

    def _record_digest(self, task: str, version: str, manifest: Path) -> None:
        path = self._digest_path(task, version)
        path.parent.mkdir(exist_ok=True)
        path.write_text(sha256_file(manifest) + "\n")

    def _registered_as(self, task: str, registration: str, versions: list[str]) -> ModelVersion | None:
        """The version an earlier attempt of ``registration`` stored, if any (the newest are looked at first)."""
        for name in reversed(versions):
            model = self.get(task, name)
            if model.manifest.get("registration") == registration:
                return model
        return None

    def _finish(self, model: ModelVersion, promote: bool, expected_production: str | None) -> ModelVersion:
        """A retried registration: its version is stored; move the pointer if the first attempt meant to and did
        not get there. Under the task lock."""
        task, current = model.task, self.production(model.task)
        log.warning("%s %s was already stored by an earlier attempt of this registration", task, model.version)
        if not promote or not model.manifest.get("promoted") or current == model.version:
            return model
        if current == expected_production:
            self._set_production(task, model.version)
            return model
        # Another run promoted between the attempts: this version never served; its manifest says so.
        manifest = model.manifest | {
            "promoted": False,
            "gate": f"{model.manifest.get('gate', '')} — but not promoted: production moved from "
            f"{expected_production or 'none'} to {current} while this run was registered",
        }
        write_json_atomic(model.path / "manifest.json", manifest)
        self._record_digest(task, model.version, model.path / "manifest.json")
        return self.get(task, model.version)

    def promote(self, task: str, version: str) -> None:
        """Make ``version`` production (atomic pointer swap) after checking it exists and its served file
        matches its recorded hash; the old one stays in history for rollback."""
        model = self.get(task, version)  # must exist
        self.verify(model, model.served_file)
        with self._lock(task):
            self._set_production(task, version)

    def _set_production(self, task: str, version: str) -> None:
        history = [v for v in self.history(task) if v != version] + [version]
        write_json_atomic(self._task_dir(task) / POINTER, self._pointer(version, history))

    def rollback(self, task: str) -> tuple[str, str]:
        """Restore the previous production version; returns (replaced, restored)."""
        with self._lock(task):
            history = self.history(task)
            if len(history) < 2:
                current = history[-1] if history else "none"
                raise StoreError(
                    f"no earlier production {task} version to roll back to (production: {current}); "
                    "`kiln models` lists the versions"
                )
            replaced, restored = history[-1], history[-2]
            write_json_atomic(self._task_dir(task) / POINTER, self._pointer(restored, history[:-1]))
        return replaced, restored

    def retained(self, task: str, keep: int) -> set[str]:
        """The versions retention keeps: production and the last ``keep`` entries of its rollback history, the
        ``keep`` newest versions (a candidate waiting for `kiln promote`), and every version a kept one was
        derived from (``kiln compress`` records it)."""
        if keep < 1:
            raise StoreError(f"--keep {keep}: keep at least 1 version (the production one)")
        names = self.versions(task)
        kept = set(self.history(task)[-keep:]) | set(names[-keep:])
        production = self.production(task)
        kept |= {production} if production else set()
        todo = list(kept)
        while todo:  # derivation chains
            name = todo.pop()
            if name not in names:
                continue
            parent = self.get(task, name).manifest.get("derived_from", {}).get("version")
            if parent and parent not in kept:
                kept.add(parent)
                todo.append(parent)
        return kept & set(names)

    def collect_garbage(self, task: str, keep: int) -> list[str]:
        """Delete the versions ``retained`` does not keep; returns their names, oldest first. Each one leaves by
        a rename out of ``versions/`` first, so no reader ever sees a half-deleted version."""
        removed = []
        with self._lock(task):
            kept = self.retained(task, keep)
            vdir = self._task_dir(task) / "versions"
            for name in self.versions(task):
                if name in kept:
                    continue
                doomed = vdir / f".deleting-{name}-{uuid.uuid4().hex[:8]}"
                os.rename(vdir / name, doomed)
                shutil.rmtree(doomed)
                self._digest_path(task, name).unlink(missing_ok=True)
                removed.append(name)
        return removed

    @staticmethod
    def _pointer(version: str, history: list[str]) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return {"version": version, "history": history, "updated_at": now}

    def verify_for_serving(self, model: ModelVersion) -> None:
        """Everything a server reads from a version, checked against what was recorded at registration: the
        manifest (its digest file), spec.json and the served ONNX file (drift.json is verified as it is read, by
        drift_baseline). Raises StoreError saying which."""
        digest = self._digest_path(model.task, model.version)
        if digest.is_file():
            if sha256_file(model.path / "manifest.json") != digest.read_text().strip():
                raise StoreError(
                    f"{model.task} {model.version}: manifest.json does not match the digest recorded at "
                    "registration; the store was modified after registration — re-run training or roll back"
                )
        else:
            log.warning(
                "%s %s has no manifest digest (stored by an older Kiln): not verified", model.task, model.version
            )
        if (model.path / SPEC).is_file() or SPEC in model.manifest.get("files", {}):
            self.verify(model, SPEC)
        self.verify(model, model.served_file)

    def drift_baseline(self, model: ModelVersion) -> dict[str, Any] | None:
        """The version's training summary of the drift signals (serving.drift), verified; None in a version
        stored without one."""
        if BASELINE not in model.manifest.get("files", {}):
            return None
        self.verify(model, BASELINE)
        return dict(json.loads(model.file(BASELINE).read_text(encoding="utf-8")))

    def verify(self, model: ModelVersion, relpath: str) -> None:
        """Check a file of a version against the hash recorded when it was stored."""
        expected = model.manifest.get("files", {}).get(relpath)
        path = model.file(relpath)
        if not path.is_file():
            raise StoreError(f"{model.task} {model.version}: {relpath} is missing; re-run training or roll back")
        actual = sha256_file(path)
        if expected != actual:
            raise StoreError(
                f"{model.task} {model.version}: {relpath} does not match its recorded sha256; "
                "the store was modified after registration — re-run training or roll back"
            )
