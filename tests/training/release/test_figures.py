"""The run's training figures stay a bounded picture however many classes a task has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.data.plots import DPI
from training.release.figures import MAX_CONFUSION_INCHES, confusion_plot


def test_the_confusion_matrix_grows_with_the_classes_up_to_a_bound(tmp_path: Path) -> None:
    sides = {}
    for classes in (3, 20, 150):
        matrix = np.random.default_rng(classes).integers(0, 30, (classes, classes))
        labels = tuple(f"intent_number_{i}" for i in range(classes))
        with Image.open(confusion_plot(matrix, labels, tmp_path / f"confusion_{classes}.png")) as image:
            assert image.size[0] == image.size[1]
            sides[classes] = image.size[0]
    assert sides[3] < sides[20] < sides[150]
    # 150 classes at 0.45 inch each would be a 69.5-inch, 5,560-pixel square (1.1 GiB to draw)
    assert sides[150] <= MAX_CONFUSION_INCHES * DPI
