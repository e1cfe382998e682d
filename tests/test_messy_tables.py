"""End to end (issue 14): a user's messy CSV through `kedro run`, the way the README tells users to bring one."""

from __future__ import annotations

import pandas as pd
import pytest

from frugalml.errors import SchemaError
from tests.helpers import SMALL, make_project, run

pytestmark = pytest.mark.slow

DATA = {"text_columns": ["message"], "label_column": "category", "id_column": None, "group_column": None,
        "label_names": ["ok", "abuse"]}  # fmt: skip
SUITE = {"emails_suite": {"type": "yaml.YAMLDataset", "filepath": "conf/base/expectations/text_table.yml"}}


def tickets(sample_emails: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"message": (sample_emails["subject"] + "\n" + sample_emails["body"]).str.slice(0, 3000),
                         "category": sample_emails["label"].map({0: "ok", 1: "abuse"})})  # fmt: skip


def test_missing_text_column_stops_before_any_gate(tmp_path, corpus_path, sample_emails, monkeypatch):
    csv = tmp_path / "tickets.csv"
    tickets(sample_emails).rename(columns={"message": "text"}).to_csv(csv, index=False)
    catalog = {"emails": {"type": "pandas.CSVDataset", "filepath": str(csv)}, **SUITE}
    project = make_project(tmp_path, corpus_path, {**SMALL, "data": DATA}, catalog)
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['message'\].*text column 'message'"):
        run(project, "quality", monkeypatch)
    assert not (project / "data" / "08_reporting" / "quality" / "emails_report.json").exists()  # no gate ran


def test_wrong_encoding_names_the_load_args_to_set(tmp_path, corpus_path, sample_emails, monkeypatch):
    csv = tmp_path / "tickets.csv"
    table = tickets(sample_emails).head(60)
    table["message"] = "Caf\u00e9 \u2013 " + table["message"].str.encode("ascii", "ignore").str.decode("ascii")
    table.to_csv(csv, index=False, encoding="cp1252")
    catalog = {"emails": {"type": "frugalml.datasets.corpus.TextTableDataset", "filepath": str(csv)}, **SUITE}
    project = make_project(tmp_path, corpus_path, {**SMALL, "data": DATA}, catalog)
    with pytest.raises(Exception, match=r"byte 0xe9 on line 2 .*`load_args: \{encoding: cp1252\}`") as raised:
        run(project, "quality", monkeypatch)
    chain, error = [], raised.value
    while error is not None:  # Kedro's catalog re-raises a dataset's error as its own, naming the dataset
        chain.append(type(error))
        error = error.__cause__ or error.__context__
    assert any(issubclass(kind, SchemaError) for kind in chain)


def test_a_wrong_encoding_through_pandas_csvdataset_gets_the_hint_too(
    tmp_path, corpus_path, sample_emails, monkeypatch, caplog
):
    csv = tmp_path / "tickets.csv"
    table = tickets(sample_emails).head(60)
    table["message"] = "Caf\u00e9 " + table["message"].str.encode("ascii", "ignore").str.decode("ascii")
    table.to_csv(csv, index=False, encoding="cp1252")
    catalog = {"emails": {"type": "pandas.CSVDataset", "filepath": str(csv)}, **SUITE}
    project = make_project(tmp_path, corpus_path, {**SMALL, "data": DATA}, catalog)
    with pytest.raises(Exception, match="codec can't decode"):
        run(project, "quality", monkeypatch)
    assert "dataset 'emails' is not UTF-8 text: add `load_args: {encoding: cp1252}`" in caplog.text


def test_messy_table_with_copies_an_unlabelled_row_and_nuls_runs_to_a_model(
    tmp_path, corpus_path, sample_emails, monkeypatch
):
    """Before issue 14 the one unlabelled row stopped the run in the weak-label stage (no LF fits ok/abuse),
    and copies of a text could land in both train and test."""
    table = tickets(sample_emails)
    spaced = table.head(30).assign(message=lambda f: f["message"].str.replace(" ", "  ", regex=False))
    messy = pd.concat([table, spaced], ignore_index=True)  # 30 copies, whitespace aside
    messy.loc[100, "category"] = None  # one unlabelled row
    messy.loc[101, "message"] = messy.loc[101, "message"] + "\x00\x00"  # stray NULs
    csv = tmp_path / "tickets.csv"
    messy.to_csv(csv, index=False)
    params = {**SMALL, "data": DATA, "clean": {"policy": "none"},
              "train": {**SMALL["train"], "privacy": {"enabled": False}}}  # fmt: skip
    catalog = {"emails": {"type": "pandas.CSVDataset", "filepath": str(csv)}, **SUITE}  # the README's entry
    project = make_project(tmp_path, corpus_path, params, catalog, governance={"privacy": {"require_dp": False}})
    run(project, "modelling", monkeypatch)
    primary = project / "data" / "03_primary"
    quarantine = pd.read_parquet(project / "data" / "02_intermediate" / "validation_quarantine.parquet")
    assert quarantine["reason"].str.startswith("duplicate").sum() == 30
    abstained = pd.read_parquet(primary / "weak_abstained.parquet")
    assert len(abstained) == 1 and abstained["reason"].iloc[0].startswith("no_fitting_lf")

    def texts(name: str) -> set[str]:
        return set(pd.read_parquet(primary / f"{name}.parquet")["message"].str.lower().str.split().str.join(" "))

    assert not (texts("train_labelled") | texts("dev_labelled") | texts("dev_gold")) & texts("test_gold")
    assert not any("\x00" in text for text in texts("train_labelled"))
