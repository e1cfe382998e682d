"""``kedro run --pipeline=distill`` after a DP ``train``: the student, its report and evaluation in MLflow, its
pyfunc on raw text; the ledger charges the student's spend on every row it read (training rows twice, pool
rows once); a student without DP is refused like any non-private training; ``distill.enabled`` adds the stage."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from frugalml.governance.audit import AuditLog
from frugalml.governance.context import local_key
from frugalml.governance.ledger import per_row_spent, row_hashes
from frugalml.nodes.split import split_dataset
from tests.helpers import DATA, SMALL, run, store_uri, train_only_project

pytestmark = pytest.mark.slow

DP_TRAIN = {**SMALL["train"], "epochs": 2, "features": {"buckets": 4096}}
DISTILL = {**SMALL, "train": DP_TRAIN, "distill": {"on_accuracy_drop": "warn", "train": {"epochs": 2}}}
TEXT = ["subject", "body"]


def _project(tmp_path, corpus_path, sample_emails, params):
    project, train = train_only_project(tmp_path, corpus_path, sample_emails, params)
    _, _, _, test, *_ = split_dataset(sample_emails, {"gold_dev_size": 0}, DATA, 0)
    primary = project / "data" / "03_primary"
    test.to_parquet(primary / "test_gold.parquet")
    pool = pd.concat([test.iloc[:50], train.iloc[:5]]).drop(columns=["label"])  # 5 e-mails the teacher read
    pool.to_parquet(primary / "unlabelled_pool.parquet")
    return project, train, pool


def test_distill_after_dp_train_charges_the_ledger_and_logs_the_student(
    tmp_path, corpus_path, sample_emails, monkeypatch
):
    project, train, pool = _project(tmp_path, corpus_path, sample_emails, DISTILL)
    run(project, "train", monkeypatch)
    run_id = run(project, "distill", monkeypatch)
    client = MlflowClient(tracking_uri=store_uri(project))
    finished = client.get_run(run_id)
    assert finished.info.run_name.startswith("distill · ") and finished.info.run_name.endswith("ngram_bag")
    metrics = finished.data.metrics
    assert "distill.student_dev_accuracy" in metrics and "distilled_test.accuracy" in metrics
    assert "distill_train.dev_loss" in metrics
    reports = project / "data" / "08_reporting"
    report = json.loads((reports / "distillation_report.json").read_text())
    teacher = json.loads((reports / "privacy_report.json").read_text())
    student = json.loads((reports / "distill_privacy_report.json").read_text())
    assert report["rows"] == {"train": len(train), "pool": 50}
    assert report["privacy"]["epsilon_per_row"]["train"] == pytest.approx(teacher["epsilon"] + student["epsilon"])
    assert (reports / "quality" / "distilled.predictions_report.json").is_file()  # the gate ran on its predictions
    # the ledger: two spends; a training row has spent both, a pool row only the student's
    log = AuditLog(project / "data" / "audit" / "audit.jsonl", signer=local_key(project, create=False))
    spends = [r["data"] for r in log.records() if r["kind"] == "privacy.spend"]
    assert len(spends) == 2
    spent_train = per_row_spent(log, row_hashes(train, TEXT))
    pool_hashes = row_hashes(pool.iloc[:50], TEXT)
    spent_pool = per_row_spent(log, pool_hashes)
    assert np.allclose(spent_train, teacher["epsilon"] + student["epsilon"])
    # (the ledger charges a row for every spend holding any of its values: a pool e-mail whose subject a training
    # e-mail shares has spent the teacher's epsilon too)
    apart = ~np.isin(pool_hashes, row_hashes(train, TEXT)).any(axis=1)
    assert apart.sum() > 40 and np.allclose(spent_pool[apart], student["epsilon"])
    assert (spent_pool >= student["epsilon"] - 1e-9).all()
    mlflow.set_tracking_uri(store_uri(project))
    loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/distilled_model")
    raw = pd.DataFrame({"subject": ["Re: lunch", "WIN $$$ NOW"], "body": ["See you at noon.", "Click here"]})
    assert list(loaded.predict(raw).columns) == ["label", "probability_ham", "probability_spam"]
    versions = client.search_model_versions("name='frugalml-distilled-classifier'")
    assert [v.run_id for v in versions] == [run_id]

    # switching DP off for the student is a non-private training of private rows: refused without an approval
    params = {**DISTILL, "train": {**DP_TRAIN, "privacy": {"enabled": False}}}
    (project / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(params))
    with pytest.raises(Exception, match="without differential privacy needs a second person") as refused:
        run(project, "distill", monkeypatch)
    assert "GovernanceError" in repr(refused.value)
    assert len([r for r in log.records() if r["kind"] == "privacy.spend"]) == 2  # nothing more was spent


def test_distill_enabled_puts_the_stage_in_the_default_chain(tmp_path, corpus_path, sample_emails, monkeypatch):
    from frugalml.pipeline_registry import register_pipelines

    project, _, _ = _project(tmp_path, corpus_path, sample_emails, DISTILL)
    monkeypatch.chdir(project)
    assert "distill_classifier_node" not in {n.name for n in register_pipelines()["__default__"].nodes}
    params = {**DISTILL, "distill": {**DISTILL["distill"], "enabled": True}}
    (project / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(params))
    default = {n.name for n in register_pipelines()["__default__"].nodes}
    assert {"distill_classifier_node", "distilled.evaluate_classifier_node"} <= default


def test_bad_distill_parameters_fail_before_any_work(tmp_path, corpus_path, sample_emails, monkeypatch):
    params = {**DISTILL, "distill": {"train": {"privacy": {"target_epsilon": 50}}}}
    project, _, _ = _project(tmp_path, corpus_path, sample_emails, params)
    with pytest.raises(Exception, match="cannot be set here"):
        run(project, "distill", monkeypatch)
    assert not (project / "data" / "08_reporting" / "distillation_report.json").exists()
