"""Kiln serving: ONNX Runtime sessions behind a BentoML service. Never imports TensorFlow."""
