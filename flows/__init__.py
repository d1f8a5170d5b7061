"""Kiln flows: the Prefect retrain flow, its wiring of the stages, and the `kiln` CLI."""
