"""Wiring: the quality pipeline gates a batch, quarantines the rows that break row-level expectations and the
copies, and passes the rest on as ``emails_validated``."""

import pytest

from frugalml.errors import DataQualityError
from frugalml.runner import run_in_memory
from tests.helpers import stage, suite

OUTPUTS = ["emails_validated", "emails_gate_quarantine", "validation_quarantine", "emails_gate_report"]


def test_a_clean_batch_passes_and_every_row_is_accounted_for(sample_emails):
    batch = sample_emails.iloc[:120].copy()
    batch.loc[batch.index[0], "body"] = ""  # empty text: quarantined, not lost
    batch.loc[batch.index[0], "subject"] = ""
    inputs = {"emails": batch, "emails_suite": suite("emails"), "drift_reference": None}
    out = run_in_memory(stage("quality"), inputs, outputs=OUTPUTS)
    validated, gated, copies = out["emails_validated"], out["emails_gate_quarantine"], out["validation_quarantine"]
    assert out["emails_gate_report"]["success"] is True
    assert len(validated) + len(gated) + len(copies) == len(batch)
    assert batch["email_id"].iloc[0] in set(gated["email_id"]) | set(copies["email_id"])
    assert (gated["reason"].str.len() > 0).all() and (copies["reason"].str.len() > 0).all()


def test_a_batch_with_a_wrong_label_stops_at_the_gate(sample_emails):
    batch = sample_emails.iloc[:120].copy()
    batch["label"] = 7  # outside data.labels: an error-level expectation
    inputs = {"emails": batch, "emails_suite": suite("emails"), "drift_reference": None}
    with pytest.raises(DataQualityError, match="label"):
        run_in_memory(stage("quality"), inputs, outputs=OUTPUTS)
