"""`kiln demo` / `make demo`: sample data -> retrain both tasks -> serve -> classify over HTTP -> stop."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.console import print_run_summary
from serving.client import KilnClient, KilnServer
from training.data.sample_data import write_sample_data

DEMO_TEXTS = [
    "The delivery was really fast!",
    "the refund was not helpful at all",
    "Was the installer buggy or not?",
    "Honestly the charger is never slow",
]


def run_demo(workdir: Path, port: int, epochs: int | None = None) -> None:
    from flows.retrain import retrain

    sample = write_sample_data(workdir / "sample")
    store = workdir / "store"
    typer.secho(f"== sample data in {workdir / 'sample'}", bold=True)
    for task in ("image", "text"):
        typer.secho(f"\n== retrain flow: {task}", bold=True)
        out = workdir / "runs" / task
        report = retrain(task=task, data=str(sample[task + "s"]), out=str(out), store=str(store), epochs=epochs)
        print_run_summary(report, out)

    typer.secho(f"\n== kiln serve --store {store} --port {port}", bold=True)
    with KilnServer(store, port=port, log_path=workdir / "server.log") as server:
        client = KilnClient(server.url)
        for digit in ("3", "7", "9"):
            image = sorted((sample["images"] / digit).glob("*.png"))[0]
            r = client.classify_image(image)
            typer.echo(
                f"POST /classify_image {image.relative_to(workdir)} (true {digit}) -> "
                f"{r['label']} (score {r['score']:.3f}, {r['model']['name']} {r['model']['version']})"
            )
        r = client.classify_text(DEMO_TEXTS)
        for text, p in zip(DEMO_TEXTS, r["predictions"], strict=True):
            typer.echo(f"POST /classify_text {text!r} -> {p['label']} (score {p['score']:.3f})")
    typer.secho(f"\n== server stopped; its log is {workdir / 'server.log'}", bold=True)
