"""The DP signal probe's smoke run, from a fresh copy of the repository (`benchmarks.dp_signal --smoke`)."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import is_fraction, run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_dp_signal_benchmark_smoke_run_from_a_fresh_copy(tmp_path):
    figures = run_benchmark_smoke("dp_signal", tmp_path)
    runs = figures["runs"]
    assert [r["n"] for r in runs] == [100, 300] and all(r["task"] == "binary" and r["width"] == 1 for r in runs)
    for run in runs:
        assert is_fraction(run["dev_accuracy"]) and is_fraction(run["majority"]) and run["bound"] > 0
    assert runs[1]["bound"] > runs[0]["bound"]  # more rows, more signal against the same noise
    assert runs[0]["distinct_predictions"] == 1  # 100 rows at epsilon 1: one class predicted (the point)
