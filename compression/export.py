"""Export a tf_keras model to ONNX with tf2onnx, with the run's calibration temperature built into the graph.

>>> to_onnx(model, spec, Path("fp32.onnx"), temperature=1.3)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from serving.preprocess import Spec
from training.kinds import kind_of
from training.tf_env import keras

OPSET = 17
# The node that divides the logits by the temperature, just before the output softmax. Static INT8 leaves it and
# the softmax in float (the logits feeding it are still quantized, as they were before it existed).
TEMPERATURE_NODE = "kiln_temperature"


def to_onnx(model: keras.Model, spec: Spec, path: Path, opset: int = OPSET, temperature: float | None = None) -> Path:
    """``model`` as an ONNX file at ``path``; with ``temperature``, its output is softmax(logits / temperature)."""
    import tf2onnx  # heavy; only needed here

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    signature = kind_of(spec.kind).input_signature(spec)
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset, output_path=str(path))
    return path if temperature is None else with_temperature(path, temperature)


def output_softmax(graph: onnx.GraphProto) -> onnx.NodeProto:
    """The Softmax node whose result is the graph's output (through Identity nodes, as tf2onnx may add)."""
    producer = {out: node for node in graph.node for out in node.output}
    name = graph.output[0].name
    while (node := producer.get(name)) is not None and node.op_type == "Identity":
        name = node.input[0]
    if node is None or node.op_type != "Softmax":
        raise ValueError(f"the graph's output {graph.output[0].name!r} is not made by a Softmax; cannot calibrate it")
    return node


def with_temperature(path: Path, temperature: float) -> Path:
    """Rewrite the ONNX file at ``path`` so its softmax reads logits / ``temperature`` (a Mul by 1/T, one
    scalar). Done once per exported graph; variants made from that file (INT8, FP16) inherit it."""
    if temperature <= 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    model = onnx.load(str(path))
    graph = model.graph
    if any(node.name == TEMPERATURE_NODE for node in graph.node):
        raise ValueError(f"{path.name} already has a temperature")
    softmax = output_softmax(graph)
    logits, scaled = softmax.input[0], f"{softmax.input[0]}/temperature"
    inverse = numpy_helper.from_array(np.array(1.0 / temperature, dtype=np.float32), name="kiln_inverse_temperature")
    graph.initializer.append(inverse)
    node = helper.make_node("Mul", [logits, inverse.name], [scaled], name=TEMPERATURE_NODE)
    softmax.input[0] = scaled
    graph.node.insert(list(graph.node).index(softmax), node)
    onnx.save(model, str(path))
    return path
