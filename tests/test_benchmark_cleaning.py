"""The label-cleaning benchmark's smoke run, from a fresh copy of the repository (`benchmarks.cleaning --smoke`)."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import is_fraction, run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_cleaning_benchmark_smoke_run_from_a_fresh_copy(tmp_path):
    figures = run_benchmark_smoke("cleaning", tmp_path)
    results = {f"{r['kind']}{round(r['noise'] * 100)}": r for r in figures["results"]}
    assert set(results) == {"sym20", "asym20"}
    for key in ("precision_sym20", "recall_sym20", "reference_precision_sym20", "reference_recall_sym20"):
        assert is_fraction(figures[key]), (key, figures[key])
    for result in results.values():
        for key in ("acc_clean", "acc_noisy", "acc_cleaned", "acc_relabelled"):
            assert is_fraction(result[key]), (key, result[key])
        assert 0 < result["flipped"] < figures["train_rows"] and 0 <= result["flagged"] <= figures["train_rows"]
        assert result["relabelled_rows"] <= result["flagged"]
    sym20 = results["sym20"]
    assert sym20["flipped"] == pytest.approx(0.2 * figures["train_rows"], abs=2)  # exactly 20% of each class
    suspects = figures["real_label_suspects"]
    assert len(suspects) <= 10 and all(s["given"] != s["suggested"] for s in suspects)
