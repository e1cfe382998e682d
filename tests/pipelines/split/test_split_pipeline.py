"""Wiring: the split pipeline partitions the validated rows into train, dev, gold dev, test and the pool."""

from frugalml.runner import run_in_memory
from tests.helpers import stage

PARTS = ["train_labelled", "dev_labelled", "dev_gold", "test_gold", "unlabelled_pool"]


def test_the_parts_are_disjoint_and_cover_every_row(sample_emails):
    rows = sample_emails.iloc[:300]
    out = run_in_memory(stage("split"), {"emails_validated": rows}, params={"split": {"gold_dev_size": 20}})
    ids = [set(out[part]["email_id"]) for part in PARTS]
    assert sum(len(part) for part in ids) == len(rows) == len(set().union(*ids))
    assert len(out["dev_gold"]) == 20 and len(out["test_gold"]) > 0 and len(out["train_labelled"]) > 0
    assert out["split_metrics"]["train_rows"]["value"] == len(out["train_labelled"])
