"""Wiring: the evaluate pipeline scores the model on the test rows and gates its predictions."""

from frugalml.nodes.train import train_text_classifier
from frugalml.runner import project_parameters, run_in_memory
from tests.helpers import FAST_TRAIN, stage, suite


def test_predictions_are_scored_and_gated(sample_emails):
    params = project_parameters({"train": FAST_TRAIN, "seed": 0})
    train, dev, test = sample_emails.iloc[:240], sample_emails.iloc[240:300], sample_emails.iloc[300:400]
    model, _, _ = train_text_classifier(train, dev, params["train"], params["data"], 0)
    out = run_in_memory(
        stage("evaluate"),
        {"text_classifier": model, "test_gold": test, "predictions_suite": suite("predictions")},
        params={"train": FAST_TRAIN},
    )
    assert 0 <= out["evaluation_metrics"]["accuracy"]["value"] <= 1
    assert out["evaluation_report"]["rows"] == len(test)
    assert len(out["test_predictions_checked"]) + len(out["predictions_gate_quarantine"]) == len(test)
