"""Prefect artifacts inline only the report's own figures."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import png_bytes
from training.markdown import inline_images


def test_only_the_reports_own_plot_files_are_inlined(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    (run / "plots" / "classes.png").write_bytes(png_bytes())
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes())
    (run / "plots" / "link.png").symlink_to(secret)  # a link out of the folder
    (run / "plots" / "fake.png").write_bytes(b"not a picture")
    (run / "elsewhere.png").write_bytes(png_bytes())
    markdown = "\n".join(
        [
            "![classes](plots/classes.png)",
            "![escape](plots/../../secret.png)",  # a label or file name quoted from the data
            "![link](plots/link.png)",
            "![fake](plots/fake.png)",
            "![outside](elsewhere.png)",
            f"![absolute]({secret})",
        ]
    )
    lines = inline_images(markdown, run).splitlines()
    assert lines[0].startswith("![classes](data:image/png;base64,")
    assert lines[1:] == markdown.splitlines()[1:]  # everything else is left as written
