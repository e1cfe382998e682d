"""End to end: real `kedro run`s in a temporary project with its own MLflow store.

Each test copies `conf/base` and `pyproject.toml` into a temp folder, writes `conf/local` overrides the
way a user would (catalog and parameters only), runs a Kedro session there and reads back the MLflow run.
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from frugalml.errors import ArchiveDigestError, ParameterError, SchemaError
from tests.helpers import CORPUS_SHA256, REPO, SMALL, make_project, run, store_uri

pytestmark = pytest.mark.slow


def test_default_pipeline_on_300_real_emails(tmp_path, corpus_path, monkeypatch):
    project = make_project(tmp_path, corpus_path, SMALL)
    run_id = run(project, "__default__", monkeypatch)
    client = MlflowClient(tracking_uri=store_uri(project))
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    metrics = finished.data.metrics
    for key in ("test.accuracy", "test.f1", "test.roc_auc", "test.ece", "ingest.emails_parsed", "train.dev_loss"):
        assert key in metrics, key
    # private by default: DP-SGD at epsilon 1, reported in MLflow and spent against the ledger. (~200 rows cannot
    # teach a model much at epsilon 1, so this test checks privacy, not accuracy: see the require_dp-off test.)
    assert finished.data.params["train.privacy.enabled"] == "True"
    assert 0 < metrics["train.epsilon"] <= 1.0 + 1e-6 and 0 <= metrics["train.clipped_share"] <= 1
    report = json.loads((project / "data" / "08_reporting" / "privacy_report.json").read_text())
    assert report["enabled"] and report["epsilon"] == pytest.approx(metrics["train.epsilon"])
    rows = round(32 / report["sample_rate"])  # q = batch / N
    assert report["delta"] == pytest.approx(1 / (10 * rows)) and report["accountant"] == "prv"
    assert {a.path for a in client.list_artifacts(run_id, "privacy")} == {"privacy/privacy_report.json"}
    assert metrics["ingest.messages_read"] == metrics["ingest.emails_parsed"] + metrics["ingest.emails_quarantined"]
    # parameters were logged by kedro-mlflow, flattened
    assert finished.data.params["train.features.buckets"] == "65536"
    # lineage: training inputs with digests, traced to the archive
    inputs = {d.dataset.name: d for d in finished.inputs.dataset_inputs}
    assert {"train_set", "dev_labelled", "test_gold", "emails", "spam_corpus_archive"} <= set(inputs)
    tags = {t.key: t.value for t in inputs["train_set"].tags}
    assert tags["archive_sha256"] == CORPUS_SHA256 and tags["mlflow.data.context"] == "training"
    assert finished.data.tags["lineage.archive_sha256"] == CORPUS_SHA256
    # the model: a pyfunc with a signature and an input example, loadable and usable
    model_uri = f"runs:/{run_id}/model"
    info = mlflow.models.get_model_info(model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    mlflow.set_tracking_uri(store_uri(project))
    loaded = mlflow.pyfunc.load_model(model_uri)
    test = pd.read_parquet(project / "data" / "03_primary" / "test_gold.parquet")
    predicted = loaded.predict(test[["subject", "body"]])
    agreement = (predicted["label"].to_numpy() == test["label"].to_numpy()).mean()
    assert agreement == pytest.approx(metrics["test.accuracy"])  # the logged model is the evaluated one
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/roc_reliability.png", "evaluation/evaluation_report.json"} <= artifacts
    assert (project / "data" / "02_intermediate" / "emails_quarantine.parquet").is_file()
    for gate in ("emails", "train_set", "predictions"):  # every gate's quarantine is kept, even when empty
        assert (project / "data" / "02_intermediate" / f"{gate}_gate_quarantine.parquet").is_file(), gate
    # quality gates: metrics per expectation, Data Docs and reports in the run
    assert metrics["quality.emails.passed"] == 1.0 and metrics["quality.training_set.passed"] == 1.0
    quality = {a.path for a in client.list_artifacts(run_id, "quality")}
    assert {"quality/data_docs_emails", "quality/emails_report.json", "quality/drift_report.html"} <= quality
    # a second run compares the new batch with the first model's training set: same era, no drift
    second = client.get_run(run(project, "quality", monkeypatch))
    assert second.data.metrics["quality.drift.checked"] == 1.0
    assert second.data.metrics["quality.drift.retrain_recommended"] == 0.0


def test_users_own_csv_runs_by_catalog_and_parameters_alone(tmp_path, corpus_path, sample_emails, monkeypatch):
    table = pd.DataFrame(
        {"message": (sample_emails["subject"] + "\n" + sample_emails["body"]).tolist(),
         "category": sample_emails["label"].map({0: "ham", 1: "spam"}).tolist()}
    )  # fmt: skip
    csv = tmp_path / "my_mail.csv"
    table.to_csv(csv, index=False)
    params = {
        **SMALL,
        "data": {"text_columns": ["message"], "label_column": "category", "id_column": None, "group_column": None},
        "train": {**SMALL["train"], "privacy": {"enabled": False}},
    }
    catalog = {
        "emails": {"type": "pandas.CSVDataset", "filepath": str(csv)},
        "emails_suite": {"type": "yaml.YAMLDataset", "filepath": "conf/base/expectations/text_table.yml"},
    }
    # 300 rows are too few for DP at epsilon 1 to learn much: this project's governance policy waives DP
    project = make_project(tmp_path, corpus_path, params, catalog, governance={"privacy": {"require_dp": False}})
    run_id = run(project, "modelling", monkeypatch)
    finished = MlflowClient(tracking_uri=store_uri(project)).get_run(run_id)
    assert finished.data.metrics["test.accuracy"] > 0.85
    assert csv.read_text().startswith("message,category")  # the user's file is input only


def test_user_csv_with_unknown_labels_names_column_and_values(tmp_path, corpus_path, sample_emails, monkeypatch):
    table = pd.DataFrame({"text": sample_emails["body"].tolist(), "label": sample_emails["label"].tolist()})
    table.loc[:4, "label"] = 9
    csv = tmp_path / "bad.csv"
    table.to_csv(csv, index=False)
    params = {**SMALL, "data": {"text_columns": ["text"], "id_column": None, "group_column": None}}
    catalog = {
        "emails": {"type": "pandas.CSVDataset", "filepath": str(csv)},
        "emails_suite": {"type": "yaml.YAMLDataset", "filepath": "conf/base/expectations/text_table.yml"},
    }
    project = make_project(tmp_path, corpus_path, params, catalog)
    with pytest.raises(SchemaError, match=r"column 'label'.*'9' \(5 rows\)"):
        run(project, "modelling", monkeypatch)
    assert not (project / "data" / "03_primary" / "train_labelled.parquet").exists()


def test_wrong_digest_stops_before_anything_is_written(tmp_path, corpus_path, monkeypatch):
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(corpus_path.read_bytes()[:500_000])
    project = make_project(tmp_path, truncated, SMALL)
    with pytest.raises(Exception, match="truncated, corrupted") as raised:
        run(project, "__default__", monkeypatch)
    chain, error = [], raised.value
    while error is not None:  # Kedro's runner may wrap the dataset error; the named one is in the chain
        chain.append(type(error))
        error = error.__cause__ or error.__context__
    assert ArchiveDigestError in chain
    data = project / "data"
    written = [p for p in data.rglob("*") if p.is_file() and "audit" not in p.parts] if data.exists() else []
    assert written == []
    # the failure itself is audited, and the chain stays intact
    from frugalml.governance.audit import AuditLog
    from frugalml.governance.context import local_key

    log = AuditLog(data / "audit" / "audit.jsonl", signer=local_key(project, create=False))
    assert log.verify().ok
    assert [r["kind"] for r in log.records()].count("pipeline.error") == 1


def test_parameter_typo_fails_before_any_work(tmp_path, corpus_path, monkeypatch):
    project = make_project(tmp_path, corpus_path, {**SMALL, "train": {"epochs": 2, "lerning_rate": 0.1}})
    with pytest.raises(ParameterError, match="train.lerning_rate"):
        run(project, "__default__", monkeypatch)
    assert not (project / "data").exists()


def test_quality_gate_stops_a_bad_batch_and_keeps_the_evidence(tmp_path, corpus_path, sample_emails, monkeypatch):
    import json

    import numpy as np

    from benchmarks.corruptions import CORRUPTIONS
    from frugalml.errors import DataQualityError

    corrupted, _, _ = CORRUPTIONS["60pct_rows_fail"](sample_emails, np.random.default_rng(0))
    batch = tmp_path / "batch.parquet"
    corrupted.to_parquet(batch)
    catalog = {"emails": {"type": "pandas.ParquetDataset", "filepath": str(batch)}}
    project = make_project(tmp_path, corpus_path, SMALL, catalog)
    with pytest.raises(DataQualityError, match="above max_quarantine_share"):
        run(project, "quality", monkeypatch)
    reporting = project / "data" / "08_reporting" / "quality"
    report = json.loads((reporting / "emails_report.json").read_text())
    assert report["success"] is False and report["rows_quarantined"] > 0.5 * len(corrupted)
    assert (reporting / "data_docs_emails" / "index.html").is_file()
    quarantine = pd.read_parquet(project / "data" / "02_intermediate" / "emails_gate_quarantine.parquet")
    assert len(quarantine) == report["rows_quarantined"]
    assert not (project / "data" / "02_intermediate" / "emails_validated.parquet").exists()


def test_profile_flag_writes_a_proposed_suite(tmp_path, corpus_path, sample_emails, monkeypatch):
    batch = tmp_path / "batch.parquet"
    sample_emails.to_parquet(batch)
    project = make_project(
        tmp_path, corpus_path, {**SMALL, "profile": True},
        {"emails": {"type": "pandas.ParquetDataset", "filepath": str(batch)}},
    )  # fmt: skip
    run(project, "quality", monkeypatch)
    proposal = yaml.safe_load((project / "data" / "08_reporting" / "quality" / "proposed_suite.yml").read_text())
    assert proposal["expectations"] and "review" in proposal["note"]
    assert (project / "conf" / "base" / "expectations" / "emails.yml").read_text() == (
        REPO / "conf" / "base" / "expectations" / "emails.yml"
    ).read_text()  # never applied
