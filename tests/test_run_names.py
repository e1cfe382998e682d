"""MLflow run names: real `kedro run`s in a temporary project, the names and tags read back from its store."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from frugalml.hooks import frame_digest
from tests.helpers import SMALL, make_project, run, store_uri

pytestmark = pytest.mark.slow

#: a user's text table (conf/local): its own CSV under `emails`, the text-table suite
TEXT_DATA = {"text_columns": ["message"], "label_column": "category", "id_column": None, "group_column": None}


def _table(emails: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"message": (emails["subject"] + "\n" + emails["body"]).tolist(),
         "category": emails["label"].map({0: "ham", 1: "spam"}).tolist()}
    )  # fmt: skip


def _catalog(csv) -> dict:
    return {
        "emails": {"type": "pandas.CSVDataset", "filepath": str(csv)},
        "emails_suite": {"type": "yaml.YAMLDataset", "filepath": "conf/base/expectations/text_table.yml"},
    }


def _key(csv) -> str:
    return f"emails:{frame_digest(pd.read_csv(csv))[:12]}"


def test_runs_on_two_tables_are_named_apart_and_the_same_table_keeps_its_key(
    tmp_path, corpus_path, sample_emails, monkeypatch
):
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    _table(sample_emails.iloc[:300]).to_csv(first, index=False)
    _table(sample_emails.iloc[300:]).to_csv(second, index=False)
    params = {**SMALL, "data": TEXT_DATA}
    project = make_project(tmp_path, corpus_path, params, _catalog(first))
    client = MlflowClient(tracking_uri=store_uri(project))
    one = client.get_run(run(project, "quality", monkeypatch))
    again = client.get_run(run(project, "quality", monkeypatch))
    # the other table, in the same project
    (project / "conf" / "local" / "catalog.yml").write_text(
        (project / "conf" / "local" / "catalog.yml").read_text().replace(str(first), str(second))
    )
    other = client.get_run(run(project, "quality", monkeypatch))
    assert one.info.run_name == f"quality · {_key(first)}"  # a pipeline that trains nothing has no model kind
    assert one.data.tags["frugalml.pipeline"] == "quality" and one.data.tags["frugalml.dataset"] == _key(first)
    assert "frugalml.model_kind" not in one.data.tags
    assert again.info.run_name == one.info.run_name  # stable: the same table, the same key
    assert other.info.run_name == f"quality · {_key(second)}" != one.info.run_name
    assert one.info.status == again.info.status == other.info.status == "FINISHED"


def test_training_run_is_named_after_pipeline_table_and_model_kind(tmp_path, corpus_path, sample_emails, monkeypatch):
    csv = tmp_path / "my_mail.csv"
    _table(sample_emails.iloc[:300]).to_csv(csv, index=False)
    params = {**SMALL, "data": TEXT_DATA, "train": {**SMALL["train"], "privacy": {"enabled": False}}}
    # 300 rows are too few for DP at epsilon 1 to learn much: this project's governance policy waives DP
    project = make_project(tmp_path, corpus_path, params, _catalog(csv), governance={"privacy": {"require_dp": False}})
    finished = MlflowClient(tracking_uri=store_uri(project)).get_run(run(project, "modelling", monkeypatch))
    assert finished.info.status == "FINISHED"
    assert finished.info.run_name == f"modelling · {_key(csv)} · ngram_bag"
    tags = finished.data.tags
    assert tags["mlflow.runName"] == finished.info.run_name
    assert (tags["frugalml.pipeline"], tags["frugalml.dataset"], tags["frugalml.model_kind"]) == (
        "modelling",
        _key(csv),
        "ngram_bag",
    )


def test_run_whose_table_is_missing_fails_and_keeps_the_pipeline_name(tmp_path, corpus_path, monkeypatch):
    project = make_project(tmp_path, corpus_path, {**SMALL, "data": TEXT_DATA}, _catalog(tmp_path / "absent.csv"))
    with pytest.raises(Exception, match="absent.csv"):
        run(project, "quality", monkeypatch)
    client = MlflowClient(tracking_uri=store_uri(project))
    failed = client.search_runs([client.get_experiment_by_name("frugalml").experiment_id])[0]
    assert failed.info.status == "FAILED"
    assert failed.info.run_name == "quality" and failed.data.tags["frugalml.pipeline"] == "quality"
    assert "frugalml.dataset" not in failed.data.tags  # no table was loaded: no key is made up


def test_a_distill_run_is_named_after_its_student():
    from frugalml.run_names import model_kind

    params = {"train": {"model": {"kind": "pretrained"}}, "distill": {"student": {"kind": "hybrid"}}}
    assert model_kind(params) == "pretrained" and model_kind(params, student=True) == "hybrid"
    assert model_kind({"train": {"model": {"kind": "pretrained"}}}, student=True) == "ngram_bag"  # the default
