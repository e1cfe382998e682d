"""The compression and kernel benchmarks' smoke runs, from a fresh copy of the repository."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import is_fraction, run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_compression_benchmark_smoke_run_from_a_fresh_copy(tmp_path):
    figures = run_benchmark_smoke("compression", tmp_path, "--fine-tuned", timeout=600)
    assert figures["fp32_bytes"] > 90_000_000  # the encoder classifier: MiniLM's fp32 weights and the head
    assert figures["fp32_bytes"] > figures["fp16_bytes"] > figures["int8_bytes"] > figures["int4_bytes"]
    assert figures["int4_mixed_bytes"] > figures["int4_bytes"]  # some tensors kept at int8
    assert figures["variants"]["int4-nearest"]["bytes"] == figures["int4_bytes"] and is_fraction(
        figures["acc_int4_nearest"]
    )
    for key in ("acc_fp32", "acc_fp16", "acc_int8", "acc_int8_static", "acc_int4", "acc_int4_mixed"):
        assert is_fraction(figures[key]), key
    assert figures["size_ratio_int4"] == pytest.approx(figures["fp32_bytes"] / figures["int4_bytes"], rel=1e-3)
    assert figures["cpu_latency_ratio_int8"] > 0 and figures["cpu_latency_ratio_int8_static"] > 0
    assert figures["variants"]["int8-static"]["bytes"] == pytest.approx(figures["int8_bytes"], rel=1e-3)  # int8 weights
    assert figures["int4_pruned_bytes"] < figures["int4_bytes"] and is_fraction(figures["acc_int4_pruned"])
    assert figures["distilled_bytes"] < figures["fp32_bytes"] / 100  # the n-gram bag student
    assert figures["distilled_int4_bytes"] < figures["distilled_bytes"] and is_fraction(figures["acc_distilled"])
    private = figures["dp_distillation"]
    assert set(private) == {"teacher_pretrained_eps1", "student_bag_eps1_plus_1", "bag_eps1", "bag_eps2"}
    assert all(is_fraction(value) for value in private.values()), private
    lora = figures["fine_tuned"]["adapters"]  # --fine-tuned (smoke: LoRA, int8)
    assert set(lora) == {"fp32", "int8"} and lora["int8"]["bytes"] < lora["fp32"]["bytes"] / 3.5
    assert is_fraction(lora["int8"]["acc"]) and figures["best_variant"] not in {"adapters", "adapters-int8"}
    best = figures["variants"][figures["best_variant"]]
    assert figures["acc_fp32"] - best["acc"] <= 0.003  # the best variant is the smallest within 0.3 points
    assert figures["size_ratio_best"] == pytest.approx(figures["fp32_bytes"] / best["bytes"], rel=1e-3)


def test_kernels_benchmark_smoke_run_checks_the_kernel_and_times_nothing_without_a_gpu(tmp_path):
    figures = run_benchmark_smoke("kernels", tmp_path)
    assert figures["max_relative_error"] < 1e-4
    assert len(figures["checks"]) == 6
    if figures["machine"]["gpu"] is None:
        assert figures["lut_us"] is None and figures["speedup_m1_8192"] is None
