"""frugalml.runner: the one way tests, benchmarks and notebooks run the registered pipelines in memory."""

import pytest

from frugalml.runner import catalog_inputs, run_in_memory, slice_pipeline
from tests.helpers import REPO, stage


def test_a_slice_starts_after_the_given_inputs_and_ends_at_the_outputs():
    piece = slice_pipeline(stage("weak_label"), ["lf_votes", "unlabelled_pool"], ["weak_labels"])
    assert [node.name for node in piece.nodes] == ["fit_label_model_node"]


def test_configuration_inputs_come_from_the_catalog_and_unknown_ones_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the catalog's relative paths resolve under the project, not the caller's folder
    loaded = catalog_inputs(stage("quality"), ["emails", "drift_reference"], REPO / "conf")
    assert set(loaded) == {"emails_suite"} and loaded["emails_suite"]
    from kedro.pipeline import Node, Pipeline

    unknown = Pipeline([Node(func=len, inputs="no_such_dataset", outputs="n", name="count")])
    with pytest.raises(ValueError, match="no_such_dataset"):
        catalog_inputs(unknown, [], REPO / "conf")


def test_a_missing_input_and_a_bad_override_are_refused(sample_emails):
    from frugalml.errors import ParameterError

    with pytest.raises(ValueError, match="dev_gold"):
        run_in_memory(stage("weak_label"), {"unlabelled_pool": sample_emails}, conf_source=REPO / "conf")
    with pytest.raises(ParameterError, match="weak_label"):
        run_in_memory(
            stage("weak_label"),
            {"unlabelled_pool": sample_emails, "dev_gold": sample_emails},
            params={"weak_label": {"no_such_key": 1}},
            conf_source=REPO / "conf",
        )
