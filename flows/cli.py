"""The `kiln` command line. Heavy imports (TensorFlow, Prefect, BentoML) happen inside the commands
that need them, so `kiln --help`, `kiln models` and `kiln rollback` start in well under a second.

    $ kiln sample-data sample
    $ kiln run --task image --data sample/images
    $ kiln serve
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer

from flows.console import (
    fail,
    print_data_summary,
    print_prediction_summary,
    print_run_summary,
    print_tuning_summary,
)
from flows.pool_job import POOL_STORE
from serving.settings import Settings
from serving.store import TASKS, ModelStore, StoreError
from training.runs import new_run_dir

if TYPE_CHECKING:
    from training.config import RunConfig

app = typer.Typer(
    name="kiln",
    help="Kiln: labelled data in, small fast classifiers out, served over HTTP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Task(StrEnum):
    image = "image"
    text = "text"


StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help="Model store directory. Default: $KILN_STORE, else ./.kiln/store."),
]


def _store(path: Path | None) -> ModelStore:
    return ModelStore(path or Settings().store)


def _setup_logging() -> None:
    # Third-party INFO (ORT quantization logs every tensor via the root logger) stays hidden.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for ours in ("flows", "training", "compression", "serving", "prefect"):
        logging.getLogger(ours).setLevel(logging.INFO)
    # Prefect's per-task "created / finished" lines would drown Kiln's own; failures still show.
    logging.getLogger("prefect.task_runs").setLevel(logging.WARNING)


TaskOption = Annotated[Task, typer.Option(help="What to train: an image or a text classifier.")]
DATA_HELP = (
    "Images: a folder DIR/<label>/<file>, or a manifest (CSV/TSV with path,label columns or JSONL with "
    '{"path", "label"}; relative paths from the manifest\'s folder). Texts: a CSV, TSV, JSONL (or JSON array) or '
    "Parquet file (gzip-compressed too), or a folder DIR/<label>/<file> with one text per file."
)
DataOption = Annotated[Path, typer.Option(help=DATA_HELP)]
ConfigOption = Annotated[Path | None, typer.Option(help="YAML file overriding the defaults (see README).")]
TextColumnOption = Annotated[
    str | None, typer.Option(help="Text column: header name, 0-based index, or JSON/Parquet field.")
]
LabelColumnOption = Annotated[
    str | None, typer.Option(help="Label column: header name, 0-based index, or JSON/Parquet field.")
]
NoHeaderOption = Annotated[bool, typer.Option("--no-header", help="The CSV/TSV has no header row.")]


def _checked_config(data: Path, config: Path | None) -> RunConfig:
    """Fail fast, before any heavy import, on a missing data path or a bad config."""
    from training.config import ConfigError, load_config

    if not data.exists():
        fail(f"--data {data} does not exist")
    try:
        return load_config(config)
    except ConfigError as exc:
        fail(str(exc))


@app.command()
def run(
    task: Annotated[Task | None, typer.Option(help="What to train: an image or a text classifier.")] = None,
    data: Annotated[Path | None, typer.Option(help=DATA_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory for report.json and artefacts.")] = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum training epochs (overrides config).")] = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    no_header: NoHeaderOption = False,
    allow_label_change: Annotated[
        bool,
        typer.Option("--allow-label-change", help="Train even when the labels differ from the production model's."),
    ] = False,
    trials: Annotated[
        int | None, typer.Option(min=1, help="Tune with this many Optuna trials first, then train the adopted config.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue an interrupted run from its last epoch checkpoint: give its run directory (--out). "
            "Its saved task, data, store and configuration are used; other flags are ignored."
        ),
    ] = None,
) -> None:
    """Run the retrain flow: clean, check, split, data report, train, compress, gate, register (and promote
    if it passes). The run directory gets report.json, data_report.md/.json, quarantine.csv, history.csv,
    plots/, tensorboard/ and, while training, checkpoints/ for --resume."""
    from training.config import ConfigError

    if resume is not None:
        params = _resumable(resume)
    else:
        if task is None or data is None:
            fail("--task and --data are required (or --resume RUN_DIR to continue an interrupted run)")
        _checked_config(data, config)
        params = {
            "task": task.value,
            "data": str(data),
            "out": str(out or new_run_dir(task.value)),
            "store": str(_store(store).root),
            "config": str(config) if config else None,
            "epochs": epochs,
            "text_column": text_column,
            "label_column": label_column,
            "header": not no_header,
            "allow_label_change": allow_label_change,
            "trials": trials,
        }
    verb = "resuming" if resume is not None else "kiln run:"
    typer.echo(f"{verb} {params['task']} model from {params['data']} -> store {params['store']}, run {params['out']}")

    from compression.compress import ParityError
    from flows.retrain import retrain
    from training.data.dataset import DataError

    try:
        report = retrain(**params, resume=resume is not None)
    except (DataError, ConfigError, ParityError, StoreError) as exc:
        fail(str(exc))
    print_run_summary(report, Path(params["out"]))


@app.command()
def tune(
    task: TaskOption,
    data: DataOption,
    trials: Annotated[int, typer.Option(min=1, help="Trials to run in this process.")] = 20,
    timeout: Annotated[float | None, typer.Option(min=1, help="Stop starting trials after this many seconds.")] = None,
    sampler: Annotated[str, typer.Option(help="Search strategy: tpe, random or grid.")] = "tpe",
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL shared by every process of the study (e.g. postgresql://user@host/db). "
            "Default: a SQLite file in the run directory."
        ),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name; processes with one name share trials.")] = None,
    space: Annotated[
        Path | None, typer.Option(help="Search space YAML (key: {type, low, high, log, choices}); default per task.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory for trials, plots and best_config.yaml.")] = None,
    config: ConfigOption = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    no_header: NoHeaderOption = False,
) -> None:
    """Search hyperparameters with Optuna on the validation split; write best_config.yaml for kiln run --config."""
    from training.config import ConfigError

    _checked_config(data, config)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out_dir = out or Path(".kiln") / "tune" / f"{task.value}-{stamp}"
    typer.echo(f"kiln tune: {task.value} on {data}, {trials} trial(s), {sampler} sampler -> {out_dir}")

    from flows.tune import tune as tune_flow
    from training.data.dataset import DataError

    try:
        result = tune_flow(
            task=task.value,
            data=str(data),
            out=str(out_dir),
            trials=trials,
            timeout=timeout,
            sampler=sampler,
            storage=storage,
            study=study,
            space=str(space) if space else None,
            config=str(config) if config else None,
            text_column=text_column,
            label_column=label_column,
            header=not no_header,
        )
    except (DataError, ConfigError) as exc:
        fail(str(exc))
    print_tuning_summary(result)


# What `kiln run` hands the retrain flow (besides resume); a resumed run gets the same from its run file.
RUN_PARAMETERS = (
    "task",
    "data",
    "out",
    "store",
    "config",
    "epochs",
    "text_column",
    "label_column",
    "header",
    "allow_label_change",
    "trials",
    "keep",
)


def _resumable(run_dir: Path) -> dict:
    """The saved parameters of the run in ``run_dir``, with its directory as ``out``."""
    from training.config import ConfigError
    from training.runs import read_run_file

    try:
        saved = read_run_file(run_dir)["params"]
    except ConfigError as exc:
        fail(str(exc))
    # The run file also records what the run itself learnt (e.g. "tuned"): hand the flow only its parameters.
    return {k: v for k, v in saved.items() if k in RUN_PARAMETERS} | {"out": str(run_dir)}


data_app = typer.Typer(help="Look at a data set before training on it.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("inspect")
def data_inspect(
    task: TaskOption,
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Where to write data_report.md/.json, quarantine.csv, plots/.")] = Path(
        ".kiln/inspect"
    ),
    config: ConfigOption = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    no_header: NoHeaderOption = False,
    plots: Annotated[bool, typer.Option(help="Draw the PNG plots.")] = True,
) -> None:
    """Ingest, clean and split the data without training; write the data report, quarantine list and plots."""
    cfg = _checked_config(data, config)
    from training.data.dataset import DataError, check_trainable
    from training.data.inspect import inspect_data

    try:
        dataset, paths = inspect_data(task.value, data, out, cfg, text_column, label_column, not no_header, plots)
    except DataError as exc:
        fail(str(exc))
    print_data_summary(dataset.report.to_dict(), out)
    for name, path in paths.items():
        if name.startswith("plot_"):
            typer.echo(f"plot: {path}")
    try:
        check_trainable(dataset, cfg.data.min_examples_per_class)
    except DataError as exc:
        fail(f"this data cannot train yet: {exc}")


@app.command()
def serve(
    store: StoreOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address. Default: $KILN_HOST, else 127.0.0.1.")] = None,
    port: Annotated[int | None, typer.Option(help="Port. Default: $KILN_PORT, else 3000.")] = None,
) -> None:
    """Serve the production version of each task over HTTP (BentoML + ONNX Runtime)."""
    settings = Settings()
    model_store = _store(store)
    live = {t: model_store.production(t) for t in TASKS}
    if not any(live.values()):
        # A first deploy must not crash-loop: serve 503s until a model is promoted, then pick it up.
        typer.echo(f"no production model in store {model_store.root} yet; serving 503 until one is promoted")
    for t, version in live.items():
        typer.echo(f"{t}: {version or 'none (requests get 503 until a version is promoted)'}")
    os.environ["KILN_STORE"] = str(model_store.root.resolve())
    args = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:Kiln",
        "--host",
        host or settings.host,
        "--port",
        str(port or settings.port),
    ]
    sys.stdout.flush()
    os.execv(sys.executable, args)  # hand signals straight to BentoML


@app.command()
def compress(
    task: Annotated[Task, typer.Option(help="The task of the stored version.")],
    version: Annotated[str, typer.Option(help="The stored version to compress again, e.g. v0003.")],
    store: StoreOption = None,
    config: ConfigOption = None,
    data: Annotated[
        Path | None, typer.Option(help="The version's training data, if it moved (default: the recorded path).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory for report.json and artefacts.")] = None,
) -> None:
    """Re-run compression on a stored version's trained model (no training): every variant in the config's
    compress section, laid over the version's own config, is made and measured; the result goes through the
    gate and is registered as a new version that records derived_from."""
    model_store = _store(store)
    try:
        model_store.get(task.value, version)  # a typo fails here, before Prefect and TensorFlow start
    except StoreError as exc:
        fail(str(exc))
    from compression.compress import ParityError
    from flows.compress import compress_version
    from training.config import ConfigError
    from training.data.dataset import DataError

    out_dir = out or new_run_dir(f"compress-{task.value}-{version}")
    typer.echo(f"kiln compress: {task.value} {version} in store {model_store.root} -> run {out_dir}")
    try:
        report = compress_version(
            task.value,
            version,
            str(model_store.root),
            str(out_dir),
            str(config) if config else None,
            str(data) if data else None,
        )
    except (DataError, ConfigError, ParityError, StoreError) as exc:
        fail(str(exc))
    print_run_summary(report, out_dir)


@app.command()
def models(
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List stored versions per task with their metrics; * marks production."""
    model_store = _store(store)
    listing = {}
    for t in TASKS:
        production = model_store.production(t)
        rows = []
        for version in model_store.versions(t):
            m = model_store.get(t, version).manifest
            rows.append(
                {
                    "version": version,
                    "production": version == production,
                    "created_at": m.get("created_at"),
                    "served_variant": m.get("served_variant"),
                    **m.get("metrics", {}),
                    "bytes": m["variants"][m["served_variant"]]["bytes"],
                    "gate": m.get("gate"),
                    "baseline": m.get("gate_checks", {}).get("baseline", {}).get("version"),
                }
            )
        listing[t] = rows
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    if not any(listing.values()):
        typer.echo(f"no models in store {model_store.root}")
        return
    for t, rows in listing.items():
        typer.echo(f"{t}:")
        for r in rows:
            mark = "*" if r["production"] else " "
            typer.echo(
                f" {mark} {r['version']}  {r['created_at']}  {r['served_variant']:5s} {r['bytes']:>10,d} B  "
                f"accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}"
                + (f"  gated against {r['baseline']}" if r["baseline"] else "")
            )


@app.command()
def schedule(
    task: Annotated[Task | None, typer.Option(help="What to retrain on the schedule.")] = None,
    data: Annotated[Path | None, typer.Option(help="The data each retrain reads (it may change between runs).")] = None,
    cron: Annotated[
        str | None, typer.Option(help='When to retrain, as cron in UTC, e.g. "0 3 * * *" (03:00 daily).')
    ] = None,
    name: Annotated[str | None, typer.Option(help="Schedule name (default: retrain-TASK).")] = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum training epochs (overrides config).")] = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    no_header: NoHeaderOption = False,
    trials: Annotated[int | None, typer.Option(min=1, help="Tune with this many Optuna trials in each run.")] = None,
    keep: Annotated[
        int | None,
        typer.Option(min=1, help="After each run, delete versions beyond this much rollback history (`kiln gc`)."),
    ] = None,
    pool: Annotated[
        str | None, typer.Option(help="Register for this Prefect work pool (its worker runs the retrains) and exit.")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="Training image recorded for --pool runs (default kiln-training:0.1.0); Kiln's own job template "
            "runs the image it pins."
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option(help="Kubernetes namespace of the --pool runs' Jobs (where Kiln is deployed).")
    ] = "kiln",
    list_: Annotated[bool, typer.Option("--list", help="List the retrain schedules on the server.")] = False,
    pause: Annotated[str | None, typer.Option(help="Pause the named schedule (no new runs until --resume).")] = None,
    resume: Annotated[str | None, typer.Option(help="Resume the named schedule.")] = None,
    delete: Annotated[str | None, typer.Option(help="Delete the named schedule.")] = None,
    run_now: Annotated[str | None, typer.Option(help="Start a run of the named schedule now.")] = None,
    predict_out: Annotated[
        Path | None,
        typer.Option(
            help="Schedule a batch prediction (`kiln predict`) of --data with the production model into this "
            ".csv/.jsonl file, replaced whole by each run, instead of a retrain."
        ),
    ] = None,
    dask: Annotated[
        str | None, typer.Option(help="With --predict-out: score the shards on the Dask cluster at this address.")
    ] = None,
) -> None:
    """Retrain (or, with --predict-out, batch-predict) on a schedule on the Prefect server at PREFECT_API_URL. With
    --task, --data and --cron: register the retrain (or predict) flow as a deployment and serve its runs in this
    process (it keeps running; use a service manager), or with --pool, register it for a work pool's worker and exit
    (then --data, --store, --config and --predict-out are paths as the pool's Job sees them; the store defaults to
    /models, and predictions go under /predictions). --list, --pause, --resume, --delete and
    --run-now manage schedules already registered. A server that requires authentication needs
    PREFECT_API_AUTH_STRING."""
    from flows import schedule as schedules

    actions = {"pause": pause, "resume": resume, "delete": delete, "run-now": run_now}
    chosen = [f"--{flag}" for flag, value in actions.items() if value is not None] + ["--list"] * list_
    if len(chosen) > 1:
        fail(f"give one of {', '.join(chosen)} at a time")
    try:
        schedules.wait_for_server(schedules.check_server(), typer.echo)
        if list_:
            _list_schedules()
        elif chosen:
            flag = chosen[0].removeprefix("--")
            _manage_schedule(flag, str(actions[flag]))
        else:
            if task is None or data is None or cron is None:
                fail(
                    "give --task, --data and --cron to register a schedule "
                    "(or --list/--pause/--resume/--delete/--run-now)"
                )
            if predict_out is not None:
                retrain_only = {"--config": config, "--epochs": epochs, "--label-column": label_column}
                retrain_only |= {"--trials": trials, "--keep": keep}
                given = [flag for flag, value in retrain_only.items() if value is not None]
                if given:
                    fail(f"{', '.join(given)} configure a retrain, not a scheduled prediction (--predict-out)")
                prediction = {"out": predict_out, "text_column": text_column, "header": not no_header, "dask": dask}
                _register_prediction(name, cron, task, data, store, prediction, pool, image, namespace)
                return
            if pool is None:  # a pool's runs read their data and config where the Job mounts them
                _checked_config(data, config)
            params = {
                "task": task.value,
                "data": str(data if pool else data.resolve()),
                "out": None,
                "store": str(store or POOL_STORE) if pool else str(_store(store).root.resolve()),
                "config": None if config is None else str(config if pool else config.resolve()),
                "epochs": epochs,
                "text_column": text_column,
                "label_column": label_column,
                "header": not no_header,
                "trials": trials,
                "keep": keep,
            }
            _register_schedule(name or f"retrain-{task.value}", cron, params, pool, image, namespace)
    except (schedules.ScheduleError, StoreError) as exc:
        fail(str(exc))
    except httpx.HTTPError as exc:  # the server went away mid-command
        fail(f"the Prefect server at {os.environ.get('PREFECT_API_URL')} (PREFECT_API_URL) stopped answering: {exc}")


def _register_prediction(
    name: str | None,
    cron: str,
    task: Task,
    data: Path,
    store: Path | None,
    options: dict,
    pool: str | None,
    image: str | None,
    namespace: str,
) -> None:
    """`kiln schedule --predict-out FILE`: the predict flow on a cron schedule (paths as the runs see them)."""
    from serving.batch import output_format

    out = Path(options.pop("out"))
    try:
        output_format(out)
    except ValueError as exc:
        fail(str(exc))
    if pool is None and not data.exists():
        fail(f"--data {data} does not exist")
    params = {
        "task": task.value,
        "data": str(data if pool else data.resolve()),
        "out": str(out if pool else out.resolve()),
        "store": str(store or POOL_STORE) if pool else str(_store(store).root.resolve()),
        **options,
    }
    _register_schedule(name or f"predict-{task.value}", cron, params, pool, image, namespace, flow="predict")


def _list_schedules() -> None:
    """`kiln schedule --list`: every retrain schedule on the server, one line each."""
    from flows import schedule as schedules

    rows = schedules.list_schedules()
    for r in rows:
        state = "paused" if r["paused"] else "active"
        line = f"{r['name']:24s} {r['flow']:8s} {r['cron']:16s} {state:7s} {r['task']}  {r['data']}"
        typer.echo(f"{line}  pool={r['pool'] or '-'}")
    if not rows:
        typer.echo("no retrain schedules on this server")


def _manage_schedule(action: str, name: str) -> None:
    """`kiln schedule --pause/--resume/--delete/--run-now NAME`."""
    from flows import schedule as schedules

    if action == "run-now":
        typer.echo(f"{name}: started flow run {schedules.run_now(name)}")
    elif action == "delete":
        schedules.delete_schedule(name)
        typer.echo(f"{name}: deleted")
    else:
        schedules.set_paused(name, paused=action == "pause")
        typer.echo(f"{name}: {action}d")


def _register_schedule(
    name: str,
    cron: str,
    params: dict,
    pool: str | None,
    image: str | None,
    namespace: str,
    flow: str = "retrain",
) -> None:
    """`kiln schedule --task --data --cron`: register the deployment; serve it here unless --pool."""
    from flows import schedule as schedules

    where = f"work pool {pool} (namespace {namespace})" if pool else "this process (keep it running)"
    typer.echo(f"schedule {name} ({flow}): {cron} (UTC) on {os.environ.get('PREFECT_API_URL')}; runs in {where}")
    schedules.register_schedule(name, cron, params, pool, image, namespace, flow=flow)


@app.command()
def drift(
    task: Annotated[Task, typer.Option(help="Which task's inputs and scores to check.")],
    metrics: Annotated[
        str, typer.Option("--metrics", help="The server's Prometheus endpoint, e.g. http://kiln:3000/metrics.")
    ],
    version: Annotated[
        str | None, typer.Option(help="The version to compare with. Default: the one the server says it serves.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Compare what a server has classified (its drift histograms) with the training summary stored with the
    version: the population stability index per signal and a verdict (< 0.1 stable, < 0.25 shifting, else
    drifted; fewer than 200 items give none). Exits 1 when a signal drifted, so a scheduled check can alert."""
    from serving.drift import compare, observed_counts, served_version

    try:
        scrape = httpx.get(metrics, timeout=10).raise_for_status().text
    except httpx.HTTPError as exc:
        fail(f"cannot read {metrics}: {exc}")
    chosen = version or served_version(scrape, task.value)
    if chosen is None:
        fail(f"{metrics} shows no {task.value} model served; pass --version")
    try:
        model_store = _store(store)
        baseline = model_store.drift_baseline(model_store.get(task.value, chosen))
        seen = observed_counts(scrape, task.value, chosen)
    except (StoreError, ValueError) as exc:
        fail(str(exc))
    if baseline is None:
        fail(f"{task.value} {chosen} was stored without a training summary (drift.json); retrain to get one")
    rows = compare(baseline, seen)
    typer.echo(f"{task.value} {chosen}: what {metrics} saw against the training summary")
    typer.echo(f"  {'signal':15s} {'items':>8s} {'PSI':>8s}  verdict")
    for r in rows:
        value = "-" if r["psi"] is None else f"{r['psi']:.3f}"
        typer.echo(f"  {r['signal']:15s} {r['items']:>8,d} {value:>8s}  {r['verdict']}")
    drifted = [r["signal"] for r in rows if r["verdict"] == "drifted"]
    typer.echo(f"verdict: {'drifted (' + ', '.join(drifted) + ')' if drifted else 'no drift'}")
    if drifted:
        raise typer.Exit(1)


PREDICT_DATA_HELP = (
    "Images: a folder (images at any depth; label folders are fine) or a manifest with a path column. Texts: a "
    "CSV, TSV, JSONL or Parquet file (gzip-compressed too) with a text column, or a folder of text files (one "
    "text per file, at any depth). No label is needed."
)


@app.command()
def predict(
    task: Annotated[Task, typer.Option(help="Which task's model scores the data: image or text.")],
    data: Annotated[Path, typer.Option(help=PREDICT_DATA_HELP)],
    out: Annotated[Path, typer.Option(help="Output file: .csv or .jsonl (one row per item, in input order).")],
    version: Annotated[str | None, typer.Option(help="A stored version, e.g. v0003. Default: production.")] = None,
    store: StoreOption = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels and scores per row, best first.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, max=4096, help="Items per ONNX Runtime call.")] = 64,
    text_column: TextColumnOption = None,
    no_header: NoHeaderOption = False,
    workers: Annotated[
        int, typer.Option(min=0, help="Score shards on a local Dask cluster of this many processes (0 or 1: here).")
    ] = 0,
    dask: Annotated[
        str | None,
        typer.Option(
            help="Score shards on the Dask cluster at this scheduler address (tcp://host:8786); its workers must "
            "see --data and --store at the same paths."
        ),
    ] = None,
    shard_items: Annotated[
        int | None,
        typer.Option(min=1, help="Items per shard (one Prefect task). Default: 1,024 images or 8,192 texts."),
    ] = None,
) -> None:
    """Score a folder or table with a stored model through the service's own preprocessing and ONNX Runtime path
    and write one row per item (item, label, score, abstained, top_k, error). An unreadable item is a row with its
    error, never the end of the job. Runs as the Prefect flow `predict`, whose shards are tasks."""
    if not data.exists():
        fail(f"--data {data} does not exist")
    if workers > 1 and dask:
        fail("give --workers (a local Dask cluster) or --dask (an existing one), not both")
    if dask and not os.environ.get("PREFECT_API_URL"):
        fail(
            "--dask needs PREFECT_API_URL: the cluster's workers report their task runs to a Prefect server that "
            "outlives this command (a temporary one is not reachable from them)"
        )
    if out.is_dir():
        fail(f"--out {out} is a folder; give a file name ending in .csv or .jsonl")
    from flows.predict import predict as predict_flow
    from serving.batch import output_format
    from training.data.dataset import DataError
    from training.data.sources import iter_items

    try:
        output_format(out)
        next(iter_items(task.value, data, text_column, not no_header), None)  # unreadable data: one line, now
        root = _store(store).root
        typer.echo(f"kiln predict: {task.value} model from store {root} on {data} -> {out}")
        summary = predict_flow(
            task=task.value,
            data=str(data.resolve()),  # as remote Dask workers must find them
            store=str(root.resolve()),
            out=str(out),
            version=version,
            top_k=top_k,
            batch_size=batch_size,
            text_column=text_column,
            header=not no_header,
            workers=workers,
            dask=dask,
            shard_items=shard_items,
        )
    except (DataError, StoreError, ValueError, OSError) as exc:
        fail(str(exc))
    except ImportError as exc:
        fail(f"{exc}: --workers and --dask need the training install (pip install 'kiln[train]')")
    print_prediction_summary(summary)


@app.command()
def promote(
    task: Annotated[Task, typer.Option(help="The task whose production pointer to move.")],
    version: Annotated[str, typer.Option(help="The stored version to serve, e.g. v0003 (see `kiln models`).")],
    store: StoreOption = None,
) -> None:
    """Make any stored version production (checked to exist and match its recorded hashes). Running servers
    switch to it within their reload interval; `kiln rollback` undoes it."""
    model_store = _store(store)
    previous = model_store.production(task.value)
    try:
        model_store.promote(task.value, version)
    except StoreError as exc:
        fail(str(exc))
    typer.echo(f"{task.value}: production {previous or 'none'} -> {version}")


@app.command()
def rollback(
    task: Annotated[Task, typer.Option(help="Which task's production pointer to move back.")],
    store: StoreOption = None,
) -> None:
    """Make the previous production version of a task current again."""
    try:
        replaced, restored = _store(store).rollback(task.value)
    except StoreError as exc:
        fail(str(exc))
    typer.echo(f"{task.value}: production {replaced} -> {restored}")


@app.command()
def gc(
    task: Annotated[Task, typer.Option(help="Whose versions and runs to clean up.")],
    keep: Annotated[int, typer.Option(min=1, help="Versions of rollback history (and newest versions) to keep.")],
    runs_older_than: Annotated[
        float | None, typer.Option(min=0, help="Also delete this task's run directories older than DAYS.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Delete old versions: production and the last KEEP of its rollback history stay, as do the KEEP newest
    versions and every version a kept one was derived from; with --runs-older-than, old run directories too."""
    import shutil

    from training.runs import old_run_dirs

    try:
        removed = _store(store).collect_garbage(task.value, keep)
    except StoreError as exc:
        fail(str(exc))
    typer.echo(f"{task.value}: deleted {len(removed)} version(s){': ' + ', '.join(removed) if removed else ''}")
    if runs_older_than is not None:
        runs = old_run_dirs(task.value, runs_older_than)
        for run_dir in runs:
            shutil.rmtree(run_dir)
        typer.echo(f"{task.value}: deleted {len(runs)} run director(ies) older than {runs_older_than:g} days")


@app.command("sample-data")
def sample_data(directory: Annotated[Path, typer.Argument(help="Where to write images/ and texts.csv.")]) -> None:
    """Write the bundled sample data: digit PNGs (scikit-learn) and a generated texts.csv."""
    from training.data.sample_data import write_sample_data

    paths = write_sample_data(directory)
    typer.echo(f"wrote {paths['images']}/<digit>/*.png and {paths['texts']}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes data, store and runs.")] = Path(".kiln/demo"),
    port: Annotated[int, typer.Option(help="Port for the demo server.")] = 3000,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum training epochs.")] = None,
) -> None:
    """Sample data -> train both tasks -> serve -> classify over HTTP -> stop."""
    from flows.demo import run_demo

    run_demo(workdir, port, epochs)


def main() -> None:
    _setup_logging()
    app()


if __name__ == "__main__":
    main()
