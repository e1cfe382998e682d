"""The quality benchmark's smoke run (`python -m benchmarks.quality --smoke`), from a fresh copy of the
repository: the figures issue 14 names."""

from __future__ import annotations

import pytest

from tests.benchmark_helpers import run_benchmark_smoke

pytestmark = pytest.mark.slow


def test_quality_benchmark_smoke_run_accounts_for_every_messy_row(tmp_path):
    figures = run_benchmark_smoke("quality", tmp_path)
    assert figures["clean_passed"] is True
    assert figures["corrupt_blocked"] == figures["corrupt_total"] == 12 and figures["rows_lost"] == 0
    handled, total = map(int, figures["messy_inputs_handled"].split("/"))
    assert handled == total == 11
    assert figures["ingest_rows_unaccounted"] == 0
