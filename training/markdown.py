"""Markdown for Prefect artifacts, which cannot read files from the run directory: PNGs inlined as data URIs."""

from __future__ import annotations

import base64
import re
from pathlib import Path


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def inline_images(markdown: str, base: Path) -> str:
    """Markdown whose relative PNG links (``](plots/x.png)``) become data URIs, for Prefect artifacts,
    which cannot read files from the run directory."""
    def replace(match: re.Match[str]) -> str:
        path = base / match.group(1)
        return f"]({_data_uri(path)})" if path.is_file() else match.group(0)

    return re.sub(r"\]\(([^)\s]+\.png)\)", replace, markdown)


def markdown_with_images(title: str, images: dict[str, Path]) -> str:
    """Markdown with the PNGs inlined as data URIs, for Prefect artifacts (which cannot read local files)."""
    lines = [f"# {title}", ""]
    for name, path in images.items():
        lines += [f"## {name}", "", f"![{name}]({_data_uri(path)})", ""]
    return "\n".join(lines)
