"""``kedro run --pipeline=compress`` after ``train``: the compressed model, its report and frontier in MLflow, the
compressed model's evaluation through the predictions gate, its pyfunc on raw text; the gate on dev accuracy;
``compress.enabled`` adding the stage to the default chain; bad parameters before any work."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from frugalml.errors import CompressionError
from frugalml.nodes.compress import check_compression
from frugalml.nodes.split import split_dataset
from tests.helpers import DATA, SMALL, run, store_uri, train_only_project

pytestmark = pytest.mark.slow

COMPRESS = {**SMALL, "compress": {"precision": "int4-kmeans", "compare": ["int8"], "latency_batches": [1, 16],
                                  "latency_repeats": 1, "on_accuracy_drop": "warn"}}  # fmt: skip


def _project(tmp_path, corpus_path, sample_emails, params):
    project, _ = train_only_project(tmp_path, corpus_path, sample_emails, params)
    _, _, _, test, *_ = split_dataset(sample_emails, {"gold_dev_size": 0}, DATA, 0)
    test.to_parquet(project / "data" / "03_primary" / "test_gold.parquet")
    return project


def test_compress_after_train_logs_the_model_report_and_its_evaluation(
    tmp_path, corpus_path, sample_emails, monkeypatch
):
    project = _project(tmp_path, corpus_path, sample_emails, COMPRESS)
    run(project, "train", monkeypatch)
    run_id = run(project, "compress", monkeypatch)
    client = MlflowClient(tracking_uri=store_uri(project))
    finished = client.get_run(run_id)
    metrics = finished.data.metrics
    assert metrics["compress.size_ratio"] > 4  # int4 codebooks of the bag, the idf at 8 bits
    assert "compressed_test.accuracy" in metrics  # the compressed model was evaluated on the test rows
    report = json.loads((project / "data" / "08_reporting" / "compression_report.json").read_text())
    assert set(report["variants"]) == {"int4-kmeans", "int8"} and report["chosen"] == "int4-kmeans"
    assert report["calibration_rows"] == len(pd.read_parquet(project / "data" / "03_primary" / "dev_labelled.parquet"))
    assert report["variants"]["int8"]["size_ratio"] < report["variants"]["int4-kmeans"]["size_ratio"]
    artifacts = {a.path for a in client.list_artifacts(run_id, "compression")}
    assert {"compression/compression_report.json", "compression/compression_frontier.png"} <= artifacts
    gate = project / "data" / "08_reporting"
    assert (gate / "quality" / "compressed.predictions_report.json").is_file()  # the gate ran on its predictions
    mlflow.set_tracking_uri(store_uri(project))
    loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/compressed_model")
    raw = pd.DataFrame({"subject": ["Re: lunch", "WIN $$$ NOW"], "body": ["See you at noon.", "Click here"]})
    predicted = loaded.predict(raw)
    assert list(predicted.columns) == ["label", "probability_ham", "probability_spam"]
    versions = client.search_model_versions("name='frugalml-compressed-classifier'")
    assert [v.run_id for v in versions] == [run_id]


def test_the_gate_refuses_a_model_that_lost_too_much_dev_accuracy():
    report = {"chosen": "int4-kmeans", "variants": {"int4-kmeans": {"dev_accuracy_drop": 0.03}}}
    with pytest.raises(
        CompressionError, match=r"loses 0.0300 dev accuracy .* more than compress.max_dev_accuracy_drop"
    ):
        check_compression(object(), report, {"precision": "int4-kmeans", "max_dev_accuracy_drop": 0.02})
    candidate = object()
    assert (
        check_compression(candidate, report, {"precision": "int4-kmeans", "max_dev_accuracy_drop": 0.03}) is candidate
    )
    assert check_compression(candidate, report, {"precision": "int4-kmeans", "on_accuracy_drop": "warn"}) is candidate


def test_compress_enabled_puts_the_stage_in_the_default_chain(tmp_path, corpus_path, sample_emails, monkeypatch):
    from frugalml.pipeline_registry import register_pipelines

    project = _project(tmp_path, corpus_path, sample_emails, COMPRESS)
    monkeypatch.chdir(project)
    assert "compress_classifier_node" not in {n.name for n in register_pipelines()["__default__"].nodes}
    params = {**COMPRESS, "compress": {**COMPRESS["compress"], "enabled": True}}
    (project / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(params))
    default = {n.name for n in register_pipelines()["__default__"].nodes}
    assert {"compress_classifier_node", "compressed.evaluate_classifier_node"} <= default


@pytest.mark.parametrize(
    ("compress", "match"),
    [({"precision": "int3"}, "compress.precision"), ({"compare": ["int8", "fp4"]}, "compress.compare"),
     ({"latency_batches": [0]}, "latency batch sizes must be >= 1"), ({"group_weights": 4}, "group_weights"),
     ({"prune_ffn": 1.0}, "prune_ffn"), ({"prune_importance": "gradient"}, "prune_importance"),
     ({"prune_hidden": 1.0}, "prune_hidden"),
     ({"activations": "fixed"}, "compress.activations"), ({"activation_observer": "max"}, "activation_observer")],
)  # fmt: skip
def test_bad_compress_parameters_fail_before_any_work(  # noqa: PLR0917  # pytest fixtures and parameters
    tmp_path, corpus_path, sample_emails, monkeypatch, compress, match
):
    project = _project(tmp_path, corpus_path, sample_emails, {**SMALL, "compress": compress})
    with pytest.raises(Exception, match=match) as raised:
        run(project, "compress", monkeypatch)
    assert "ParameterError" in repr(raised.value) or "parameter" in str(raised.value).lower()
    assert not (project / "data" / "08_reporting" / "compression_report.json").exists()
