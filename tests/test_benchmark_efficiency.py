"""The model-zoo benchmark's smoke run, from a fresh copy of the repository (`benchmarks.efficiency --smoke`)."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import is_fraction, run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_efficiency_benchmark_smoke_run_from_a_fresh_copy(tmp_path):
    figures = run_benchmark_smoke("efficiency", tmp_path)
    for key in ("bag_acc", "pretrained_frozen_acc", "hybrid_acc", "dp_acc_eps1", "nonprivate_acc"):
        assert is_fraction(figures[key]), key
    assert figures["dp_best_kind"] in ("ngram_bag", "pretrained", "hybrid")
    assert figures["utility_ratio_eps1"] == pytest.approx(figures["dp_acc_eps1"] / figures["nonprivate_acc"], abs=1e-3)
    assert figures["embed_emails_per_s_cpu"] > 0
    assert {r["kind"] for r in figures["runs"]} == {"ngram_bag", "pretrained", "hybrid"}
    assert all(0 < r["epsilon"] <= 1.0 + 1e-6 for r in figures["runs"] if r["private"])
    assert figures["adapter_acc"] is None and figures["dswa_speedup_8k"] is None  # not built: null, never faked
