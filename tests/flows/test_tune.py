"""`kiln tune`: Optuna trials on the validation split, the best config usable by `kiln run --config`,
and one study shared by two processes through a real PostgreSQL server started here."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from tests.conftest import TINY_CONFIG, make_texts, write_csv
from training.config import load_config

FAST = TINY_CONFIG.replace("epochs: 12", "epochs: 4")
SPACE = {
    "text_model.architecture": {"type": "categorical", "choices": ["cnn", "hybrid"]},
    "train.learning_rate": {"type": "float", "low": 0.001, "high": 0.05, "log": True},
    "train.optimizer": {"type": "categorical", "choices": ["adam", "rmsprop"]},
}


@pytest.mark.slow
def test_six_trial_tune_reports_against_the_default_and_writes_a_usable_config(
    tmp_path: Path, prefect_server: None
) -> None:
    from flows.tune import tune
    from training.data.sample_data import write_sample_data

    texts = write_sample_data(tmp_path / "sample")["texts"]
    (tmp_path / "c.yaml").write_text(FAST)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "tune"
    result = tune(
        task="text", data=str(texts), out=str(out), trials=6, config=str(tmp_path / "c.yaml"),
        space=str(tmp_path / "space.yaml"),
    )  # fmt: skip
    assert result["trials"] == 6 and result["complete"] + result["pruned"] == 6
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[1].split(",")[5] == "default"  # trial 0 is the default configuration, the one to beat
    check_beat_default(result, out)
    assert json.loads((out / "tuning.json").read_text())["beat_default"] == result["beat_default"]
    for name in ("best_config", "csv", "markdown", "optimization_history"):
        assert Path(result["files"][name]).exists(), name
    from training.fit.tune import ITEM_LOSSES, adoption_z, unpack_losses

    best = load_config(out / "best_config.yaml")  # kiln run --config accepts it
    study = optuna.load_study(study_name="kiln-text", storage=f"sqlite:///{out / 'study.db'}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    # every finished trial kept its per-item validation losses (float16), whose mean is its objective
    losses = {t.number: unpack_losses(t.user_attrs[ITEM_LOSSES]) for t in complete}
    assert all(np.mean(losses[t.number]) == pytest.approx(t.value, rel=2e-3, abs=1e-3) for t in complete)
    if result["best_trial"] == 0:  # the default was best: nothing to compare
        assert result["adopted"] == "default" and result["adopted_trial"] == 0 and not result["compared"]
    else:  # the paired comparison, recomputed from the stored losses, decides
        gain = losses[0] - losses[result["best_trial"]]
        z = gain.mean() / (gain.std(ddof=1) / np.sqrt(len(gain)))
        assert result["z_needed"] == pytest.approx(adoption_z(len(complete) - 1), abs=1e-3)
        assert result["adopted_trial"] == (result["best_trial"] if z > result["z_needed"] else 0)
    params = study.trials[result["adopted_trial"]].params  # the file holds the configuration tuning adopts
    assert best.text_model.architecture == params["text_model.architecture"]
    assert best.train.learning_rate == pytest.approx(params["train.learning_rate"])
    assert best.train.epochs == 4  # the rest of the base config is kept
    assert json.loads((out / "tuning.json").read_text())["best_trial"] == result["best_trial"]
    assert "| number |" in (out / "trials.md").read_text()


def check_beat_default(result: dict, out: Path) -> None:
    """beat_default is defined by the study's recorded trials: True exactly when the best complete trial's
    objective (validation loss, minimised) is lower than the default trial's. Read back from trials.csv and
    from the study database itself, not from the summary."""
    with (out / "trials.csv").open(newline="") as fh:
        recorded = list(csv.DictReader(fh))
    complete = [float(r["val_loss"]) for r in recorded if r["state"] == "COMPLETE"]
    default = [r for r in recorded if r["reference"] == "default"]
    assert len(default) == 1 and default[0]["state"] == "COMPLETE", default
    default_loss = float(default[0]["val_loss"])

    study = optuna.load_study(study_name="kiln-text", storage=f"sqlite:///{out / 'study.db'}")
    assert sorted(t.value for t in study.trials if t.state.name == "COMPLETE") == sorted(complete)
    assert [t.value for t in study.trials if t.user_attrs.get("reference") == "default"] == [default_loss]

    assert result["best_value"] == min(complete)
    assert float(recorded[result["best_trial"]]["val_loss"]) == min(complete)
    assert result["default_value"] == default_loss
    assert result["beat_default"] is (min(complete) < default_loss)


@pytest.mark.parametrize(
    "default_loss,others,beaten",
    [(0.5, [0.7, 0.4, 0.9], True), (0.5, [0.7, 0.6], False), (0.5, [0.5], False), (0.5, [], False)],
    ids=["a-trial-is-lower", "default-is-best", "a-tie-does-not-beat", "only-the-default"],
)
def test_beat_default_means_the_best_trial_is_strictly_lower_than_the_default(
    default_loss: float, others: list[float], beaten: bool
) -> None:
    from training.fit.tune import summary

    study = optuna.create_study(study_name="s", direction="minimize")
    study.add_trial(optuna.trial.create_trial(value=default_loss, user_attrs={"reference": "default"}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    for loss in others:
        study.add_trial(optuna.trial.create_trial(value=loss))
    result = summary(study)
    assert result["beat_default"] is beaten
    assert result["default_value"] == default_loss and result["best_value"] == min([default_loss, *others])
    assert study.trials[result["best_trial"]].value == result["best_value"]


def _study_with_item_losses(
    default: list[float] | None, *others: list[float], items: tuple[str, ...] = ()
) -> optuna.Study:
    """Trial 0 the default configuration (learning rate 0.01; None: it was pruned), then one trial per ``others``
    (rates 0.001, 0.002, ...), each with its per-item losses kept as run_trial keeps them, for ``items`` (default:
    the same items for every trial)."""
    from training.fit.tune import ITEM_LOSSES, ITEMS, pack_losses

    study = optuna.create_study(direction="minimize")
    rate = {"train.learning_rate": optuna.distributions.FloatDistribution(1e-4, 0.1)}
    if default is None:
        pruned = optuna.trial.TrialState.PRUNED
        study.add_trial(optuna.trial.create_trial(state=pruned, params={"train.learning_rate": 0.01},
                                                  distributions=rate, user_attrs={"reference": "default"}))  # fmt: skip
    runs = ([] if default is None else [default]) + list(others)
    for i, losses in enumerate(runs):
        reference = {"reference": "default"} if default is not None and i == 0 else {}
        number = i + (default is None)
        kept = {ITEM_LOSSES: pack_losses(np.asarray(losses)), ITEMS: items[i] if items else "same items"}
        study.add_trial(
            optuna.trial.create_trial(
                value=float(np.mean(losses)),
                params={"train.learning_rate": 0.01 if number == 0 else 0.001 * number},
                distributions=rate,
                user_attrs=reference | kept,
            )
        )
    return study


def test_the_best_trial_replaces_the_default_only_beyond_validation_noise() -> None:
    from training.fit.tune import adopted_trial, best_config, summary

    rng = np.random.default_rng(0)
    default = rng.exponential(0.5, 400)
    noise = rng.normal(0.0, 0.3, 400)
    se = 0.3 / np.sqrt(400)
    # 2.2 standard errors lower: clears the bar for one candidate, not for the best of nine
    lucky = default + noise - noise.mean() - 2.2 * se
    alone = _study_with_item_losses(default.tolist(), lucky.tolist())
    trial, why = adopted_trial(alone)
    assert trial.number == 1 and why["adopted"] == "best" and why["z_needed"] == pytest.approx(1.645, abs=1e-3)
    worse = [(default + 1.0).tolist()] * 8  # eight more candidates, all worse than the lucky one
    among_nine = _study_with_item_losses(default.tolist(), lucky.tolist(), *worse)
    trial, why = adopted_trial(among_nine)
    assert among_nine.best_trial.number == 1 and trial.number == 0
    assert why["adopted"] == "default" and why["compared"] and why["z_needed"] == pytest.approx(2.54, abs=0.01)
    assert 2.0 < why["gain"] / why["gain_se"] < why["z_needed"]
    assert best_config(among_nine, {}).train.learning_rate == 0.01  # the default's configuration is handed on
    result = summary(among_nine)
    assert result["beat_default"] and result["adopted"] == "default" and result["adopted_trial"] == 0
    # the same items, each a clear 0.1 lower: adopted however many candidates there were
    clear = _study_with_item_losses(default.tolist(), (default - 0.1 + rng.normal(0, 0.01, 400)).tolist(), *worse)
    trial, why = adopted_trial(clear)
    assert trial.number == 1 and why["adopted"] == "best" and why["gain"] > why["z_needed"] * why["gain_se"]
    assert best_config(clear, {}).train.learning_rate == 0.001
    # the default itself the best: nothing to compare
    trial, why = adopted_trial(_study_with_item_losses([0.1, 0.2], [0.5, 0.6]))
    assert trial.number == 0 and why["adopted"] == "default" and not why["compared"]


def test_per_item_losses_round_trip_compactly() -> None:
    from training.fit.tune import pack_losses, unpack_losses

    losses = np.random.default_rng(1).exponential(0.5, 1000)
    packed = pack_losses(losses)
    assert len(packed) < 3 * len(losses)  # ~2.7 bytes per item, where JSON floats take ~20
    assert np.allclose(unpack_losses(packed), losses, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "case",
    ["other items", "no per-item losses", "default pruned"],
)
def test_without_a_pairable_default_the_best_trial_is_handed_on_and_the_summary_says_why(case: str) -> None:
    """Trials scored on other validation items (another split), a study from before per-item losses were kept,
    or a default trial that did not finish: no paired comparison, the best trial, and the reason."""
    from training.fit.tune import ITEM_LOSSES, adopted_trial, summary

    if case == "other items":
        study = _study_with_item_losses([0.5, 0.6], [0.1, 0.2], items=("split A", "split B"))
    elif case == "default pruned":
        study = _study_with_item_losses(None, [0.3, 0.2])
    else:
        study = optuna.create_study(direction="minimize")
        for t in _study_with_item_losses([0.5, 0.6], [0.1, 0.2]).trials:
            attrs = {k: v for k, v in t.user_attrs.items() if k != ITEM_LOSSES}
            study.add_trial(optuna.trial.create_trial(value=t.value, params=t.params, distributions=t.distributions,
                                                      user_attrs=attrs))  # fmt: skip
    trial, why = adopted_trial(study)
    assert trial.number == study.best_trial.number == 1 and why["adopted"] == "best" and not why["compared"]
    assert why["not_compared"] and summary(study)["not_compared"] == why["not_compared"]


def test_a_resumed_study_runs_the_default_again_when_its_trial_was_cut_off(tmp_path: Path) -> None:
    """A run killed while trial 0 (the default) ran leaves it RUNNING in its own study; resuming records it as
    failed and queues the default again, so tuning still compares against it."""
    from training.config import RunConfig
    from training.fit.tune import StudyPlan, open_study

    space = {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    plan = StudyPlan(trials=3, space_path=tmp_path / "space.yaml")
    study, _ = open_study(RunConfig(), "text", tmp_path, plan)
    cut_off = study.ask()  # the enqueued default, never told: its process was killed
    assert cut_off.user_attrs["reference"] == "default"
    resumed, _ = open_study(RunConfig(), "text", tmp_path, StudyPlan(**{**plan.__dict__, "top_up": True}))
    states = [t.state.name for t in resumed.trials]
    assert states == ["FAIL", "WAITING"] and resumed.trials[1].user_attrs["reference"] == "default"
    # resuming again while the default waits queues nothing more
    again, _ = open_study(RunConfig(), "text", tmp_path, StudyPlan(**{**plan.__dict__, "top_up": True}))
    assert [t.state.name for t in again.trials] == ["FAIL", "WAITING"]


def test_bad_search_space_names_the_key(tmp_path: Path) -> None:
    from training.config import ConfigError
    from training.fit.tune import load_space

    path = tmp_path / "s.yaml"
    path.write_text("train.learning_rate: {type: float, low: 0.1}\n")
    with pytest.raises(ConfigError, match="train.learning_rate: a float entry needs low and high"):
        load_space(path, "text")
    path.write_text("train.learnin_rate: {type: categorical, choices: [0.1]}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_space(path, "text")


# ---------------------------------------------------------------- PostgreSQL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL 15 server on loopback, started with initdb/pg_ctl, stopped afterwards."""
    missing = [b for b in ("initdb", "pg_ctl") if shutil.which(b) is None]
    if missing:
        if os.environ.get("KILN_REQUIRE_POSTGRES"):
            pytest.fail(f"KILN_REQUIRE_POSTGRES is set but {missing} are not on PATH")
        pytest.skip(f"PostgreSQL server binaries {missing} are not installed")
    root = Path(tempfile.mkdtemp(prefix="kiln-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    run = lambda cmd: subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True)  # noqa: E731
    run(["initdb", "-D", str(data), "-A", "trust", "-U", "postgres"])
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root}"
    run(["pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"])
    try:
        run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "CREATE DATABASE optuna"])
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        run(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_one_study_in_postgresql(tmp_path: Path, postgres_url: str) -> None:
    data = write_csv(tmp_path / "t.csv", make_texts(30))
    (tmp_path / "c.yaml").write_text(FAST)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))

    def kiln_tune(name: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "flows.cli", "tune", "--task", "text", "--data", str(data), "--trials", "2",
               "--storage", postgres_url, "--study", "shared", "--config", str(tmp_path / "c.yaml"),
               "--space", str(tmp_path / "space.yaml"), "--out", str(tmp_path / name)]  # fmt: skip
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    workers = [kiln_tune("a"), kiln_tune("b")]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
        assert "trial(s) in study shared" in stdout
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= 4  # both processes' trials (plus a queued default one) in one study
    assert len({str(t.params) for t in finished}) >= 3  # the processes sampled differently
    assert sum(1 for t in study.trials if t.user_attrs.get("reference") == "default") >= 1


@pytest.mark.parametrize("task", ["image", "text"])
def test_default_space_holds_the_default_config_as_its_reference_trial(task: str) -> None:
    from training.fit.tune import DEFAULT_SPACES, default_params

    params = default_params(DEFAULT_SPACES[task], load_config(None), task)
    assert set(params) == set(DEFAULT_SPACES[task])  # the default is the first trial to beat
    assert params["train.learning_rate"] == {"image": 1e-3, "text": 3e-4}[task]  # the task's default rate


def test_a_failing_trial_is_recorded_as_failed_and_tuning_goes_on(tmp_path: Path) -> None:
    from training.fit.tune import make_study, run_trial

    space = {"train.learning_rate": {"type": "float", "low": 0.001, "high": 0.01}}
    study = make_study("s", f"sqlite:///{tmp_path / 'db.sqlite'}", "random", space, seed=0)

    def broken(cfg, callback):  # type: ignore[no-untyped-def]
        raise RuntimeError("out of memory")

    outcome = run_trial(study, space, {}, broken)
    assert outcome.state == "FAIL" and study.trials[0].state.name == "FAIL"
    assert run_trial(study, space, {}, lambda cfg, cb: (0.5, 0.8)).state == "COMPLETE"
