"""Export a tf_keras model to ONNX with tf2onnx.

>>> to_onnx(model, spec, Path("fp32.onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

from serving.preprocess import ImageSpec, Spec
from training.fit.tf_env import keras, tf

OPSET = 17


def input_signature(spec: Spec) -> tuple[tf.TensorSpec, ...]:
    """The model's ONNX input: float32 images (N, H, W, C) or int32 token ids (N, input_length)."""
    if isinstance(spec, ImageSpec):
        return (tf.TensorSpec((None, spec.height, spec.width, spec.channels), tf.float32, name="image"),)
    return (tf.TensorSpec((None, spec.input_length), tf.int32, name="tokens"),)


def to_onnx(model: keras.Model, spec: Spec, path: Path, opset: int = OPSET) -> Path:
    import tf2onnx  # heavy; only needed here

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_keras(model, input_signature=input_signature(spec), opset=opset, output_path=str(path))
    return path
