"""Export a tf_keras model to ONNX with tf2onnx.

>>> to_onnx(model, spec, Path("fp32.onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

from serving.preprocess import Spec
from training.kinds import kind_of
from training.tf_env import keras

OPSET = 17


def to_onnx(model: keras.Model, spec: Spec, path: Path, opset: int = OPSET) -> Path:
    import tf2onnx  # heavy; only needed here

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    signature = kind_of(spec.kind).input_signature(spec)
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset, output_path=str(path))
    return path
