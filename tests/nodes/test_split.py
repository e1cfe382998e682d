"""Schema checks and splits, on real parsed e-mails and on a user-style CSV table."""

from __future__ import annotations

import re

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


# --- issue 14: a user's messy table ---------------------------------------------------------------------
MESSAGE_SCHEMA = {"text_columns": ["message"], "label_column": "category", "id_column": None, "group_column": None,
                  "label_names": ["ok", "abuse"]}  # fmt: skip


def tickets(sample_emails: pd.DataFrame) -> pd.DataFrame:
    """The README's example table: a `message` and a `category` column holding ok / abuse."""
    return pd.DataFrame(
        {"message": (sample_emails["subject"] + "\n" + sample_emails["body"]).tolist(),
         "category": sample_emails["label"].map({0: "ok", 1: "abuse"}).tolist()}
    )  # fmt: skip


def test_missing_text_column_is_named_as_such_before_the_gate(sample_emails):
    """Before issue 14 the gate ran first and quarantined every row as "no text"."""
    from frugalml.nodes.split import check_table

    table = tickets(sample_emails).rename(columns={"message": "text"})
    with pytest.raises(SchemaError, match=r"dataset lacks column\(s\) \['message'\].*text column 'message' "
                                          r"\(data.text_columns\); it has \['text', 'category'\]"):  # fmt: skip
        check_table(table, MESSAGE_SCHEMA)
    assert check_table(tickets(sample_emails), MESSAGE_SCHEMA) is not None


def test_a_ragged_csv_read_by_pandas_is_refused_not_shifted(sample_emails, tmp_path):
    """Every text holds an unquoted comma: pandas turns the first half into the index, silently."""
    from frugalml.nodes.split import check_table

    table = tickets(sample_emails).head(30)
    csv = tmp_path / "ragged.csv"
    words = [re.findall(r"\w+", message) for message in table["message"]]
    lines = [f"{' '.join(w[:3])}, {' '.join(w[3:12])},{c}" for w, c in zip(words, table["category"])]
    csv.write_text("message,category\n" + "\n".join(lines) + "\n")
    shifted = pd.read_csv(csv)  # what pandas.CSVDataset hands the pipeline
    with pytest.raises(SchemaError, match=r"unnamed index of values such as .* one field more than its header"):
        check_table(shifted, MESSAGE_SCHEMA)
    with pytest.raises(SchemaError, match="unnamed index"):
        validate_text_dataset(shifted, MESSAGE_SCHEMA)


def test_duplicate_rows_are_quarantined_and_never_straddle_train_and_test(sample_emails):
    table = tickets(sample_emails)
    copies = table.sample(40, random_state=0)
    variants = copies.assign(message=copies["message"].str.upper().str.replace(" ", "  ", regex=False))
    messy = pd.concat([table, copies, variants], ignore_index=True).sample(frac=1, random_state=1)
    validated, quarantine = validate_text_dataset(messy, MESSAGE_SCHEMA)
    assert len(validated) + len(quarantine) == len(messy)
    duplicates = quarantine[quarantine["reason"].str.startswith("duplicate")]
    assert len(duplicates) == 80 and duplicates["reason"].str.split(":").str[1].isin(validated["row_id"]).all()
    key = validated["message"].str.lower().str.split().str.join(" ")
    assert key.is_unique
    train, dev, gold, test, pool, _ = split_dataset(validated, {"gold_dev_size": 20}, MESSAGE_SCHEMA, 0)
    seen = set(pd.concat([train, dev, gold])["message"].str.lower().str.split().str.join(" "))
    assert not seen & set(test["message"].str.lower().str.split().str.join(" "))


def test_duplicates_keep_the_labelled_copy_and_flag_label_conflicts(sample_emails):
    table = tickets(sample_emails).head(50)
    unlabelled_first = table.iloc[[0]].assign(category=None)
    conflict = table.iloc[[1]].assign(category=table["category"].iloc[1] == "ok" and "abuse" or "ok")
    messy = pd.concat([unlabelled_first, table, conflict], ignore_index=True)
    validated, quarantine = validate_text_dataset(messy, MESSAGE_SCHEMA)
    assert len(validated) == 50 and validated["category"].notna().all()  # the labelled copy was kept
    reasons = sorted(quarantine["reason"].str.split("_of:").str[0])
    assert reasons == ["duplicate", "duplicate_label_conflict"]
    whole_copies = pd.concat([sample_emails.head(20), sample_emails.head(3)], ignore_index=True)  # same email_id
    validated, quarantine = validate_text_dataset(whole_copies, EMAIL_SCHEMA)
    assert len(validated) == 20 and len(quarantine) == 3
    kept, none = validate_text_dataset(messy, MESSAGE_SCHEMA | {"dedup_on": "none"})
    assert len(kept) == len(messy) and none.empty


def test_one_class_table_names_the_problem_and_the_remedy(sample_emails):
    """Before issue 14 the run failed later, blaming the size of the gold dev set."""
    table = tickets(sample_emails)
    validated, _ = validate_text_dataset(table[table["category"] == "ok"], MESSAGE_SCHEMA)
    with pytest.raises(EmptyDatasetError, match=r"labelled rows of column 'category' are all of one class, 0 \('ok'\)"
                                                r".*Add rows labelled 1 \('abuse'\)"):  # fmt: skip
        split_dataset(validated, {}, MESSAGE_SCHEMA, 0)


def test_binary_text_is_quarantined_and_isolated_controls_stripped(sample_emails):
    table = tickets(sample_emails).head(60)
    rng = np.random.default_rng(0)
    table.loc[3, "message"] = rng.bytes(2000).decode("cp1252", errors="replace")  # binary pasted into a cell
    table.loc[4, "message"] = "\x00" * 300 + "PK\x03\x04"
    clean_text = table.loc[5, "message"]
    table.loc[5, "message"] = clean_text.replace(" ", " \x00", 2) + "\x1b"
    validated, quarantine = validate_text_dataset(table, MESSAGE_SCHEMA)
    assert sorted(quarantine.index.map(lambda i: quarantine["reason"].iloc[i].split(":")[0])) == ["binary_text"] * 2
    assert "data.max_control_share 10%" in quarantine["reason"].iloc[0]
    assert clean_text in validated["message"].tolist()
    assert not validated["message"].str.contains("[\x00\x1b]").any()
