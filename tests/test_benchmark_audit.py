"""The governance benchmark's smoke run (`python -m benchmarks.audit --smoke`): every attack of issue 14."""

from __future__ import annotations

import pytest

from benchmarks.audit import main

pytestmark = pytest.mark.slow


def test_audit_benchmark_smoke_run_refuses_every_attack():
    figures = main(["--smoke", "--no-mlflow"])
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
