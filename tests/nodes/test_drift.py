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


#: a text-only table made from the e-mails, with its own column names (a user's second table)
TEXT_ONLY = {"text_columns": ["message"], "label_column": "spam", "id_column": None, "group_column": None}


def _text_only(emails: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"message": (emails["subject"] + "\n" + emails["body"]).tolist(), "spam": emails["label"]})


def test_reference_from_another_table_is_not_compared(sample_emails, caplog):
    # the first run on the text-only table meets the e-mails' training set as its reference
    reference, current = sample_emails.iloc[:300], _text_only(sample_emails.iloc[300:])
    with caplog.at_level("INFO", logger="frugalml.nodes.drift"):
        report, metrics, figure, page = detect_drift(reference, current, {"action": "block"}, TEXT_ONLY)
    assert not report["retrain_recommended"] and report["signals"] == {} and metrics["drift.checked"]["value"] == 0.0
    assert "another table (columns email_id, " in report["note"] and "it has no message, spam" in report["note"]
    assert "No drift detected" in page and figure is not None
    (record,) = [r for r in caplog.records if "another table" in r.getMessage()]
    assert (
        record.levelname == "INFO" and "the next run compares against this table's training set" in record.getMessage()
    )
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_email_batch_against_a_text_only_reference_is_not_compared(sample_emails):
    report, _, _, _ = detect_drift(_text_only(sample_emails.iloc[:300]), sample_emails.iloc[300:], {}, {})
    assert report["signals"] == {} and "no subject, body, label" in report["note"]


def test_reference_with_labels_outside_the_declared_set_is_not_compared(sample_emails):
    # same column names, another task: the reference was trained on three classes, data.labels declares two
    reference = _text_only(sample_emails.iloc[:300]).assign(spam=[0, 1, 2] * 100)
    report, metrics, _, _ = detect_drift(reference, _text_only(sample_emails.iloc[300:]), {}, TEXT_ONLY)
    assert "labels ['2'] outside data.labels [0, 1]" in report["note"] and metrics["drift.checked"]["value"] == 0.0


def test_reference_of_the_same_table_is_still_compared(sample_emails):
    table = _text_only(sample_emails)
    report, metrics, _, _ = detect_drift(table.iloc[:300], table.iloc[300:], {}, TEXT_ONLY)
    assert metrics["drift.checked"]["value"] == 1.0 and "note" not in report
    assert set(report["signals"]) == {"label_prior", "length_ks.message", "token_js", "oov_rate"}
