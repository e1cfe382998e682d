"""The baseline benchmark's smoke run, from a fresh copy of the repository (`benchmarks.baseline --smoke`)."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import is_fraction, run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_baseline_benchmark_smoke_run_from_a_fresh_copy(tmp_path):
    figures = run_benchmark_smoke("baseline", tmp_path)
    for key in ("random_acc", "random_f1", "random_sklearn_acc", "random_sklearn_f1", "temporal_acc",
                "temporal_f1", "temporal_sklearn_acc"):  # fmt: skip
        assert is_fraction(figures[key]), (key, figures[key])
    assert figures["random_acc"] > 0.7 and figures["random_sklearn_acc"] > 0.7  # far above chance on real mail
    assert figures["rows_train"] + figures["rows_test"] == figures["emails"] > 0
    assert figures["train_s"] > 0 and figures["sklearn_train_s"] > 0 and figures["infer_emails_per_s"] > 0
    assert figures["train_ratio"] == pytest.approx(figures["train_s"] / figures["sklearn_train_s"], rel=0.01)
