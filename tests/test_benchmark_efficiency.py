"""The model-zoo benchmark's smoke run, from a fresh copy of the repository (`benchmarks.efficiency --smoke`)."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import is_fraction, run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_efficiency_benchmark_smoke_run_from_a_fresh_copy(tmp_path):
    figures = run_benchmark_smoke("efficiency", tmp_path, timeout=600)
    for key in (
        "bag_acc",
        "pretrained_frozen_acc",
        "hybrid_acc",
        "dp_acc_eps1",
        "nonprivate_acc",
        "adapter_acc",
        "full_finetune_acc",
        "transformer_acc",
        "transformer_dswa_acc",
    ):
        assert is_fraction(figures[key]), key
    assert figures["dp_best_kind"] in ("ngram_bag", "pretrained", "hybrid", "adapters")
    assert 0 < figures["adapter_trainable_share"] < 0.01
    assert figures["dswa_acc_delta"] == pytest.approx(figures["transformer_dswa_acc"] - figures["transformer_acc"])
    ratios = figures["checkpointing_mem_ratio_by_layers"]
    assert 0 < ratios["4"] < ratios["2"] < 1, ratios  # deeper: checkpointing saves more
    assert figures["amp_speedup_cpu"] > 0 and set(figures["attention_seconds"]) == {"512", "1024"}
    assert figures["utility_ratio_eps1"] == pytest.approx(figures["dp_acc_eps1"] / figures["nonprivate_acc"], abs=1e-3)
    assert figures["embed_emails_per_s_cpu"] > 0
    assert {r["kind"] for r in figures["runs"]} == {"ngram_bag", "pretrained", "hybrid", "adapters", "full",
                                                   "transformer", "transformer_dswa", "multitask_bag",
                                                   "multitask_transformer"}  # fmt: skip
    assert all(0 < r["epsilon"] <= 1.0 + 1e-6 for r in figures["runs"] if r["private"])
    assert is_fraction(figures["multitask_acc"]) and is_fraction(figures["multitask_dp_acc"])
    single = {"multitask_bag": "ngram_bag", "multitask_transformer": "transformer"}[figures["multitask_kind"]]
    assert (
        figures["multitask_single_acc"] == figures[{"ngram_bag": "bag_acc", "transformer": "transformer_acc"}[single]]
    )
    task = figures["multitask_task"]
    assert task["rows"] > 0 and is_fraction(task["accuracy"]) and is_fraction(task["majority_baseline_accuracy"])
    # measured at full size only, or on a GPU only: null in a smoke run without one
    for key in ("checkpointing_mem_ratio", "dswa_speedup_8k_cpu", "dswa_speedup_8k", "amp_speedup_gpu"):
        assert figures[key] is None, key
