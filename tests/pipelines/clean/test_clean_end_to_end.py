"""The clean stage in real Kedro runs: flipped labels on real e-mails are quarantined before training, the
reports land in MLflow, and the stage re-runs alone from the catalog (without weak labels, with policy none)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import make_project, run, store_uri

pytestmark = pytest.mark.slow

PARAMS = {
    "split": {"gold_dev_size": 20},
    # 4,096 buckets: a hash space sized for ~400 training rows (the default 65,536 overfits them in one epoch);
    # one thread: see tests/nodes/test_cleaning.py; no DP: this test is about cleaning; batch 32: the default 256
    # gives ~400 rows two steps an epoch
    "train": {
        "epochs": 5,
        "batch_size": 32,
        "progress": False,
        "threads": 1,
        "features": {"buckets": 4096},
        "privacy": {"enabled": False},
    },
    "clean": {"policy": "remove", "progress": False},
}


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """``train.threads`` sets torch's process-wide thread count; give later tests the default back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_flipped_labels_are_quarantined_before_training(tmp_path, corpus_path, sample_emails, monkeypatch):
    truth = sample_emails["label"].astype(int).to_numpy()
    flipped = np.random.default_rng(11).random(len(truth)) < 0.1
    noisy = sample_emails.assign(label=np.where(flipped, 1 - truth, truth))
    batch = tmp_path / "noisy.parquet"
    noisy.to_parquet(batch)
    catalog = {"emails": {"type": "pandas.ParquetDataset", "filepath": str(batch)}}
    # this test is about cleaning, not DP: the final model trains without DP, so governance must allow that
    project = make_project(tmp_path, corpus_path, PARAMS, catalog, governance={"privacy": {"require_dp": False}})
    run_id = run(project, "modelling", monkeypatch)

    client = MlflowClient(tracking_uri=store_uri(project))
    finished = client.get_run(run_id)
    metrics = finished.data.metrics
    assert finished.info.status == "FINISHED" and metrics["test.accuracy"] > 0.8
    assert metrics["clean.removed"] == metrics["clean.label_issues"] > 0
    assert {"clean.cv.agreement", "clean.data_issues.near_duplicates", "clean.label_issues.spam"} <= set(metrics)
    artifacts = {a.path for a in client.list_artifacts(run_id, "cleaning")}
    reports = ("label_issues.html", "label_issues_summary.json", "label_review_queue.csv", "label_review_queue.json")
    assert {f"cleaning/{name}" for name in reports} <= artifacts
    assert "train_clean" in {d.dataset.name for d in finished.inputs.dataset_inputs}

    data = project / "data"
    train = pd.read_parquet(data / "03_primary" / "train_labelled.parquet")
    clean = pd.read_parquet(data / "03_primary" / "train_clean.parquet")
    quarantine = pd.read_parquet(data / "03_primary" / "clean_quarantine.parquet")
    pred_probs = pd.read_parquet(data / "04_feature" / "train_pred_probs.parquet")
    trained_on = pd.read_parquet(data / "05_model_input" / "train_set.parquet")
    assert len(clean) + len(quarantine) == len(train)  # no row lost: removed rows are in the quarantine
    assert set(pred_probs["email_id"]) == set(train["email_id"])
    assert set(trained_on["email_id"]) <= set(clean["email_id"])  # training read the cleaned set
    was_flipped = set(noisy.loc[flipped, "email_id"]) & set(train["email_id"])
    assert len(was_flipped & set(quarantine["email_id"])) >= 0.7 * len(was_flipped)
    queue = json.loads((data / "08_reporting" / "cleaning" / "label_review_queue.json").read_text())
    summary = json.loads((data / "08_reporting" / "cleaning" / "label_issues_summary.json").read_text())
    assert summary["filter_by"] == summary["exclude_by"] == "prune_by_noise_rate"  # exclude_by null: filter_by
    assert {row["action"] for row in queue} >= {"removed"} and all(row["body"] is not None for row in queue)

    # the stage alone, from the catalog: no weak_labels file, policy none -> train_clean = train_labelled
    (data / "03_primary" / "weak_labels.parquet").unlink(missing_ok=True)
    local = project / "conf" / "local" / "parameters.yml"
    local.write_text(yaml.safe_dump({**PARAMS, "clean": {"policy": "none", "progress": False}}))
    second = client.get_run(run(project, "clean", monkeypatch))
    assert second.data.metrics["clean.cv.skipped"] == 1.0 and second.data.metrics["clean.label_issues"] == 0
    passed = pd.read_parquet(data / "03_primary" / "train_clean.parquet")
    assert list(passed["email_id"]) == list(train["email_id"]) and (passed["label_source"] == "gold").all()
    assert pd.read_parquet(data / "04_feature" / "train_pred_probs.parquet").empty
