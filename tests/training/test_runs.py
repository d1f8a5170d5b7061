"""The run file: a resume continues only on the data the run started with."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError
from training.runs import data_fingerprint, start_run


def test_resume_refuses_data_that_changed_since_the_run_started(tmp_path: Path) -> None:
    data = tmp_path / "texts.csv"
    data.write_text("text,label\ngood,pos\nbad,neg\n")
    run = tmp_path / "run"
    start_run(run, {"task": "text", "data": str(data)}, resume=False)
    assert start_run(run, {}, resume=True).config is not None  # unchanged: resumes
    data.write_text("text,label\ngood,pos\nbad,neg\nfine,pos\n")
    with pytest.raises(ConfigError, match="changed since the run .* started; --resume continues"):
        start_run(run, {}, resume=True)
    data.unlink()
    with pytest.raises(ConfigError, match="is not there"):
        start_run(run, {}, resume=True)


def test_a_folder_fingerprint_follows_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"a")
    before = data_fingerprint(tmp_path / "images")
    assert data_fingerprint(tmp_path / "images") == before
    (folder / "b.png").write_bytes(b"b")
    assert data_fingerprint(tmp_path / "images") != before
