"""The privacy benchmark's smoke run, from a fresh copy (`benchmarks.privacy --smoke`): its step probe reads the
corpus itself (no `data/02_intermediate` from an earlier `make run`) and answers within its timeout."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import is_fraction, run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_privacy_benchmark_smoke_run_from_a_fresh_copy(tmp_path):
    figures = run_benchmark_smoke("privacy", tmp_path)
    assert set(figures["acc_by_epsilon"]) == {"1", "inf"}
    assert all(is_fraction(value) for value in figures["acc_by_epsilon"].values())
    assert 0 < figures["epsilon_spent"]["1"] <= 1.0 + 1e-6 and figures["epsilon_spent"]["inf"] is None
    assert figures["utility_ratio_eps1"] == pytest.approx(
        figures["acc_by_epsilon"]["1"] / figures["acc_by_epsilon"]["inf"], abs=1e-3
    )
    for key in ("mia_auc_eps1", "mia_auc_nonprivate", "lira_auc_eps1", "lira_auc_nonprivate"):
        assert is_fraction(figures[key]), (key, figures[key])
    steps = figures["step_seconds_cpu"]
    assert steps["dp"] > 0 and steps["nonprivate"] > 0 and figures["step_ratio_cpu"] > 0
    assert figures["lira_shadows"] == 2 and figures["train_rows"] > figures["test_rows"] > 0
