"""Kiln compression: ONNX export, quantization, parity checks and per-variant evaluation."""
