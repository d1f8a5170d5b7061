"""Kiln's training side: raw data to a trained Keras model, and the release of what compression made.

Rooms by stage (docs/ARCHITECTURE.md): ``data`` (ingest, clean, split, report: no TensorFlow), ``models``
(network families and the closed-form linear fits), ``fit`` (input pipeline, optimizers, training, tuning),
``release`` (evaluation, the promotion gate, registration). ``tasks`` holds what differs between image and text
classifiers; ``config`` the typed run configuration.
"""
