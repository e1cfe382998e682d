"""Benchmarks: one module per claim, ``python -m benchmarks.<name>`` (see docs/benchmarks.md)."""
