"""Image classifiers: folders or manifests of pictures in, a convolutional network out.

Heavy rooms (models, fitting, export) load on first use, so the data stage can ask this task for its
leakage, summary and plots without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.preprocess import ImageSpec, Spec
from training.config import DataConfig, RunConfig
from training.data import plots
from training.data.clean import clean_images
from training.data.dataset import Dataset
from training.data.features import encode_images, image_spec
from training.data.inspect import image_summary
from training.data.split import image_leakage

if TYPE_CHECKING:
    from training.models.kernel import KernelChoice
    from training.models.linear import LinearFit


class ImageTask:
    name = "image"
    # Small CNNs keep more accuracy with 3 pruning fine-tune epochs than 2.
    prune_epochs = 3
    # Dynamic INT8 makes small CNNs several times slower (ConvInteger): static QDQ only.
    int8_methods = ("static",)

    def load(
        self, path: Path, text_column: str | None, label_column: str | None, header: bool, cfg: DataConfig | None
    ) -> Dataset:
        return clean_images(path, cfg)

    def leakage(self, train: Dataset, other: Dataset, cfg: DataConfig) -> int:
        return image_leakage(train, other, cfg)

    def summary(self, dataset: Dataset, train: Dataset, test: Dataset, cfg: RunConfig) -> dict[str, Any]:
        return {"images": image_summary(dataset)}

    def plots(
        self, dataset: Dataset, train: Dataset, cfg: RunConfig, out: Path, pairs: list[tuple[int, int]]
    ) -> dict[str, Path]:
        from training.fit.augment import augmented_grid

        drawn = {"sizes": plots.image_sizes(dataset, out / "image_sizes.png")}
        if len(dataset):
            drawn["samples"] = plots.sample_grid(dataset, out / "samples.png")
            optional = {
                "augmented": augmented_grid(train, cfg, out / "augmented.png"),
                "near_duplicates": plots.near_duplicate_grid(dataset, pairs, out / "near_duplicates.png"),
            }
            drawn |= {name: path for name, path in optional.items() if path is not None}
        return drawn

    def make_spec(self, train: Dataset, labels: tuple[str, ...], cfg: RunConfig) -> Spec:
        return image_spec(train, labels, cfg)

    def encode(self, dataset: Dataset, spec: Spec) -> np.ndarray:
        assert isinstance(spec, ImageSpec)
        return encode_images(dataset, spec)

    def build_model(self, spec: Spec, cfg: RunConfig) -> Any:
        from training.models.image import build_image_model

        assert isinstance(spec, ImageSpec)
        return build_image_model(spec, cfg.image_model, cfg.train)

    def batches(self, dataset: Dataset, spec: Spec, cfg: RunConfig, train: bool) -> Any:
        from training.fit.pipeline import image_batches

        assert isinstance(spec, ImageSpec)
        return image_batches(dataset, spec, cfg, train)

    def fit_linear(
        self, train: Dataset, val: Dataset, spec: Spec, cfg: RunConfig, balanced: bool
    ) -> tuple[Spec, LinearFit | None]:
        return spec, None  # image models have no linear half

    def fit_beside(
        self, network: Any, train: Dataset, val: Dataset, spec: Spec, cfg: RunConfig, balanced: bool
    ) -> tuple[Any, KernelChoice | None]:
        """The RBF kernel model on the pixels, when it applies (training.fit.train.finish_kernel)."""
        from training.fit.train import finish_kernel

        assert isinstance(spec, ImageSpec)
        return finish_kernel(network, train, val, spec, cfg, balanced)

    def input_signature(self, spec: Spec) -> tuple[Any, ...]:
        from training.models.image import image_signature

        assert isinstance(spec, ImageSpec)
        return image_signature(spec)


IMAGE = ImageTask()
