"""Markdown for Prefect artifacts, which cannot read files from the run directory: PNGs inlined as data URIs."""

from __future__ import annotations

import base64
import re
from pathlib import Path


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


PLOTS = "plots"  # the folder a report's own figures are drawn into, beside the report
_PLOT_LINK = re.compile(r"\]\((plots/[A-Za-z0-9_.-]+\.png)\)")
_PNG = b"\x89PNG\r\n\x1a\n"


def inline_images(markdown: str, base: Path) -> str:
    """Markdown whose links to the report's own figures (``](plots/x.png)``) become data URIs, for Prefect
    artifacts, which cannot read files from the run directory. Only a PNG file inside ``base/plots`` (after
    resolving links) is inlined: report text can quote data (file names, labels), and a crafted data set must
    not copy another file into an artifact."""
    plots = (base / PLOTS).resolve()

    def replace(match: re.Match[str]) -> str:
        path = (base / match.group(1)).resolve()
        own = path.parent == plots and path.is_file() and path.read_bytes()[:8] == _PNG
        return f"]({_data_uri(path)})" if own else match.group(0)

    return _PLOT_LINK.sub(replace, markdown)


def markdown_with_images(title: str, images: dict[str, Path]) -> str:
    """Markdown with the PNGs inlined as data URIs, for Prefect artifacts (which cannot read local files)."""
    lines = [f"# {title}", ""]
    for name, path in images.items():
        lines += [f"## {name}", "", f"![{name}]({_data_uri(path)})", ""]
    return "\n".join(lines)
