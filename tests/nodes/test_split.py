"""Schema checks and splits, on real parsed e-mails and on a user-style CSV table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from frugalml.errors import EmptyDatasetError, SchemaError
from frugalml.nodes.split import split_dataset, validate_text_dataset

EMAIL_SCHEMA: dict = {}  # defaults: subject + body, label, email_id
CSV_SCHEMA = {"text_columns": ["text"], "label_column": "label", "id_column": None, "group_column": None}


def user_table(sample_emails: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"text": (sample_emails["subject"] + "\n" + sample_emails["body"]).tolist(),
         "label": sample_emails["label"].tolist()}
    )  # fmt: skip


def test_validate_keeps_rows_and_types_labels(sample_emails):
    validated, quarantine = validate_text_dataset(sample_emails, EMAIL_SCHEMA)
    assert len(validated) + len(quarantine) == len(sample_emails)
    assert str(validated["label"].dtype) == "Int64"


def test_missing_text_column_is_named(sample_emails):
    with pytest.raises(SchemaError, match=r"\['body'\]"):
        validate_text_dataset(sample_emails.drop(columns="body"), EMAIL_SCHEMA)


def test_missing_label_column_is_named(sample_emails):
    table = user_table(sample_emails).rename(columns={"label": "is_spam"})
    with pytest.raises(SchemaError, match=r"\['label'\]"):
        validate_text_dataset(table, CSV_SCHEMA)


def test_labels_outside_the_declared_set_are_named(sample_emails):
    table = user_table(sample_emails)
    table.loc[[0, 1, 2], "label"] = 7
    table.loc[3, "label"] = -1
    with pytest.raises(SchemaError, match=r"column 'label'.*'7' \(3 rows\).*'-1' \(1 rows\)"):
        validate_text_dataset(table, CSV_SCHEMA)


def test_label_names_and_float_labels_are_accepted(sample_emails):
    table = user_table(sample_emails).head(40)
    table["label"] = np.where(table["label"] == 1, "spam", "ham").astype(object)
    table.loc[0, "label"] = "1.0"
    table.loc[1, "label"] = None
    validated, _ = validate_text_dataset(table, CSV_SCHEMA)
    assert validated["label"].isna().sum() == 1
    assert set(validated["label"].dropna()) <= {0, 1}


def test_empty_texts_are_quarantined_with_reason(sample_emails):
    table = user_table(sample_emails)
    table.loc[[5, 6], "text"] = ["   ", None]
    validated, quarantine = validate_text_dataset(table, CSV_SCHEMA)
    assert len(quarantine) == 2 and quarantine["reason"].str.startswith("empty_text").all()
    assert len(validated) == len(table) - 2
    assert validated["row_id"].is_unique


def test_duplicate_ids_are_refused(sample_emails):
    table = sample_emails.copy()
    table.loc[1, "email_id"] = table.loc[0, "email_id"]
    with pytest.raises(SchemaError, match="repeats"):
        validate_text_dataset(table, EMAIL_SCHEMA)


def test_empty_table_is_refused():
    with pytest.raises(EmptyDatasetError):
        validate_text_dataset(pd.DataFrame({"text": [], "label": []}), CSV_SCHEMA)


def test_random_split_is_disjoint_stratified_and_seeded(sample_emails):
    validated, _ = validate_text_dataset(sample_emails, EMAIL_SCHEMA)
    params = {"gold_dev_size": 40, "unlabelled_fraction": 0.2}
    train, dev, gold, test, pool, metrics = split_dataset(validated, params, EMAIL_SCHEMA, 0)
    sets = [train, dev, gold, test, pool]
    ids = [set(s["email_id"]) for s in sets]
    assert sum(len(s) for s in ids) == len(validated) == len(set().union(*ids))
    assert len(gold) == 40 and pool["label"].isna().all()
    rate = validated["label"].mean()
    for frame in (train, dev, test):
        assert abs(frame["label"].mean() - rate) < 0.05
    again = split_dataset(validated, params, EMAIL_SCHEMA, 0)
    assert again[0]["email_id"].tolist() == train["email_id"].tolist()
    other = split_dataset(validated, params, EMAIL_SCHEMA, 1)
    assert other[0]["email_id"].tolist() != train["email_id"].tolist()
    assert metrics["test_rows"]["value"] == len(test)


def test_temporal_split_trains_on_era_one_and_tests_on_era_two(sample_emails):
    validated, _ = validate_text_dataset(sample_emails, EMAIL_SCHEMA)
    train, dev, gold, test, pool, _ = split_dataset(
        validated, {"strategy": "temporal", "gold_dev_size": 20}, EMAIL_SCHEMA, 0
    )
    assert set(pd.concat([train, dev, gold])["group"]) == {"easy-ham-1", "hard-ham-1", "spam-1"}
    assert set(test["group"]) == {"easy-ham-2", "spam-2"}
    assert pool.empty


def test_temporal_split_with_no_match_names_the_patterns(sample_emails):
    validated, _ = validate_text_dataset(sample_emails, EMAIL_SCHEMA)
    with pytest.raises(EmptyDatasetError, match=r"\*-3"):
        split_dataset(validated, {"strategy": "temporal", "temporal": {"test_patterns": ["*-3"]}}, EMAIL_SCHEMA, 0)


def test_single_class_cannot_be_stratified(sample_emails):
    validated, _ = validate_text_dataset(sample_emails[sample_emails["label"] == 0], EMAIL_SCHEMA)
    validated.loc[0, "label"] = 1
    with pytest.raises(EmptyDatasetError, match="fewer than 2"):
        split_dataset(validated, {}, EMAIL_SCHEMA, 0)


def test_temporal_split_defaults_to_the_schema_group_column(sample_emails):
    table = sample_emails.rename(columns={"group": "era_name"})
    validated, _ = validate_text_dataset(table, {"group_column": "era_name"})
    train, _, _, test, _, _ = split_dataset(validated, {"strategy": "temporal", "gold_dev_size": 0},
                                            {"group_column": "era_name"}, 0)  # fmt: skip
    assert set(test["era_name"]) == {"easy-ham-2", "spam-2"} and len(train)
    with pytest.raises(SchemaError, match="needs column"):
        split_dataset(validated, {"strategy": "temporal"}, {"group_column": None}, 0)
