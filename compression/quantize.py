"""INT8 and FP16 ONNX variants with ONNX Runtime, and the checks and offline optimisation every variant gets.

Static QDQ with calibration for convolutional models (dynamic INT8 makes small CNNs several times slower:
ConvInteger). Text models are quantized three ways and the caller keeps the most faithful of them: static
QDQ fuses into QLinear kernels, dynamic quantizes activations on every call, and 8-bit embedding tables alone
keep every MatMul in float.

    >>> quantize_static_qdq(Path("fp32.onnx"), Path("int8.onnx"), calibration, "minmax")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import assert_never

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from compression.export import CALIBRATION_PREFIX
from training.config import CALIBRATION_METHODS as CALIBRATION_NAMES
from training.config import CalibrationName

log = logging.getLogger(__name__)


def calibration_method(name: CalibrationName) -> CalibrationMethod:
    """ORT's calibration method for a ``compress.calibration`` name. The names are training.config's; a name
    added there without a case here fails mypy (assert_never)."""
    if name == "minmax":
        return CalibrationMethod.MinMax
    if name == "entropy":
        return CalibrationMethod.Entropy
    if name == "percentile":
        return CalibrationMethod.Percentile
    assert_never(name)


CALIBRATION_METHODS: dict[CalibrationName, CalibrationMethod] = {
    name: calibration_method(name) for name in CALIBRATION_NAMES
}


class ArrayReader(CalibrationDataReader):
    """Feeds calibration samples to ORT in small batches. For minmax, ORT reads it one batch at a time
    (``set_range``, with ``CalibStridedMinMax`` 1) and reduces each batch's activations to ranges before the next
    runs: given all batches at once it holds every activation of every sample, several GiB on 64x64 photos.
    Min/max merge exactly across batches; the histograms of entropy and percentile would not (the first batch
    would fix the bins), so those still read every batch at once."""

    def __init__(self, input_name: str, samples: np.ndarray, batch_size: int = 16):
        self._batches = [{input_name: samples[i : i + batch_size]} for i in range(0, len(samples), batch_size)]
        self._next = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._next, None)

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = iter(self._batches[start_index:end_index])


def _input_name(path: Path) -> str:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].name


# The linear bag's arithmetic (training.models.layers.WeightedBag, the layer named wide_logits): its MatMul of
# normalised term weights by the gathered per-class weights is the whole linear model, and static QDQ would round
# both to 8 bits per tensor; its table is quantized at the Gather like every embedding.
BAG_NODES = "/wide_logits/"


def _float_nodes(path: Path) -> list[str]:
    """The output softmax and the calibration map before it (quantizing either would coarsen served scores), and
    the linear bag's arithmetic."""
    graph = onnx.load(str(path)).graph
    return [
        node.name
        for node in graph.node
        if node.op_type == "Softmax" or node.name.startswith(CALIBRATION_PREFIX) or BAG_NODES in node.name
    ]


def quantize_static_qdq(fp32: Path, out: Path, calibration: np.ndarray, method: CalibrationName = "minmax") -> Path:
    """Per-channel INT8 weights, UINT8 activations, QDQ format; activation ranges from ``calibration``
    by ``method`` (minmax, entropy or percentile: 99.999th, which ignores rare outliers).

    Softmax and the calibration map stay in float: a quantized output would round every served probability to
    1/255 steps.
    """
    if not len(calibration):
        raise ValueError("static INT8 needs calibration samples and there are none; set compress.calibration_samples")
    # minmax: one batch at a time (ArrayReader). Not CalibMaxIntermediateOutputs: ORT 1.31 drops the batches it
    # holds when that count is reached instead of reducing them, then fails with "No data is collected".
    strided = {"CalibStridedMinMax": 1} if method == "minmax" else {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            ArrayReader(_input_name(fp32), calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[method],
            nodes_to_exclude=_float_nodes(prepared),
            extra_options=strided,
        )
    return out


class _NoPreprocessAdvice(logging.Filter):
    """Drops ONNX Runtime's advice, logged on the root logger at every dynamic quantization, to run its
    pre-processing first: it is shape inference and graph fusion, which tf2onnx's optimizer has done for every
    exported graph, and it made two warnings with a URL in every text run's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing before quantization")


@contextlib.contextmanager
def _without_preprocess_advice() -> Iterator[None]:
    root, advice = logging.getLogger(), _NoPreprocessAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_dynamic_int8(fp32: Path, out: Path) -> Path:
    """INT8 weights, activations quantized at run time; Gather covers the embedding table."""
    with _without_preprocess_advice():
        quantize_dynamic(
            str(fp32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather", "Conv"]
        )
    return out


def quantize_embeddings_int8(fp32: Path, out: Path) -> Path:
    """8-bit embedding tables only: each Gather reads 8-bit rows and dequantizes just those; every MatMul and
    Conv stays float. The tables hold nearly all of a text model's bytes, and the float compute avoids
    quantizing activations on every call: on the SST-2 model, 5.0 MB gzipped against fp32's 20.4 MB at fp32's
    speed, where full dynamic and static INT8 ran 0.6-0.8 ms slower per batch of 32."""
    with _without_preprocess_advice():
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"])
    return out


def to_fp16(fp32: Path, out: Path) -> Path:
    """FP16 weights and compute with float32 inputs and outputs (for GPU serving: half the bytes, tensor
    cores). Softmax stays float32, so served probabilities keep their precision; the calibration map before it
    runs in fp16 like the logits it reads (blocking its nodes makes the converter write one Cast output twice)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True, op_block_list=["Softmax"]))
    model.topological_sort()  # the converter appends the input casts after the nodes that read them
    onnx.save(model.model, str(out))
    return out


def _grid_scale(weights: np.ndarray, levels: int = 127, tolerance: float = 1e-3) -> float | None:
    """The step of the symmetric INT8 grid that ``weights`` already lie on (QAT's fake-quantized
    kernels), or None. The largest magnitude is usually the 127th step; a weight that moved after the
    last range update can sit a few steps lower, so those are tried too."""
    top = float(np.max(np.abs(weights)))
    if top == 0.0:
        return None
    for steps in range(levels, levels - 8, -1):
        scale = top / steps
        q = weights / scale
        if np.max(np.abs(q - np.round(q))) <= tolerance:
            return scale
    return None


def store_weights_int8(path: Path) -> int:
    """Rewrite the float Conv/MatMul weights of a QAT export that lie on an INT8 grid (per output channel for
    Conv, per tensor for MatMul, as tfmot quantizes them) as INT8 initialisers behind DequantizeLinear.
    tf2onnx folds the weight fake-quantization into float constants: the file stays fp32-sized and ORT
    cannot fuse the QDQ pattern into integer kernels. Values are unchanged. Returns the weights rewritten."""
    model = onnx.load(str(path))
    graph = model.graph
    consumers = {(node.input[1], node.op_type) for node in graph.node if node.op_type in ("Conv", "MatMul")}
    by_name = {init.name: init for init in graph.initializer}
    rewritten, nodes = 0, []
    for name, op in sorted(consumers):
        if name not in by_name:
            continue
        w = numpy_helper.to_array(by_name[name])
        if op == "Conv":
            scales = [_grid_scale(w[c]) for c in range(w.shape[0])]
            if any(s is None for s in scales):
                continue
            scale = np.asarray(scales, dtype=np.float32)
            q = np.round(w / scale.reshape(-1, *([1] * (w.ndim - 1))))
        else:
            s = _grid_scale(w)
            if s is None:
                continue
            scale = np.asarray(s, dtype=np.float32)
            q = np.round(w / scale)
        q_name, s_name, z_name = f"{name}_int8", f"{name}_scale", f"{name}_zero_point"
        graph.initializer.remove(by_name[name])
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.clip(q, -127, 127).astype(np.int8), q_name),
                numpy_helper.from_array(scale, s_name),
                numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), z_name),
            ]
        )
        dequantize = onnx.helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [name])
        if op == "Conv":
            dequantize.attribute.append(onnx.helper.make_attribute("axis", 0))
        nodes.append(dequantize)
        rewritten += 1
    # Dequantized weights must exist before the nodes that read them: prepend.
    for node in reversed(nodes):
        graph.node.insert(0, node)
    onnx.save(model, str(path))
    return rewritten


def check_and_optimize(path: Path) -> None:
    """onnx.checker, then ORT's basic graph optimisations (constant folding, redundant nodes, portable
    fusions) saved into the file. Basic only: the extended level writes CPU-specific fused kernels that
    a CUDA session could not run; sessions still apply the full level when they load."""
    onnx.checker.check_model(str(path))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    optimized = path.with_name(path.stem + ".optimized.onnx")
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimized.replace(path)
