"""Export a tf_keras model to ONNX with tf2onnx, with the run's calibration temperature built into the graph.

>>> to_onnx(model, spec, Path("fp32.onnx"), temperature=1.3)  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
INVERSE_TEMPERATURE = "kiln_inverse_temperature"  # the initializer the temperature node multiplies by


def to_onnx(model: keras.Model, spec: Spec, path: Path, opset: int = OPSET, temperature: float | None = None) -> Path:
    """``model`` as an ONNX file at ``path``; with ``temperature``, its output is softmax(logits / temperature)."""
    import tf2onnx  # heavy; only needed here

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    signature = kind_of(spec.kind).input_signature(spec)
    gc.collect()
    gc.freeze()  # what exists now (TensorFlow, the model) is not garbage: the collections below skip it
    try:
        tf2onnx.convert.from_keras(
            model, input_signature=signature, opset=opset, output_path=str(path), optimizers=_collecting_optimizers()
        )
    finally:
        gc.unfreeze()
    return path if temperature is None else with_temperature(path, temperature)


def _collecting_optimizers() -> OrderedDict[str, Callable[[], Any]]:
    """tf2onnx's own optimizer passes, in its order, each preceded by a garbage collection.

    tf2onnx deep-copies the whole graph, constants included, before every pass of every round, and its graphs
    hold reference cycles, so the copies wait for a rare full collection: exporting a 26 MB text model grew the
    process by 1.4 GiB at the peak and kept up to 0.5 GiB of it per export. Collecting as each pass starts
    (after tf2onnx's copy for it) keeps about three copies alive (measured on the same model: peak +0.5 GiB,
    nothing kept). Same passes, same graph.
    ``to_onnx`` freezes the objects that existed before the export, so each collection walks only the export's
    own: 1.4-3.3 s per export, against 4-9 s for tf2onnx as is and 17 s collecting without the freeze."""
    from tf2onnx import optimizer

    def collected(factory: Callable[[], Any]) -> Callable[[], Any]:
        def make() -> Any:
            gc.collect()
            return factory()

        return make

    # _get_optimizers is the list from_keras applies when given none (tf2onnx is pinned in pyproject.toml)
    return OrderedDict((name, collected(factory)) for name, factory in optimizer._get_optimizers().items())


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
    inverse = numpy_helper.from_array(np.array(1.0 / temperature, dtype=np.float32), name=INVERSE_TEMPERATURE)
    graph.initializer.append(inverse)
    node = helper.make_node("Mul", [logits, inverse.name], [scaled], name=TEMPERATURE_NODE)
    softmax.input[0] = scaled
    graph.node.insert(list(graph.node).index(softmax), node)
    onnx.save(model, str(path))
    return path


def without_temperature(data: bytes) -> bytes:
    """The ONNX graph ``data`` with its built-in temperature set to 1, for the scores "without T". Undoing T from
    the served probabilities cannot give them: with a small T most float32 scores are exactly 0 or 1, and the
    logits behind them are gone. Every variant keeps the initializer (INT8 leaves the node alone, FP16 casts it);
    a graph without a temperature comes back as it is."""
    model = onnx.load_from_string(data)
    for initializer in model.graph.initializer:
        if initializer.name == INVERSE_TEMPERATURE:
            dtype = numpy_helper.to_array(initializer).dtype
            initializer.CopyFrom(numpy_helper.from_array(np.array(1.0, dtype=dtype), name=INVERSE_TEMPERATURE))
            return bytes(model.SerializeToString())
    return data
