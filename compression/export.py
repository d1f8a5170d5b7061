"""Export a tf_keras model to ONNX with tf2onnx, with the run's calibration map built into the graph.

>>> to_onnx(model, spec, Path("fp32.onnx"), calibration={"link": "temperature", "temperature": 1.3})  # doctest: +SKIP
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
from training.models.calibration import LEAK, LINKS
from training.tf_env import keras

OPSET = 17
# The node that divides the logits by the temperature, just before the output softmax. Static INT8 leaves it and
# the softmax in float (the logits feeding it are still quantized, as they were before it existed).
TEMPERATURE_NODE = "kiln_temperature"
INVERSE_TEMPERATURE = "kiln_inverse_temperature"  # the initializer the temperature node multiplies by
# The sigmoid link's nodes and initializers (training.models.calibration) all start so; the first reads the logits.
LINK_PREFIX = "kiln_link"
CALIBRATION_PREFIX = "kiln_"  # every node and initializer the calibration map adds: static INT8 leaves them float


def to_onnx(
    model: keras.Model, spec: Spec, path: Path, opset: int = OPSET, calibration: dict[str, Any] | None = None
) -> Path:
    """``model`` as an ONNX file at ``path``; with ``calibration`` (training.models.calibration's map), its
    output is the calibrated softmax."""
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
    return path if calibration is None else with_calibration(path, calibration)


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


def with_calibration(path: Path, calibration: dict[str, Any]) -> Path:
    """Rewrite the ONNX file at ``path`` so its softmax reads the calibrated logits (training.models.calibration):
    the sigmoid link's elementwise nodes where ``calibration["link"]`` is ``sigmoid``, then a Mul by 1/T (one
    scalar) where T is not 1. Done once per exported graph; variants made from that file (INT8, FP16) inherit it."""
    temperature, link = float(calibration["temperature"]), calibration.get("link", "temperature")
    if temperature <= 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    if link not in LINKS:
        raise ValueError(f"unknown calibration link {link!r}; expected one of {', '.join(LINKS)}")
    model = onnx.load(str(path))
    graph = model.graph
    if any(node.name.startswith(CALIBRATION_PREFIX) for node in graph.node):
        raise ValueError(f"{path.name} already has a calibration map")
    softmax = output_softmax(graph)
    at = list(graph.node).index(softmax)
    nodes: list[onnx.NodeProto] = []
    logits = softmax.input[0]
    if link == "sigmoid":
        link_nodes, logits = _sigmoid_link(graph, logits, calibration)
        nodes += link_nodes
    if temperature != 1.0:  # ORT's optimizer would drop a Mul by 1, and without_calibration looks for whole maps
        graph.initializer.append(_scalar(INVERSE_TEMPERATURE, 1.0 / temperature))
        scaled = f"{softmax.input[0]}/temperature"
        nodes.append(helper.make_node("Mul", [logits, INVERSE_TEMPERATURE], [scaled], name=TEMPERATURE_NODE))
        logits = scaled
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    softmax.input[0] = logits
    onnx.save(model, str(path))
    return path


def _scalar(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name=name)


# The nodes of each part of a calibration map, the one reading the logits first and the one the softmax reads last.
LINK_NODES = tuple(
    f"{LINK_PREFIX}_{part}" for part in ("scale", "add_shift", "negate", "softplus", "leak_scale", "out")
)
MAP_PARTS = (LINK_NODES, (TEMPERATURE_NODE,))


def _sigmoid_link(graph: onnx.GraphProto, logits: str, calibration: dict[str, Any]) -> tuple[list[Any], str]:
    """Nodes computing log_sigmoid(u) + LEAK * u for u = slope * logits + shift (log_sigmoid as -softplus(-u),
    exact in float32 where 1 - sigmoid(u) is not), and the name of their output."""
    slope, shift = float(calibration["slope"]), float(calibration["shift"])
    if not (slope > 0 and np.isfinite(slope) and np.isfinite(shift)):
        raise ValueError(f"the sigmoid link needs a positive slope and a finite shift, got {slope} and {shift}")
    p = LINK_PREFIX
    graph.initializer.extend([_scalar(f"{p}_slope", slope), _scalar(f"{p}_shift", shift), _scalar(f"{p}_leak", LEAK)])
    scale, add_shift, negate, softplus, leak_scale, out = LINK_NODES
    nodes = [
        helper.make_node("Mul", [logits, f"{p}_slope"], [f"{p}/scaled"], name=scale),
        helper.make_node("Add", [f"{p}/scaled", f"{p}_shift"], [f"{p}/u"], name=add_shift),
        helper.make_node("Neg", [f"{p}/u"], [f"{p}/minus_u"], name=negate),
        helper.make_node("Softplus", [f"{p}/minus_u"], [f"{p}/softplus"], name=softplus),
        helper.make_node("Mul", [f"{p}/u", f"{p}_leak"], [f"{p}/leak"], name=leak_scale),
        helper.make_node("Sub", [f"{p}/leak", f"{p}/softplus"], [f"{p}/out"], name=out),
    ]
    return nodes, f"{p}/out"


def without_calibration(data: bytes) -> bytes:
    """The ONNX graph ``data`` with its calibration map taken out, for the scores "without calibration": each
    part's nodes removed and what read the part's output reading its input. Undoing the map from the served
    probabilities cannot give them: with a small T most float32 scores are exactly 0 or 1, and the logits behind
    them are gone. Every variant keeps the map's nodes by name (INT8 leaves them alone, FP16 casts their scalars
    and may add a Cast after them); a graph without a map comes back as it is."""
    model = onnx.load_from_string(data)
    graph = model.graph
    by_name = {node.name: node for node in graph.node}
    changed = False
    for names in MAP_PARTS:
        present = [by_name[name] for name in names if name in by_name]
        if not present:
            continue
        if len(present) != len(names):
            missing = sorted(set(names) - set(by_name))
            raise ValueError(f"the graph's calibration map lacks {', '.join(missing)} (an optimizer fused it?)")
        source, out = present[0].input[0], present[-1].output[0]
        for node in graph.node:
            if node.name not in names:
                for i, name in enumerate(node.input):
                    if name == out:
                        node.input[i] = source
        for node in present:
            graph.node.remove(node)
        changed = True
    if not changed:
        return data
    read = {name for node in graph.node for name in node.input}
    for initializer in [i for i in graph.initializer if i.name.startswith(CALIBRATION_PREFIX) and i.name not in read]:
        graph.initializer.remove(initializer)
    return bytes(model.SerializeToString())
