"""The governance benchmark's smoke run (`python -m benchmarks.audit --smoke`), from a fresh copy of the
repository: every attack of issue 14, on the small sample's default (DP) recipe."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_audit_benchmark_smoke_run_refuses_every_attack(tmp_path):
    figures = run_benchmark_smoke("audit", tmp_path, "--no-mlflow", timeout=400)
    assert figures["missed"] == []
    for key in (
        "tamper_detected",
        "forgery_detected",
        "identity_spoof_refused",
        "governance_override_refused",
        "registry_bypass_refused",
        "abuse_refused",
    ):
        detected, total = map(int, figures[key].split("/"))
        assert total >= 4 and detected == total, (key, figures[key])
    assert figures["governed_promotion_works"] is True and figures["events_per_run"] > 50
    assert figures["pipeline_seconds_audit"] > 0 and figures["pipeline_seconds_no_audit"] > 0
