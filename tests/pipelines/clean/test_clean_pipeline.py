"""Wiring: the clean pipeline keeps or quarantines every labelled row, with a reason for each removal."""

from frugalml.runner import run_in_memory
from tests.helpers import FAST_TRAIN, stage


def test_every_labelled_row_is_kept_or_quarantined(sample_emails):
    train, dev = sample_emails.iloc[:240], sample_emails.iloc[240:300]
    out = run_in_memory(
        stage("clean"),
        {"train_labelled": train, "dev_labelled": dev, "weak_labels": None},
        params={"train": FAST_TRAIN, "clean": {"folds": 3}},
    )
    kept, removed = out["train_clean"], out["clean_quarantine"]
    assert len(kept) + len(removed) == len(train)
    assert set(kept["email_id"]).isdisjoint(removed["email_id"])
    assert removed["reason"].notna().all()
    assert out["label_issues_summary"] and "<html" in out["label_issues"].lower()
