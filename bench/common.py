"""What every benchmark shares: the machine description, UTC timestamps, peak RSS, and the result files.

A result file is one JSON object under docs/bench/, written atomically (temporary file, fsync, rename), so an
interrupted benchmark leaves the previous result whole. Every file has the same envelope::

    {"benchmark": "http", "measured": "2026-11-24T14:03:00Z", "machine": {...}, "parameters": {...}, ...}

plus the benchmark's own data (``rows``, or ``result`` for a single measurement), numbers as numbers.
``python -m bench.render`` turns the files into docs/BENCHMARKS.md. This module imports no other bench module
and nothing heavy at import time (the renderer and its tests use it).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path("docs/bench")  # the result files; the rendered docs/BENCHMARKS.md sits beside this folder
SCHEMA = 1


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second, e.g. ``2026-11-24T14:03:07Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(stamp: str) -> datetime:
    """A ``measured`` stamp back as an aware datetime (``Z`` or an explicit offset)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


def show_utc(stamp: str) -> str:
    """How the Markdown shows a stamp: ``2026-11-24 14:03 UTC``."""
    return f"{parse_utc(stamp):%Y-%m-%d %H:%M} UTC"


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on, as data (``describe_machine`` writes the sentence)."""
    from serving.runtime import gpu_present  # TF-free; imported here so the renderer needs no serving stack

    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpu": gpu_present(),
        "platform": platform.platform(),
    }


def describe_machine(m: dict[str, Any]) -> str:
    """``AMD EPYC, 2 cores, 24 GiB RAM, no GPU; Linux-...``."""
    gpu = "GPU present" if m.get("gpu") else "no GPU"
    return f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']:.0f} GiB RAM, {gpu}; {m['platform']}"


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size of this process (or, with RUSAGE_CHILDREN, its largest waited-for child)."""
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def envelope(benchmark: str, parameters: dict[str, Any], measured: str | None = None, **data: Any) -> dict[str, Any]:
    """A result object: what ran, when (UTC), where, with which parameters, and its data."""
    return {
        "benchmark": benchmark,
        "schema": SCHEMA,
        "measured": measured or utc_now(),
        "machine": machine(),
        "parameters": parameters,
        **data,
    }


def _plain(value: Any) -> Any:
    """numpy scalars and paths, which reports may hold, as JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON: {value!r}")


def write_result(path: Path, result: dict[str, Any]) -> Path:
    """Write ``result`` as indented JSON to ``path`` atomically: a crash leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False, default=_plain) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a result file is as readable as any other
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_result(path: Path) -> dict[str, Any] | None:
    """A result file's object, or None when there is none yet."""
    path = Path(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a benchmark result is a JSON object")
    return data


def read_results(directory: Path) -> dict[str, dict[str, Any]]:
    """Every result file in ``directory`` by benchmark name (the file's ``benchmark`` field, else its stem)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(directory).glob("*.json")):
        data = read_result(path)
        if data is not None:
            found[str(data.get("benchmark", path.stem))] = data
    return found


def markdown_for(json_path: Path) -> Path:
    """Where the rendered Markdown goes for a result file: ``docs/bench/x.json`` -> ``docs/BENCHMARKS.md``."""
    return Path(json_path).parent.parent / "BENCHMARKS.md"
