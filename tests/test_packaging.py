"""What `pip install .` installs: Kiln's four packages, never the benchmarks or the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_the_four_packages_and_no_benchmark_code(tmp_path: Path) -> None:
    # A copy of the checkout: setuptools builds in the source tree, and a build/ left there would keep stale modules.
    source = tmp_path / "source"
    junk = shutil.ignore_patterns(".git", ".venv*", ".kiln", "build", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(ROOT, source, ignore=junk)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    subprocess.run([*pip, str(source)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("kiln-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"flows", "training", "serving", "compression"}
    assert "training/tasks/text.py" in names and "flows/steps.py" in names
    assert not [name for name in names if "bench" in name.split("/")[0] or name.startswith("tests/")]
