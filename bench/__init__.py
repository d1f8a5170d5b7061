"""Kiln's benchmarks (not installed, not in any image): each writes JSON under docs/bench/, and
``python -m bench.render`` turns those files into docs/BENCHMARKS.md."""
