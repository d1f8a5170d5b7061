"""Text classifiers: a table of texts and labels in; a network over word, bigram and character n-gram ids,
with a closed-form linear half (wide & deep), out.

Heavy rooms (models, fitting) load on first use, so the data stage can ask this task for its leakage,
summary and plots without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.preprocess import Spec, TextSpec, encode_texts
from training.config import DataConfig, RunConfig
from training.data import plots
from training.data.clean import clean_texts
from training.data.dataset import Dataset
from training.data.features import text_spec
from training.data.inspect import text_summary
from training.data.split import text_leakage

if TYPE_CHECKING:
    from training.models.kernel import KernelChoice
    from training.models.linear import LinearFit


class TextTask:
    name = "text"
    # Text models stop early after a few epochs and overfit when fine-tuned longer (SUBJ, MR, AG News: 2 epochs
    # kept 0.4-0.5 more validation points than 3).
    prune_epochs = 2
    # Embedding-heavy graphs: static QDQ, dynamic INT8 and INT8 embedding tables alone (float compute) are each
    # measured, the fastest kept at equal accuracy; the embedding-only form usually serves at fp32's speed.
    int8_methods = ("static", "dynamic", "embeddings")

    def load(
        self, path: Path, text_column: str | None, label_column: str | None, header: bool, cfg: DataConfig | None
    ) -> Dataset:
        return clean_texts(path, text_column, label_column, header)

    def leakage(self, train: Dataset, other: Dataset, cfg: DataConfig) -> int:
        return text_leakage(train, other, cfg)

    def summary(self, dataset: Dataset, train: Dataset, test: Dataset, cfg: RunConfig) -> dict[str, Any]:
        return {"texts": text_summary(dataset, train, test, cfg)}

    def plots(
        self, dataset: Dataset, train: Dataset, cfg: RunConfig, out: Path, pairs: list[tuple[int, int]]
    ) -> dict[str, Path]:
        return {"lengths": plots.text_lengths(dataset, out / "text_lengths.png")}

    def make_spec(self, train: Dataset, labels: tuple[str, ...], cfg: RunConfig) -> Spec:
        return text_spec(train, labels, cfg)

    def encode(self, dataset: Dataset, spec: Spec) -> np.ndarray:
        assert isinstance(spec, TextSpec)
        return encode_texts(dataset.inputs, spec)

    def build_model(self, spec: Spec, cfg: RunConfig) -> Any:
        from training.models.text import build_text_model

        assert isinstance(spec, TextSpec)
        return build_text_model(spec, cfg.text_model, cfg.train)

    def batches(self, dataset: Dataset, spec: Spec, cfg: RunConfig, train: bool) -> Any:
        from training.fit.pipeline import text_batches

        assert isinstance(spec, TextSpec)
        return text_batches(dataset, spec, cfg, train)

    def fit_linear(
        self, train: Dataset, val: Dataset, spec: Spec, cfg: RunConfig, balanced: bool
    ) -> tuple[Spec, LinearFit | None]:
        """The closed-form linear half of wide & deep, when ``text_model.wide`` (training.fit.train.fit_wide)."""
        from training.fit.train import fit_wide

        assert isinstance(spec, TextSpec)
        if not cfg.text_model.wide:
            return spec, None
        return fit_wide(train, val, spec, cfg, balanced)

    def fit_beside(
        self, network: Any, train: Dataset, val: Dataset, spec: Spec, cfg: RunConfig, balanced: bool
    ) -> tuple[Any, KernelChoice | None]:
        return network, None  # the text model's closed-form half is inside it (fit_linear)

    def input_signature(self, spec: Spec) -> tuple[Any, ...]:
        from training.models.text import text_signature

        assert isinstance(spec, TextSpec)
        return text_signature(spec)


TEXT = TextTask()
