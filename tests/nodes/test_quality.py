"""Quality gates on real e-mails: every bad-input class of the issue, suite config errors, profiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks.corruptions import CORRUPTIONS
from frugalml.errors import DataQualityError, ParameterError
from frugalml.nodes.quality import enforce_quality_gate, propose_suite, validate_with_suite

SUITES = Path(__file__).resolve().parents[2] / "conf" / "base" / "expectations"


def suite(name: str) -> dict:
    return yaml.safe_load((SUITES / f"{name}.yml").read_text())


def gate(frame: pd.DataFrame, suite_name: str = "emails", params: dict | None = None, data: dict | None = None):
    return validate_with_suite(frame, suite(suite_name), params or {}, data or {})


def test_clean_real_emails_pass_and_data_docs_are_built(sample_emails):
    passed, quarantine, report, metrics, docs = gate(sample_emails)
    assert report["success"], report["failures"]
    assert len(passed) == len(sample_emails) and quarantine.empty
    assert "index.html" in docs and any(path.startswith("validations/") for path in docs)
    assert metrics["emails.passed"]["value"] == 1.0
    assert all(entry["success"] for entry in report["results"] if entry["severity"] == "error")
    assert enforce_quality_gate(passed, report) is passed


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_bad_input_is_stopped_or_quarantined_and_nothing_is_lost(sample_emails, name):
    corrupted, expected, corrupted_ids = CORRUPTIONS[name](sample_emails, np.random.default_rng(0))
    passed, quarantine, report, _, _ = gate(corrupted)
    assert len(passed) + len(quarantine) == len(corrupted)  # nothing lost
    if expected == "stop":
        with pytest.raises(DataQualityError, match="quality gate 'emails' failed"):
            enforce_quality_gate(passed, report)
    else:
        assert report["success"], report["failures"]
        assert set(quarantine["email_id"]) == corrupted_ids
        assert quarantine["reason"].str.len().gt(0).all()
        assert enforce_quality_gate(passed, report) is passed


def test_failure_message_names_expectation_column_observed_value_and_ids(sample_emails):
    corrupted, _, _ = CORRUPTIONS["duplicate_ids"](sample_emails, np.random.default_rng(0))
    passed, _, report, _, _ = gate(corrupted)
    with pytest.raises(DataQualityError) as raised:
        enforce_quality_gate(passed, report)
    message = str(raised.value)
    assert "expect_column_values_to_be_unique(email_id)" in message
    duplicated = corrupted["email_id"][corrupted["email_id"].duplicated()].iloc[0]
    assert duplicated in message and "unexpected rows" in message
    _, _, one_class_report, _, _ = gate(CORRUPTIONS["all_one_class"](sample_emails, None)[0])
    assert any(
        "expect_column_distinct_values_to_contain_set(classes of label): the 412 labelled rows are all of one "
        "class, 0 ('ham') (rows per class: 0 ('ham'): 412, 1 ('spam'): 0" in f
        for f in one_class_report["failures"]
    )


def test_missing_label_column_stops(sample_emails):
    _, _, report, _, _ = gate(sample_emails.drop(columns=["label"]))
    assert not report["success"]
    assert any("expect_column_to_exist(label)" in failure for failure in report["failures"])


def test_quarantine_reasons_name_the_expectations(sample_emails):
    corrupted, _, ids = CORRUPTIONS["non_utf8_bytes"](sample_emails, np.random.default_rng(1))
    _, quarantine, _, _, _ = gate(corrupted)
    assert set(quarantine["email_id"]) == ids
    assert (quarantine["reason"] == "expect_column_values_to_be_in_set(type of subject, body)").all()
    assert (quarantine["bytes_columns"] == "body").all()  # bytes kept (as latin-1 text), not dropped
    huge, _, huge_ids = CORRUPTIONS["10mb_message"](sample_emails, np.random.default_rng(0))
    _, quarantine, _, _, _ = gate(huge)
    assert quarantine["reason"].iloc[0] == "expect_column_value_lengths_to_be_between(text of subject, body)"


def test_warn_severity_reports_without_stopping(sample_emails):
    subject_only = sample_emails.copy()
    subject_only.loc[subject_only.index[: len(subject_only) // 5], "body"] = ""
    passed, _, report, _, _ = gate(subject_only)
    assert report["success"]
    assert any("expect_column_values_to_match_regex(body)" in warning for warning in report["warnings"])


def test_max_quarantine_share_parameter_overrides_the_suite(sample_emails):
    corrupted, _, _ = CORRUPTIONS["2pct_rows_fail"](sample_emails, np.random.default_rng(0))
    _, _, report, _, _ = gate(corrupted, params={"max_quarantine_share": 0.01})
    assert not report["success"]
    assert any("above max_quarantine_share 1.0%" in failure for failure in report["failures"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expectations": [{"expectation": "expect_column_to_be_awesome", "kwargs": {}}]}, "unknown GX expectation"),
        ({"expectations": [{"expectation": "expect_column_to_exist", "kwargs": {"colum": "x"}}]}, "bad arguments"),
        ({"expectations": [{"expectation": "expect_column_to_exist", "kwargs": {"column": "x"}, "sevrity": "warn"}]},
         "sevrity"),
        ({"max_quarantine_share": 2}, "max_quarantine_share"),
    ],
)  # fmt: skip
def test_bad_suite_files_name_the_problem(sample_emails, change, message):
    broken = {**suite("emails"), **change}
    with pytest.raises(ParameterError, match=message):
        validate_with_suite(sample_emails, broken, {}, {})


def test_generic_suite_runs_on_a_user_table_by_configuration(sample_emails):
    table = pd.DataFrame({"message": sample_emails["body"], "category": sample_emails["label"]})
    table.loc[table.index[:3], "message"] = "  "
    data = {"text_columns": ["message"], "label_column": "category", "id_column": None}
    blank = int(table["message"].str.strip().eq("").sum())
    assert blank >= 3
    passed, quarantine, report, _, _ = gate(table, "text_table", data=data)
    assert report["success"] and len(quarantine) == blank and len(passed) == len(table) - blank


def test_profiling_proposes_a_suite_that_the_trusted_batch_passes(sample_emails):
    assert "note" in propose_suite(sample_emails, False, {}) and "expectations" not in propose_suite(
        sample_emails, False, {}
    )
    proposal = propose_suite(sample_emails, True, {})
    kinds = {e["expectation"] for e in proposal["expectations"]}
    assert {"expect_column_values_to_be_unique", "expect_column_values_to_be_in_set"} <= kinds
    _, quarantine, report, _, _ = validate_with_suite(sample_emails, proposal, {}, {})
    assert report["success"] and quarantine.empty
    corrupted, _, _ = CORRUPTIONS["labels_outside_set"](sample_emails, np.random.default_rng(0))
    assert validate_with_suite(corrupted, proposal, {}, {})[1].shape[0] > 0


# --- issue 14: messages in the user's terms, and the generic suite on messy tables -----------------------
TICKETS = {"text_columns": ["message"], "label_column": "category", "id_column": None, "label_names": ["ok", "abuse"]}


def tickets(sample_emails: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"message": sample_emails["body"].to_numpy(),
                         "category": sample_emails["label"].map({0: "ok", 1: "abuse"}).to_numpy()})  # fmt: skip


def test_gate_failures_name_the_users_columns_not_helper_columns(sample_emails):
    table = tickets(sample_emails)
    table.loc[table.index[: len(table) // 2], "message"] = "  "  # half the texts are blank: the gate stops
    passed, quarantine, report, _, _ = gate(table, "text_table", data=TICKETS)
    with pytest.raises(DataQualityError) as raised:
        enforce_quality_gate(passed, report)
    message = str(raised.value)
    assert "_text" not in message and "_positive" not in message
    assert (quarantine["reason"] == "expect_column_values_to_match_regex(text of message)").all()
    assert all("_text" not in entry["column"] for entry in report["results"] if entry["column"])


def test_generic_suite_checks_label_balance_and_names_the_remedy(sample_emails):
    """Before issue 14 text_table.yml had no balance check: a one-class table passed the gate."""
    table = tickets(sample_emails)
    one_class = table[table["category"] == "ok"]
    passed, _, report, _, _ = gate(one_class, "text_table", data=TICKETS)
    with pytest.raises(
        DataQualityError,
        match=r"expect_column_distinct_values_to_contain_set\(classes of category\): the \d+ labelled rows are all "
        r"of one class, 0 \('ok'\) \(rows per class: 0 \('ok'\): \d+, 1 \('abuse'\): 0.*add rows of the missing "
        r"class 1 \('abuse'\)\n",
    ):
        enforce_quality_gate(passed, report)  # fmt: skip
    numeric = table.assign(category=table["category"].map({"ok": 0, "abuse": 1}))  # values instead of names
    assert gate(numeric, "text_table", data=TICKETS)[2]["success"]
    with_unlabelled = table.copy()
    with_unlabelled.loc[with_unlabelled.index[:5], "category"] = None
    assert gate(with_unlabelled, "text_table", data=TICKETS)[2]["success"]  # missing labels do not count


def test_gate_on_a_table_without_its_text_column_names_the_column(sample_emails):
    """Before issue 14 every row was quarantined as "no text" and the message blamed the quarantine share."""
    table = tickets(sample_emails).rename(columns={"message": "text"})
    passed, quarantine, report, _, _ = gate(table, "text_table", data=TICKETS)
    assert quarantine.empty and len(passed) == len(table)
    with pytest.raises(DataQualityError, match=r"lacks text column\(s\) \['message'\] of data.text_columns"):
        enforce_quality_gate(passed, report)


# --- issue 16: class balance for K >= 2 classes; binary behaves as before ---------------------------------
def _with_share(frame: pd.DataFrame, label: str, minority, share: float) -> pd.DataFrame:
    """All rows of the other class plus as many rows of ``minority`` as make its share ``share``."""
    rest, rows = frame[frame[label] != minority], frame[frame[label] == minority]
    return pd.concat([rest, rows.head(round(share * len(rest) / (1 - share)))])


@pytest.mark.parametrize(
    ("suite_name", "share", "passes"),
    [("text_table", 0.04, False), ("text_table", 0.06, True), ("text_table", 0.94, True), ("text_table", 0.96, False),
     ("training_set", 0.015, False), ("training_set", 0.025, True), ("training_set", 0.975, True),
     ("training_set", 0.985, False)],
)  # fmt: skip
def test_binary_balance_bounds_are_the_positive_share_bounds_of_before(sample_emails, suite_name, share, passes):
    """Before issue 16: positive share within [0.05, 0.95] (text_table, emails) and [0.02, 0.98] (training_set).
    Now: each class >= 10% / 4% of an even split, the same bounds for K = 2."""
    table = tickets(sample_emails)
    if suite_name == "training_set":  # the training gate sees coerced integer labels
        table = table.assign(category=table["category"].map({"ok": 0, "abuse": 1}))
    names = [0, 1] if suite_name == "training_set" else ["ok", "abuse"]
    minority = names[1] if share < 0.5 else names[0]
    batch = _with_share(pd.concat([table] * 3, ignore_index=True), "category", minority, min(share, 1 - share))
    _, _, report, _, _ = gate(batch, suite_name, data=TICKETS)
    assert report["success"] is passes, report["failures"]
    if not passes:
        (failure,) = report["failures"]
        under = "1 ('abuse')" if share < 0.5 else "0 ('ok')"  # the class under its bound
        bound = "5%" if suite_name == "text_table" else "2%"
        assert f"class {under} is " in failure and f"(allowed ≥ {bound}: min_value" in failure
        assert f"lower min_value in suite '{suite_name}' (conf/base/expectations/{suite_name}.yml" in failure


def test_emails_suite_takes_the_declared_labels(sample_emails):
    """emails.yml checks labels against {data.labels}, not a hard-coded [0, 1]."""
    three = sample_emails.assign(label=sample_emails["label"].where(sample_emails["group"] != "hard-ham-1", 2))
    data = {"labels": [0, 1, 2], "label_names": ["ham", "spam", "hard_ham"]}
    _, quarantine, report, _, _ = gate(three, data=data)
    assert report["success"] and quarantine.empty, report["failures"]
    _, quarantine, report, _, _ = gate(three)  # binary declaration: class 2 is outside the set
    assert set(quarantine["email_id"]) == set(three.loc[three["label"] == 2, "email_id"])


def test_failures_name_the_observed_value_and_the_allowed_range(sample_emails):
    tiny = tickets(sample_emails).head(12).assign(category=lambda f: f["category"].map({"ok": 0, "abuse": 1}))
    _, _, report, _, _ = gate(tiny, "training_set", data=TICKETS)
    assert "expect_table_row_count_to_be_between: observed 12, allowed ≥ 20" in report["failures"]
    outside = tickets(sample_emails).assign(category=0)
    outside.loc[outside.index[:4], "category"] = 7
    outside.loc[outside.index[4:200], "category"] = 1
    _, _, report, _, _ = gate(outside, "training_set", data=TICKETS)
    (failure,) = report["failures"]
    assert (
        "expect_column_values_to_be_in_set(category): 4 unexpected rows (values 7 (4 rows)), allowed values [0, 1]"
        in failure
    )
    assert "declare the class in data.labels" in failure


def test_profiling_proposes_class_balance_checks(sample_emails):
    kinds = {
        (e["expectation"], e["kwargs"].get("column")) for e in propose_suite(sample_emails, True, {})["expectations"]
    }
    assert {
        ("expect_column_distinct_values_to_contain_set", "_label"),
        ("expect_column_min_to_be_between", "_label_balance"),
    } <= kinds
