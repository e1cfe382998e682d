"""``train.multitask`` end to end: a user's `kedro run` of the default chain with a second task (easy vs hard ham,
from the corpus folder), set by parameters alone; the per-task figures reach MLflow and the logged pyfunc serves
every task on raw text."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import SMALL, make_project, run, store_uri

pytestmark = pytest.mark.slow

DIFFICULTY = {"name": "difficulty", "column": "group", "labels": ["easy", "hard"], "label_names": ["easy", "hard"],
              "map": {"easy-ham*": "easy", "hard-ham*": "hard"}, "weight": 0.5}  # fmt: skip


def test_a_multitask_run_logs_per_task_metrics_and_serves_every_task(tmp_path, corpus_path, monkeypatch):
    params = {**SMALL, "train": {**SMALL["train"], "multitask": {"tasks": [DIFFICULTY]}}}
    project = make_project(tmp_path, corpus_path, params)
    run_id = run(project, "__default__", monkeypatch)
    finished = MlflowClient(tracking_uri=store_uri(project)).get_run(run_id)
    metrics = finished.data.metrics
    assert finished.data.params["train.privacy.enabled"] == "True"  # DP on: every label of a row is clipped together
    report = json.loads((project / "data" / "08_reporting" / "evaluation_report.json").read_text())
    task = report["tasks"]["difficulty"]
    test = pd.read_parquet(project / "data" / "03_primary" / "test_gold.parquet")
    assert task["rows"] == int(test["group"].str.contains("ham").sum())  # the ham rows: spam has no label here
    for key in ("accuracy", "macro_f1", "majority_baseline_accuracy", "rows"):
        assert metrics[f"test.task.difficulty.{key}"] == pytest.approx(task[key])
    assert "train.dev_task_difficulty_accuracy" in metrics
    mlflow.set_tracking_uri(store_uri(project))
    served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(test[["subject", "body"]])
    assert {"difficulty_label", "difficulty_probability_easy", "difficulty_probability_hard"} <= set(served.columns)
    predicted = (test["label"].to_numpy() == served["label"].to_numpy()).mean()
    assert predicted == pytest.approx(metrics["test.accuracy"])  # the main task's label, as a single-task model's
