"""The weak-labelling benchmark's smoke run, from a fresh copy of the repository (`benchmarks.weak_labels --smoke`)."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import is_fraction, run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_weak_labels_benchmark_smoke_run_from_a_fresh_copy(tmp_path):
    figures = run_benchmark_smoke("weak_labels", tmp_path)
    for key in ("coverage", "label_model_acc", "majority_vote_acc", "end_model_acc_weak", "end_model_acc_weak_soft",
                "end_model_acc_weak_filtered", "end_model_acc_supervised", "sklearn_acc_weak",
                "sklearn_acc_supervised", "dev_label_model_acc"):  # fmt: skip
        assert is_fraction(figures[key]), (key, figures[key])
    assert figures["weak_over_supervised"] == pytest.approx(
        figures["end_model_acc_weak"] / figures["end_model_acc_supervised"], abs=1e-3
    )
    assert figures["n_lfs"] > 0 and figures["appliers_identical"] is True
    assert figures["weak_rows"] + figures["abstained"] == figures["pool_rows"] > 0
    assert min(figures[k] for k in ("apply_emails_per_s", "apply_emails_per_s_pandas", "apply_emails_per_s_dask")) > 0
