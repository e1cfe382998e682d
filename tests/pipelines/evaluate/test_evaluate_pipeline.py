"""Wiring: the evaluate pipeline scores the model on the test rows, draws the confusion matrix, gates the
predictions and ends with the summary and the useless-model check (fail by default, warn when asked)."""

import logging

import matplotlib.figure
import pandas as pd
import pytest

from frugalml.errors import ModelError
from frugalml.nodes.split import split_dataset
from frugalml.nodes.train import train_text_classifier
from frugalml.runner import project_parameters, run_in_memory
from tests.helpers import FAST_TRAIN, stage, suite

OUTPUTS = ["evaluation_metrics", "evaluation_report", "evaluation_plot", "evaluation_confusion_matrix",
           "test_predictions_checked", "predictions_gate_quarantine", "predictions_gate_report"]  # fmt: skip
USEFUL = {"epochs": 6, "progress": False, "privacy": {"enabled": False}}  # the node alone: no governance here


def group_table(emails: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """A 5-class table of real text: the label is the e-mail's corpus group (easy-ham-1, hard-ham-1, spam-1...)."""
    groups = sorted(emails["group"].unique())
    table = emails.assign(group_label=emails["group"].map({g: k for k, g in enumerate(groups)}))
    data = {"label_column": "group_label", "labels": list(range(len(groups))), "label_names": groups}
    return table, data


def stratified(table: pd.DataFrame, data: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train, dev and test rows of ``table``, stratified by its label (the sample is ordered by corpus group)."""
    train, dev, _, test, _, _ = split_dataset(table, {"gold_dev_size": 0}, data, 0)
    return train, dev, test


def inputs(model, test) -> dict:
    return {"text_classifier": model, "test_gold": test, "predictions_suite": suite("predictions")}


@pytest.fixture(scope="module")
def collapsed(sample_emails):
    """DP at epsilon 1 on 240 real rows: the noise swamps every weight but the bias; it predicts 'ham' only."""
    params = project_parameters({"train": FAST_TRAIN, "seed": 0})
    train, dev, test = sample_emails.iloc[:240], sample_emails.iloc[240:300], sample_emails.iloc[300:400]
    model, _, _ = train_text_classifier(train, dev, params["train"], params["data"], 0)
    return model, test


def test_predictions_are_scored_gated_and_summarised(sample_emails, caplog):
    train, dev, test = stratified(sample_emails, {})
    model, _, _ = train_text_classifier(train, dev, USEFUL, {}, 0)
    with caplog.at_level(logging.INFO, logger="frugalml"):
        out = run_in_memory(stage("evaluate"), inputs(model, test), outputs=OUTPUTS)
    metrics = out["evaluation_metrics"]
    assert metrics["accuracy"]["value"] > metrics["majority_baseline_accuracy"]["value"] + 0.1
    assert {"f1", "roc_auc", "class.ham.f1", "class.spam.f1", "macro_f1", "useless_model"} <= set(metrics)
    assert out["evaluation_report"]["rows"] == len(test)
    assert len(out["test_predictions_checked"]) + len(out["predictions_gate_quarantine"]) == len(test)
    assert isinstance(out["evaluation_confusion_matrix"], matplotlib.figure.Figure)
    assert out["predictions_gate_report"]["success"] and not out["predictions_gate_report"]["warnings"]
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluation on")]
    assert len(summary) == 1 and f"predictions gate: {len(test)} of {len(test)} rows passed" in summary[0]


def test_a_five_class_table_is_evaluated_by_its_own_names(sample_emails):
    table, data = group_table(sample_emails)
    train, dev, test = stratified(table, data)
    model, _, _ = train_text_classifier(train, dev, USEFUL, data, 0)
    out = run_in_memory(stage("evaluate"), inputs(model, test), outputs=OUTPUTS, params={"data": data})
    metrics, report = out["evaluation_metrics"], out["evaluation_report"]
    assert {f"class.{name}.f1" for name in data["label_names"]} <= set(metrics)
    assert {"macro_f1", "weighted_f1", "roc_auc_macro", "majority_baseline_accuracy"} <= set(metrics)
    assert "f1" not in metrics and report["headline"] == "macro_f1"
    assert len(report["confusion_matrix"]) == 5 and report["label_names"] == data["label_names"]
    assert out["predictions_gate_report"]["success"]


def test_a_collapsed_model_stops_the_run(collapsed):
    model, test = collapsed
    with pytest.raises(ModelError, match=r"predictions collapse to one class: all 100 test rows are predicted 'ham'"):
        run_in_memory(stage("evaluate"), inputs(model, test), outputs=OUTPUTS)


def test_warn_mode_lets_a_collapsed_model_through_with_warnings(collapsed, caplog):
    model, test = collapsed
    with caplog.at_level(logging.WARNING, logger="frugalml"):
        out = run_in_memory(
            stage("evaluate"), inputs(model, test), outputs=OUTPUTS, params={"evaluate": {"useless_model": "warn"}}
        )
    gate = out["predictions_gate_report"]
    assert gate["success"] and any("unique_value_count" in w for w in gate["warnings"])  # the suite saw it too
    assert out["evaluation_metrics"]["useless_model"]["value"] == 1.0
    warned = [r.getMessage() for r in caplog.records if "the model is not useful" in r.getMessage()]
    assert len(warned) == 1 and "is not above the majority-class baseline" in warned[0]
