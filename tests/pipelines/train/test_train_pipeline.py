"""Wiring: the train pipeline gates the training set, trains under DP (the default) and records ``train_set``."""

from frugalml.runner import run_in_memory
from tests.helpers import FAST_TRAIN, stage, suite


def test_training_is_private_and_train_set_is_what_the_model_saw(sample_emails):
    train, dev = sample_emails.iloc[:240], sample_emails.iloc[240:300]
    out = run_in_memory(
        stage("train"),
        {
            "train_clean": train,
            "dev_labelled": dev,
            "training_set_suite": suite("training_set"),
            "encoder_cache": None,
        },  # the kinds that embed text would cache here (None: in memory)
        params={"train": FAST_TRAIN},
        outputs=["text_classifier", "train_set", "privacy_report", "train_set_gate_quarantine"],
    )
    report = out["privacy_report"]
    assert report["enabled"] and 0 < report["epsilon"] <= 1.0 + 1e-6
    assert len(out["train_set"]) + len(out["train_set_gate_quarantine"]) == len(train)
    probabilities = out["text_classifier"].predict_proba(dev)
    assert probabilities.shape == (len(dev), 2)
