"""The task protocol: one registered kind per task name, each implementing every method the stages ask."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from flows.cli import Task as CliTask
from serving.store import TASKS
from training.kinds import KINDS, TaskKind, UnknownTask, kind_of


def test_every_served_task_has_exactly_one_kind_and_the_cli_offers_them_all() -> None:
    assert set(KINDS) == set(TASKS) == {t.value for t in CliTask}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_implements_the_whole_protocol(name: str) -> None:
    kind = kind_of(name)
    assert kind.name == name
    wanted = {n for n, member in vars(TaskKind).items() if inspect.isfunction(member) and not n.startswith("_")}
    assert wanted <= {n for n in dir(kind) if callable(getattr(kind, n))}
    for method in wanted:  # same parameters as the protocol, so a stage can call any kind the same way
        expected = list(inspect.signature(getattr(TaskKind, method)).parameters)[1:]
        assert list(inspect.signature(getattr(kind, method)).parameters) == expected, method
    assert kind.prune_epochs >= 1 and kind.int8_methods
    assert set(kind.int8_methods) <= {"static", "dynamic", "embeddings"}


def test_an_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(UnknownTask, match="'audio'.*image, text"):
        kind_of("audio")


def test_asking_a_kind_for_data_work_does_not_import_tensorflow() -> None:
    """The data stage asks the kind for leakage, summaries and specs: that must not start TensorFlow."""
    code = (
        "import sys; from training.kinds import kind_of; "
        "[kind_of(k) for k in ('image', 'text')]; "
        "import training.data.split, training.data.inspect, training.data.clean; "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
