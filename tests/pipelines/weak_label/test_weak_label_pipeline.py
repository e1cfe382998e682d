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


def test_the_stage_is_apply_then_label_model_then_summary():
    nodes = stage("weak_label").nodes  # topologically sorted
    assert [n.name for n in nodes] == [
        "apply_labelling_functions_node",
        "fit_label_model_node",
        "summarise_weak_labels_node",
    ]
    assert nodes[0].outputs == ["lf_votes"] and "lf_votes" in nodes[1].inputs and "lf_votes" in nodes[2].inputs


def test_a_class_balance_of_the_wrong_length_is_named(sample_emails):
    import pytest

    from frugalml.errors import ParameterError

    pool, dev_gold = sample_emails.iloc[:50].drop(columns=["label"]), sample_emails.iloc[200:260]
    with pytest.raises(ParameterError, match="class_balance has 3 entries"):
        run_in_memory(
            stage("weak_label"),
            {"unlabelled_pool": pool, "dev_gold": dev_gold},
            params={"weak_label": {"progress": False, "class_balance": [0.2, 0.3, 0.5]}},
        )
