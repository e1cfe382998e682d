"""Small tables under DP: the batch adapts (``train.batch_size: auto``), a fixed batch that cannot fit is refused
before the gates run, and a refused or failed training leaves the previous drift reference (``train_set``) as it is.

The Kedro runs are real sessions on real e-mails (the helpers of ``tests/helpers.py``).
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from frugalml.errors import ParameterError, SchemaError
from frugalml.hooks import frame_digest
from frugalml.nodes.split import split_dataset
from frugalml.nodes.train import check_training_rows, max_training_rows, train_text_classifier
from frugalml.params import TrainParams, parse_params
from tests.helpers import DATA, SMALL, bad_soft_labels, make_project, run, train_only_project

FAST = {"epochs": 2, "progress": False, "features": {"buckets": 4096}, "privacy": {"refuse_signal_to_noise": 0}}


def test_auto_batch_is_a_quarter_of_a_small_training_set_and_256_from_1024_rows():
    private = parse_params(TrainParams, {}, name="train")
    assert private.batch_size == "auto"  # the default
    assert [private.resolve_batch_size(n) for n in (1, 3, 78, 259, 1023, 1024, 4258)] == [1, 1, 19, 64, 255, 256, 256]
    plain = parse_params(TrainParams, {"privacy": {"enabled": False}}, name="train")
    assert plain.resolve_batch_size(78) == 256  # plain mini-batches: no N constraint
    assert parse_params(TrainParams, {"batch_size": "64"}, name="train").resolve_batch_size(78) == 64  # `--params`


@pytest.mark.parametrize("value", [0, -3, 2.5, "big", True, None])
def test_batch_size_must_be_a_positive_number_or_auto(value):
    with pytest.raises(ParameterError, match=r"parameter 'train.batch_size': .*positive whole number or 'auto'"):
        parse_params(TrainParams, {"batch_size": value}, name="train")


@pytest.mark.parametrize(
    "split",
    [
        {},
        {"test_fraction": 0.3, "dev_fraction": 0.2, "gold_dev_size": 20},
        {"gold_dev_size": 0},
        {"unlabelled_fraction": 0.3},
        {"strategy": "temporal"},
    ],
)
def test_max_training_rows_bounds_the_real_split(sample_emails, split):
    table = sample_emails.copy()
    table.loc[table.index[:25], "label"] = pd.NA  # unlabelled rows may come back as weak labels
    train, *_, pool, _ = split_dataset(table, split, DATA, 0)
    bound = max_training_rows(table, split, DATA)
    assert bound >= len(train) + len(pool)  # every row that can reach training
    assert bound == len(train) + len(pool)  # and no more: the bound is the split's arithmetic


def test_max_training_rows_leaves_a_missing_column_to_the_split(sample_emails):
    assert max_training_rows(sample_emails.drop(columns="label"), {}, DATA) is None
    assert max_training_rows(sample_emails.drop(columns="group"), {"strategy": "temporal"}, DATA) is None


def test_check_training_rows_names_the_parameter_and_the_value_to_set():
    with pytest.raises(ParameterError, match=r"train.batch_size 256 is larger than the at most 78 training rows of "
                       r"'x'.*--params train.batch_size=auto \(19 here.*or a number up to 78"):  # fmt: skip
        check_training_rows({"batch_size": 256}, 78, source="of 'x'")
    with pytest.raises(ParameterError, match=r"target_delta 0.02 must be below 1/N.*N = 78"):
        check_training_rows({"privacy": {"target_delta": 0.02}}, 78, source="of 'x'")
    plumbing = {"privacy": {"refuse_signal_to_noise": 0}}  # 78 rows cannot learn at epsilon 1: tests/privacy
    check_training_rows(plumbing, 78, source="of 'x'")  # auto fits any table
    check_training_rows({**plumbing, "batch_size": 78}, 78, source="of 'x'")
    check_training_rows({"batch_size": 256, "privacy": {"enabled": False}}, 78, source="of 'x'")


def test_auto_batch_trains_a_small_table_under_dp_with_epsilon_accounted(sample_emails):
    train, dev = sample_emails.iloc[:60], sample_emails.iloc[60:100]
    _, _, report = train_text_classifier(train, dev, FAST, DATA, 0)
    assert report["batch_size"] == 15 and report["sample_rate"] == pytest.approx(15 / 60)
    assert report["steps"] <= 2 * 4 and 0 < report["epsilon"] <= 1.0 + 1e-6  # round(1/q) = 4 steps an epoch
    assert report["delta"] == pytest.approx(1 / 600)
    with pytest.raises(ParameterError, match=r"larger than the 60 training rows.*train.batch_size=auto \(15 here"):
        train_text_classifier(train, dev, {**FAST, "batch_size": 256}, DATA, 0)


# ---- real Kedro runs ---------------------------------------------------------------------------------------


def _small_csv(tmp_path, sample_emails, rows=120):
    table = pd.DataFrame({"message": (sample_emails["subject"] + "\n" + sample_emails["body"]).tolist()[:rows],
                          "category": sample_emails["label"].map({0: "ham", 1: "spam"}).tolist()[:rows]})  # fmt: skip
    csv = tmp_path / "small.csv"
    table.to_csv(csv, index=False)
    columns = {"text_columns": ["message"], "label_column": "category", "id_column": None, "group_column": None}
    params = {"data": columns}
    catalog = {
        "emails": {"type": "pandas.CSVDataset", "filepath": str(csv)},
        "emails_suite": {"type": "yaml.YAMLDataset", "filepath": "conf/base/expectations/text_table.yml"},
    }
    return params, catalog


@pytest.mark.slow
@pytest.mark.parametrize("table", ["ingest_120", "user_csv_120"])
def test_small_table_with_a_fixed_dp_batch_fails_before_the_gates(tmp_path, corpus_path, sample_emails, monkeypatch,
                                                                   table):  # fmt: skip
    params = {**SMALL, "train": {"batch_size": 256, "progress": False}}  # default DP, the old default batch
    if table == "ingest_120":
        params, catalog, pipeline = {**params, "ingest": {"sample": {"n": 120, "seed": 0}}}, None, "__default__"
    else:
        user, catalog = _small_csv(tmp_path, sample_emails)
        params, pipeline = {**params, **user}, "modelling"
    project = make_project(tmp_path, corpus_path, params, catalog)
    started = time.perf_counter()
    with pytest.raises(ParameterError, match=r"train.batch_size 256 is larger than the at most \d+ training rows "
                       r"that the 1\d\d rows of 'emails' can give.*--params train.batch_size=auto"):  # fmt: skip
        run(project, pipeline, monkeypatch)
    assert time.perf_counter() - started < 60  # seconds (session start and the ingest of 120 messages), not minutes
    data = project / "data"
    assert not (data / "08_reporting" / "quality" / "emails_report.json").exists()  # the e-mail gate never ran
    assert not (data / "02_intermediate" / "emails_gate_quarantine.parquet").exists()
    assert not (data / "03_primary" / "train_labelled.parquet").exists()  # nor the split, nor anything after it
    assert not (data / "05_model_input" / "train_set.parquet").exists()


@pytest.mark.slow
def test_small_table_trains_under_dp_with_the_auto_batch(tmp_path, corpus_path, monkeypatch):
    params = {**SMALL, "ingest": {"sample": {"n": 120, "seed": 0}}, "clean": {"policy": "none"},
              "train": {"progress": False, "privacy": {"refuse_signal_to_noise": 0}}}  # fmt: skip
    # (78 rows at epsilon 1 learn nothing: the learnability check is told to warn; this test is about the batch)
    project = make_project(tmp_path, corpus_path, params)
    run(project, "__default__", monkeypatch)
    report = json.loads((project / "data" / "08_reporting" / "privacy_report.json").read_text())
    rows = len(pd.read_parquet(project / "data" / "05_model_input" / "train_set.parquet"))
    assert rows < 256 and report["batch_size"] == rows // 4
    assert report["sample_rate"] == pytest.approx(report["batch_size"] / rows)
    assert 0 < report["epsilon"] <= 1.0 + 1e-6 and report["delta"] == pytest.approx(1 / (10 * rows))


@pytest.mark.slow
def test_a_failed_training_leaves_the_previous_drift_reference(tmp_path, corpus_path, sample_emails, monkeypatch):
    params = {**SMALL, "train": {**SMALL["train"], "epochs": 2, "features": {"buckets": 4096}}}
    project, train = train_only_project(tmp_path, corpus_path, sample_emails, params)
    run(project, "train", monkeypatch)
    reference = project / "data" / "05_model_input" / "train_set.parquet"
    first = frame_digest(pd.read_parquet(reference))
    assert len(pd.read_parquet(reference)) == len(train)

    bad_soft_labels(train).to_parquet(project / "data" / "03_primary" / "train_clean.parquet")
    (project / "conf" / "local" / "parameters.yml").write_text(
        json.dumps({**params, "train": {**params["train"], "targets": "soft"}})
    )
    with pytest.raises(SchemaError, match="soft labels"):
        run(project, "train", monkeypatch)
    gate = json.loads((project / "data" / "08_reporting" / "quality" / "train_set_report.json").read_text())
    assert gate["success"]
    assert frame_digest(pd.read_parquet(reference)) == first  # the gate passed, training failed: reference intact


def test_train_set_is_written_only_after_training():
    from frugalml.pipelines.train.pipeline import create_pipeline

    pipeline = create_pipeline()
    writer = next(node for node in pipeline.nodes if "train_set" in node.outputs)
    trainer = next(node for node in pipeline.nodes if "model_training" in node.tags)
    assert set(trainer.outputs) & set(writer.inputs)  # Kedro runs the writer only once training has returned
    assert "train_set" not in trainer.inputs and "train_set" not in {o for n in pipeline.nodes for o in n.inputs}
