"""INT8 quantization with ONNX Runtime.

Static QDQ with calibration data for convolutional models: dynamic INT8 makes small CNNs several
times slower (ConvInteger). Dynamic for embedding/dense-heavy text models, which need no calibration.

    >>> quantize_static_qdq(Path("fp32.onnx"), Path("int8.onnx"), calibration)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

log = logging.getLogger(__name__)


class ArrayReader(CalibrationDataReader):
    """Feeds calibration samples to ORT in small batches."""

    def __init__(self, input_name: str, samples: np.ndarray, batch_size: int = 16):
        self._batches = iter([{input_name: samples[i : i + batch_size]} for i in range(0, len(samples), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _input_name(path: Path) -> str:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].name


def _softmax_nodes(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Softmax"]


def quantize_static_qdq(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """Per-channel INT8 weights, UINT8 activations, QDQ format, MinMax calibration.

    Softmax stays in float: a quantized output would round every served probability to 1/255 steps.
    """
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
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=_softmax_nodes(prepared),
        )
    return out


def quantize_dynamic_int8(fp32: Path, out: Path) -> Path:
    """INT8 weights, activations quantized at run time; Gather covers the embedding table."""
    quantize_dynamic(
        str(fp32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather", "Conv"]
    )
    return out
