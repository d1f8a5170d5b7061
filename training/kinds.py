"""The task protocol: what an image task and a text task each own, and the registry that finds one by name.

Stage code asks the task (``kind_of(dataset.task)``, ``kind_of(spec.kind)``) instead of branching on
``task == "image"``.
A new kind of task (tabular, multi-label...) is a new module under ``training/tasks/`` that implements
``TaskKind``, plus one line in ``KINDS``.

The registry names implementations by import path, loaded on first use: the data room can ask a task for its
data-side behaviour (leakage, summary, plots) without importing the model and fitting rooms the task also
speaks for, and TensorFlow loads only when a model is built.

    >>> kind_of("text").name
    'text'
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from serving.preprocess import Spec
    from training.config import DataConfig, RunConfig
    from training.data.dataset import Dataset
    from training.models.kernel import KernelChoice
    from training.models.linear import LinearFit

# Task name -> "module:attribute" of its TaskKind. The same names as serving.store.TASKS (a test checks).
KINDS = {
    "image": "training.tasks.image:IMAGE",
    "text": "training.tasks.text:TEXT",
}


class UnknownTask(ValueError):
    """A task name no implementation is registered for."""


class TaskKind(Protocol):
    """What differs between kinds of classifier, from raw data to the exported graph."""

    name: str
    # Pruning fine-tune epochs when compress.prune_epochs is unset.
    prune_epochs: int
    # ONNX Runtime INT8 methods to try: static QDQ for convolutional models, plus dynamic and INT8 embedding tables
    # alone (compression.quantize.quantize_embeddings_int8) for embedding-heavy ones.
    int8_methods: tuple[str, ...]

    # Data stage (no TensorFlow).
    def load(
        self, path: Path, text_column: str | None, label_column: str | None, header: bool, cfg: DataConfig | None
    ) -> Dataset: ...

    def leakage(self, train: Dataset, other: Dataset, cfg: DataConfig) -> int: ...

    def summary(self, dataset: Dataset, train: Dataset, test: Dataset, cfg: RunConfig) -> dict[str, Any]: ...

    def plots(
        self, dataset: Dataset, train: Dataset, cfg: RunConfig, out: Path, pairs: list[tuple[int, int]]
    ) -> dict[str, Path]: ...

    def make_spec(self, train: Dataset, labels: tuple[str, ...], cfg: RunConfig) -> Spec: ...

    def encode(self, dataset: Dataset, spec: Spec) -> np.ndarray: ...

    # Model and fitting.
    def build_model(self, spec: Spec, cfg: RunConfig) -> Any: ...  # a tf_keras Model

    def batches(self, dataset: Dataset, spec: Spec, cfg: RunConfig, train: bool) -> Any: ...

    def fit_linear(
        self, train: Dataset, val: Dataset, spec: Spec, cfg: RunConfig, balanced: bool
    ) -> tuple[Spec, LinearFit | None]: ...

    def fit_beside(
        self, network: Any, train: Dataset, val: Dataset, spec: Spec, cfg: RunConfig, balanced: bool
    ) -> tuple[Any, KernelChoice | None]: ...  # a closed-form model beside the trained network; what ships

    def input_signature(self, spec: Spec) -> tuple[Any, ...]: ...


@cache
def kind_of(task: str) -> TaskKind:
    """The TaskKind registered for ``task`` ('image', 'text', or any name in KINDS)."""
    try:
        module, attribute = KINDS[task].split(":")
    except KeyError:
        raise UnknownTask(f"unknown task {task!r}; expected one of: {', '.join(KINDS)}") from None
    kind: TaskKind = getattr(importlib.import_module(module), attribute)
    return kind
