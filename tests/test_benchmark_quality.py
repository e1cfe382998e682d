"""The quality benchmark's smoke run (`python -m benchmarks.quality --smoke`): the figures issue 14 names."""

from __future__ import annotations

import json

import pytest

from benchmarks.quality import main

pytestmark = pytest.mark.slow


def test_quality_benchmark_smoke_run_accounts_for_every_messy_row(capsys):
    main(["--smoke"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["smoke"] is True and figures["clean_passed"] is True
    assert figures["corrupt_blocked"] == figures["corrupt_total"] == 12 and figures["rows_lost"] == 0
    handled, total = map(int, figures["messy_inputs_handled"].split("/"))
    assert handled == total == 11
    assert figures["ingest_rows_unaccounted"] == 0
