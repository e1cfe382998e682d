"""Drift detection on the real corpus: a later era drifts, a random held-out batch does not."""

from __future__ import annotations

import pandas as pd
import pytest

from frugalml.errors import DataQualityError
from frugalml.nodes.drift import detect_drift


@pytest.fixture(scope="module")
def eras(sample_emails):
    era1 = sample_emails[sample_emails["group"].str.endswith("-1")]
    era2 = sample_emails[sample_emails["group"].str.endswith("-2")]
    return era1, era2


def test_later_era_is_flagged_for_retraining(eras):
    reference, current = eras
    report, metrics, figure, page = detect_drift(reference, current, {}, {})
    assert report["retrain_recommended"]
    assert "label_prior" in report["drifted"]
    assert metrics["drift.retrain_recommended"]["value"] == 1.0
    assert "Retrain recommended" in page and figure.axes


def test_random_held_out_batch_of_the_same_era_is_not_flagged(sample_emails):
    shuffled = sample_emails.sample(frac=1.0, random_state=0)
    reference, current = shuffled.iloc[: len(shuffled) * 3 // 4], shuffled.iloc[len(shuffled) * 3 // 4 :]
    report, _, _, page = detect_drift(reference, current, {}, {})
    assert not report["retrain_recommended"], report["signals"]
    assert report["signals"]["token_js"] < 0.03
    assert "No drift detected" in page


def test_block_action_stops_the_run(eras):
    reference, current = eras
    with pytest.raises(DataQualityError, match="label_prior="):
        detect_drift(reference, current, {"action": "block"}, {})


def test_no_reference_yet_is_reported_not_failed(sample_emails):
    report, metrics, _, _ = detect_drift(None, sample_emails, {}, {})
    assert report["note"].startswith("no reference") and metrics["drift.checked"]["value"] == 0.0


def test_user_table_without_email_columns_uses_what_it_has(sample_emails):
    table = pd.DataFrame({"text": sample_emails["body"], "label": sample_emails["label"]})
    data = {"text_columns": ["text"], "id_column": None}
    report, _, _, _ = detect_drift(table.iloc[:300], table.iloc[300:], {}, data)
    assert set(report["signals"]) == {"label_prior", "length_ks.text", "token_js", "oov_rate"}
