"""The weak_label stage in a real Kedro run: hidden training labels, LF report and metrics in MLflow."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import SMALL, make_project, run

pytestmark = pytest.mark.slow


def test_default_chain_labels_the_pool_and_logs_the_lf_report(tmp_path, corpus_path, monkeypatch):
    params = SMALL | {"split": {"gold_dev_size": 40, "unlabelled_fraction": 0.5},
                      "weak_label": {"progress": False, "label_model_epochs": 100}}  # fmt: skip
    project = make_project(tmp_path, corpus_path, params)
    run_id = run(project, "__default__", monkeypatch)
    client = MlflowClient(tracking_uri=f"sqlite:///{project}/mlruns/mlflow.db")
    finished = client.get_run(run_id)
    metrics = finished.data.metrics
    assert metrics["weak_label.n_lfs"] >= 20 and metrics["weak_label.coverage"] > 0.8
    artifacts = {a.path for a in client.list_artifacts(run_id, "weak_label")}
    assert {"weak_label/lf_summary.csv", "weak_label/lf_summary.png"} <= artifacts
    pool = pd.read_parquet(project / "data" / "03_primary" / "unlabelled_pool.parquet")
    weak = pd.read_parquet(project / "data" / "03_primary" / "weak_labels.parquet")
    abstained = pd.read_parquet(project / "data" / "03_primary" / "weak_abstained.parquet")
    assert len(pool) > 50 and pool["label"].isna().all()
    assert len(weak) + len(abstained) == len(pool)
    assert set(weak["label_source"]) == {"weak"} and weak["label"].notna().all()
    summary = pd.read_csv(project / "data" / "08_reporting" / "weak_label" / "lf_summary.csv")
    assert summary["loo_delta"].notna().all() and summary["rationale"].str.len().min() > 20
