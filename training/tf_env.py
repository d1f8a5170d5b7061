"""The one way Kiln imports TensorFlow: legacy Keras 2 (tf_keras), which tfmot and tf2onnx need.

``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is first imported, so every module that needs
TensorFlow imports it from here:

    >>> from training.tf_env import keras, tf  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide oneDNN/CUDA banner lines on every import

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

log = logging.getLogger(__name__)


class _NoRetracingNotice(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls ... triggered tf.function retracing" notice. A run builds
    several models (joint and linear, selection and refit, export) and predicts with each once or twice; every
    model's first predict traces its own function, and TensorFlow counts those traces across models, so a
    normal text run printed the notice, with its advice about loops, twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingNotice())

__all__ = ["keras", "tf", "configure_devices", "distribution", "is_chief", "set_seed", "use_mixed_precision"]


def configure_devices() -> str:
    """Use a GPU when one is present (memory grows on demand); return a description for logs."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError):  # already initialised by an earlier run in this process
            tf.config.experimental.set_memory_growth(gpu, True)
    device = f"GPU x{len(gpus)}" if gpus else "CPU"
    log.info("training on %s", device)
    return device


def distribution(mode: str) -> tuple[tf.distribute.Strategy, str]:
    """The distribution strategy for ``train.distribute`` and a description.

    ``auto``: MirroredStrategy when more than one GPU is visible, else the default (one device);
    ``mirrored``: MirroredStrategy over every visible GPU, or every logical CPU device when there is no
    GPU (how tests exercise the path); ``none``: one device. Across machines, MultiWorkerMirroredStrategy
    reads TF_CONFIG (README, "Training on several machines").
    """
    gpus = tf.config.list_physical_devices("GPU")  # does not start the runtime
    if mode == "none" or (mode == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy(), "one device"
    if os.environ.get("TF_CONFIG"):
        # Collective ops must be set up before the runtime starts: create this before anything else.
        return tf.distribute.MultiWorkerMirroredStrategy(), "MultiWorkerMirroredStrategy (TF_CONFIG)"
    logical = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    devices = [d.name for d in logical]
    return tf.distribute.MirroredStrategy(devices), f"MirroredStrategy over {len(devices)} device(s)"


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a worker other than worker 0 (or a non-chief role).
    Only the chief compresses and registers; the other workers only help train."""
    import json

    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    role = config.get("task", {})
    if not role:
        return True
    return role.get("type") == "chief" or (
        role.get("type") == "worker" and int(role.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})
    )


def use_mixed_precision(mode: str) -> bool:
    """``train.mixed_precision``: ``auto`` turns mixed_float16 on only where a GPU is present."""
    return mode == "on" or (mode == "auto" and bool(tf.config.list_physical_devices("GPU")))


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def precision(policy: str) -> Iterator[None]:
    """Build models under a Keras dtype policy, then restore float32 for whatever is built next."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")
