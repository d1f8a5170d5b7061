"""Model store: immutable versions, atomic production pointer, rollback, integrity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.store import ModelStore, StoreError


def _artefacts(tmp_path: Path, content: bytes = b"onnx") -> Path:
    d = tmp_path / f"art-{content.hex()}"
    (d / "variants").mkdir(parents=True)
    (d / "variants" / "fp32.onnx").write_bytes(content)
    return d


MANIFEST = {"name": "kiln-text", "served_variant": "fp32", "variants": {"fp32": {"file": "variants/fp32.onnx"}}}


def test_versions_are_numbered_hashed_and_immutable_copies(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    art = _artefacts(tmp_path)
    v1 = store.register("text", art, MANIFEST)
    v2 = store.register("text", _artefacts(tmp_path, b"other"), MANIFEST)
    assert (v1.version, v2.version) == ("v0001", "v0002")
    assert store.versions("text") == ["v0001", "v0002"]
    import hashlib

    assert v1.manifest["files"]["variants/fp32.onnx"] == hashlib.sha256(b"onnx").hexdigest()
    assert v1.manifest["version"] == "v0001" and v1.manifest["task"] == "text"
    (art / "variants" / "fp32.onnx").write_bytes(b"changed after registration")
    assert v1.variant_path().read_bytes() == b"onnx"  # the store holds its own copy
    assert store.production("text") is None  # registering does not promote


def test_a_version_keeps_its_served_variant_and_the_keras_model_not_every_variant(tmp_path: Path) -> None:
    art = _artefacts(tmp_path)
    (art / "variants" / "int8.onnx").write_bytes(b"int8")
    (art / "keras").mkdir()
    (art / "keras" / "model.keras").write_bytes(b"keras")
    variants = {name: {"file": f"variants/{name}.onnx", "bytes": 4} for name in ("fp32", "int8")}
    store = ModelStore(tmp_path / "store")
    version = store.register("text", art, MANIFEST | {"served_variant": "int8", "variants": variants})
    kept = sorted(str(p.relative_to(version.path)) for p in version.path.rglob("*") if p.is_file())
    assert kept == ["keras/model.keras", "manifest.json", "variants/int8.onnx"]
    assert version.manifest["variants"]["fp32"] == variants["fp32"] | {"stored": False}  # measurements stay
    assert version.manifest["variants"]["int8"] == variants["int8"]
    assert version.variant_path().read_bytes() == b"int8"
    with pytest.raises(StoreError, match="does not keep variant 'fp32'.*kiln compress --task text --version v0001"):
        version.variant_path("fp32")
    with pytest.raises(StoreError, match="has no variant 'fp64'; its variants: fp32, int8"):
        version.variant_path("fp64")
    store.promote("text", version.version)  # verifies the served file, which is there
    assert (art / "variants" / "fp32.onnx").is_file()  # the run directory keeps every variant


def test_promote_and_rollback_move_the_pointer(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    for content in (b"a", b"b", b"c"):
        store.promote("text", store.register("text", _artefacts(tmp_path, content), MANIFEST).version)
    assert store.production("text") == "v0003"
    assert store.rollback("text") == ("v0003", "v0002")
    assert store.production("text") == "v0002"
    assert store.rollback("text") == ("v0002", "v0001")
    with pytest.raises(StoreError, match="no earlier production text version"):
        store.rollback("text")
    assert store.production("text") == "v0001"


def test_pointer_is_replaced_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    store.promote("image", store.register("image", _artefacts(tmp_path), MANIFEST).version)
    task_dir = tmp_path / "store" / "image"
    assert json.loads((task_dir / "production.json").read_text())["version"] == "v0001"
    assert not [p for p in task_dir.iterdir() if p.name.endswith(".tmp")]


def test_half_written_staging_dir_is_never_a_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    store.promote("image", store.register("image", _artefacts(tmp_path), MANIFEST).version)
    crashed = tmp_path / "store" / "image" / "versions" / ".staging-v0002-dead"
    crashed.mkdir()  # what a crash during registration leaves behind
    assert store.versions("image") == ["v0001"]
    assert store.production("image") == "v0001"
    assert store.register("image", _artefacts(tmp_path, b"n"), MANIFEST).version == "v0002"


def test_verify_detects_modified_files(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    v = store.register("text", _artefacts(tmp_path), MANIFEST)
    store.verify(v, "variants/fp32.onnx")
    v.variant_path().write_bytes(b"tampered")
    with pytest.raises(StoreError, match="does not match its recorded sha256"):
        store.verify(v, "variants/fp32.onnx")


def test_unknown_task_and_version_errors(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    with pytest.raises(StoreError, match="unknown task 'audio'"):
        store.versions("audio")
    with pytest.raises(StoreError, match="no text version 'v0009'"):
        store.get("text", "v0009")


def test_promotion_is_compare_and_swap(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    gated = MANIFEST | {"promoted": True, "gate": "promoted: better than v0001"}
    first = store.register("text", _artefacts(tmp_path), gated, promote=True, expected_production=None)
    assert first.manifest["promoted"] and store.production("text") == "v0001"
    # another run promoted v0002 while a third run was being gated against v0001
    store.register("text", _artefacts(tmp_path, b"2"), gated, promote=True, expected_production="v0001")
    late = store.register("text", _artefacts(tmp_path, b"3"), gated, promote=True, expected_production="v0001")
    assert store.production("text") == "v0002"
    assert late.manifest["promoted"] is False
    assert "production moved from v0001 to v0002" in late.manifest["gate"]


def test_promote_checks_the_version_exists_and_verifies(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    v1 = store.register("text", _artefacts(tmp_path), MANIFEST)
    with pytest.raises(StoreError, match="no text version 'v0009'"):
        store.promote("text", "v0009")
    v1.variant_path().write_bytes(b"tampered")
    with pytest.raises(StoreError, match="does not match its recorded sha256"):
        store.promote("text", "v0001")
    assert store.production("text") is None


def test_version_names_sort_numerically_and_stray_entries_are_ignored(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    vdir = tmp_path / "store" / "text" / "versions"
    for name in ("v9999", "v10000", "notes", "v12a"):
        (vdir / name).mkdir(parents=True)
    assert store.versions("text") == ["v9999", "v10000"]
    assert store.register("text", _artefacts(tmp_path), MANIFEST).version == "v10001"


@pytest.mark.parametrize("name", ["../../image/versions/v0001", "v0001/../v0002", "/etc", "v1; rm"])
def test_path_escaping_version_names_are_refused(tmp_path: Path, name: str) -> None:
    store = ModelStore(tmp_path / "store")
    store.register("text", _artefacts(tmp_path), MANIFEST)
    with pytest.raises(StoreError, match="is not a version name"):
        store.get("text", name)


def test_a_variant_file_outside_its_version_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    escaping = {**MANIFEST, "variants": {"fp32": {"file": "../../../../secret.onnx"}}}
    v = store.register("text", _artefacts(tmp_path), escaping)
    with pytest.raises(StoreError, match="outside the version"):
        store.verify_for_serving(v)


def test_tampered_manifest_or_spec_is_refused_for_serving(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    spec = {"kind": "text", "labels": ["neg", "pos"], "vocabulary": ["", "[UNK]"], "max_length": 4}
    v = store.register("text", _artefacts(tmp_path), {**MANIFEST, "spec": spec})
    store.verify_for_serving(v)  # untouched: fine
    assert v.spec() == spec and "spec.json" in v.manifest["files"]

    spec_file = v.path / "spec.json"
    original_spec = spec_file.read_bytes()
    spec_file.write_text(json.dumps({**spec, "labels": ["pos", "neg"]}))  # labels swapped
    with pytest.raises(StoreError, match="spec.json does not match"):
        store.verify_for_serving(store.get("text", v.version))
    spec_file.write_bytes(original_spec)

    manifest_file = v.path / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["served_variant"] = "int8"  # even a consistent-looking edit
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="manifest.json does not match the digest"):
        store.verify_for_serving(store.get("text", v.version))


class _Crash(RuntimeError):
    pass


def _crash_after(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
    """Make ``target.name`` do its work, then fail once (a crash right after that step)."""
    original = getattr(target, name)
    calls = [0]

    def crashing(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == 1:
            raise _Crash(f"injected failure after {name}")
        return result

    monkeypatch.setattr(target, name, crashing)


@pytest.mark.parametrize("after", ["rename", "pointer write"])
def test_a_retried_registration_stores_one_version_and_reports_its_own_promotion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: str
) -> None:
    import serving.store as store_module

    store = ModelStore(tmp_path / "store")
    store.register("text", _artefacts(tmp_path, b"v1"), MANIFEST, promote=True)
    if after == "rename":
        _crash_after(monkeypatch, store_module.os, "rename")
    else:
        _crash_after(monkeypatch, ModelStore, "_set_production")
    manifest = {**MANIFEST, "promoted": True, "gate_checks": {"production": {"version": "v0001"}}}
    files = _artefacts(tmp_path, b"v2")

    def attempt():  # type: ignore[no-untyped-def]
        return store.register("text", files, manifest, promote=True, expected_production="v0001", registration="r1")

    with pytest.raises(_Crash):
        attempt()
    version = attempt()  # the retry
    assert store.versions("text") == ["v0001", "v0002"]  # exactly one new version
    assert version.version == "v0002" and version.manifest["promoted"] is True  # no blame on another run
    assert store.production("text") == "v0002" and store.history("text") == ["v0001", "v0002"]
    store.verify_for_serving(version)


def test_a_retry_after_another_run_promoted_says_this_version_was_not_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.store as store_module

    store = ModelStore(tmp_path / "store")
    store.register("text", _artefacts(tmp_path, b"v1"), MANIFEST, promote=True)
    _crash_after(monkeypatch, store_module.os, "rename")
    manifest = {**MANIFEST, "promoted": True}
    args = ("text", _artefacts(tmp_path, b"v2"), manifest)
    with pytest.raises(_Crash):
        store.register(*args, promote=True, expected_production="v0001", registration="r1")
    monkeypatch.undo()
    store.register("text", _artefacts(tmp_path, b"v3"), MANIFEST, promote=True, expected_production="v0001")
    version = store.register(*args, promote=True, expected_production="v0001", registration="r1")
    assert version.version == "v0002" and version.manifest["promoted"] is False
    assert "production moved from v0001 to v0003" in version.manifest["gate"]
    assert store.production("text") == "v0003"
    store.verify_for_serving(version)  # the corrected manifest has its digest


def test_retention_keeps_production_its_history_the_newest_and_what_they_derive_from(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    for i in range(1, 9):  # v0001..v0008; v0002, v0004, v0005, v0006 promoted in turn; v0007 derived from v0001
        manifest = {**MANIFEST, "derived_from": {"task": "text", "version": "v0001"}} if i == 7 else MANIFEST
        files, current = _artefacts(tmp_path, f"v{i}".encode()), store.production("text")
        store.register("text", files, manifest, promote=i in (2, 4, 5, 6), expected_production=current)
    assert store.history("text") == ["v0002", "v0004", "v0005", "v0006"]
    assert store.retained("text", 2) == {"v0005", "v0006", "v0007", "v0008", "v0001"}
    removed = store.collect_garbage("text", 2)
    assert removed == ["v0002", "v0003", "v0004"]
    assert store.versions("text") == ["v0001", "v0005", "v0006", "v0007", "v0008"]
    assert not (tmp_path / "store" / "text" / "digests" / "v0002.sha256").exists()
    assert store.rollback("text") == ("v0006", "v0005")  # the kept history still rolls back
    assert store.register("text", _artefacts(tmp_path, b"v9"), MANIFEST).version == "v0009"  # numbers never reused
    with pytest.raises(StoreError, match="keep at least 1"):
        store.collect_garbage("text", 0)
