"""Wiring: the weak_label pipeline labels or abstains on every pool row and reports each LF."""

from frugalml.runner import run_in_memory
from tests.helpers import stage


def test_every_pool_row_is_labelled_or_abstained(sample_emails):
    pool, dev_gold = sample_emails.iloc[:200].drop(columns=["label"]), sample_emails.iloc[200:260]
    out = run_in_memory(
        stage("weak_label"),
        {"unlabelled_pool": pool, "dev_gold": dev_gold},
        params={"weak_label": {"progress": False, "label_model_epochs": 100}},
    )
    labelled, abstained = out["weak_labels"], out["weak_abstained"]
    assert len(labelled) + len(abstained) == len(pool)
    assert set(labelled["email_id"]).isdisjoint(abstained["email_id"])
    assert labelled["label"].isin([0, 1]).all() and (labelled["label_source"] == "weak").all()
    assert {"lf", "coverage"} <= set(out["lf_summary"].columns) and len(out["lf_summary"]) > 0
