"""The distill stage's nodes on real e-mails: the teacher's softened labels over training and pool rows, the
student trained on them by the train node, the report's figures and epsilon per row, the gate; a 5-class table;
bad parameters and inputs named before any work."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from frugalml.errors import DistillationError, ParameterError, SchemaError
from frugalml.labels import prob_columns
from frugalml.nodes.distill import (
    SOURCE_COLUMN,
    check_distillation,
    distill_classifier,
    distillation_set,
    report_distillation,
    student_params,
)
from frugalml.nodes.split import split_dataset, validate_text_dataset
from frugalml.nodes.train import train_text_classifier
from frugalml.params import validate_parameters
from tests.nodes.test_evaluate_metrics import group_table

NO_DP = {"epochs": 4, "progress": False, "features": {"buckets": 4096}, "privacy": {"enabled": False}}
DATA = {}  # the corpus's defaults (subject, body; labels 0/1)
PROBS = prob_columns([0, 1])


@pytest.fixture(scope="module")
def sets(sample_emails):
    validated, _ = validate_text_dataset(sample_emails, DATA)
    train, dev, _, test, _, _ = split_dataset(validated, {"gold_dev_size": 0}, DATA, 0)
    teacher, _, _ = train_text_classifier(train, dev, NO_DP, DATA, 0)
    # the pool: test rows with their labels hidden, and three e-mails the teacher was trained on
    pool = pd.concat([test.iloc[:40], train.iloc[:3]]).drop(columns=["label"])
    return {"train": train, "dev": dev, "test": test, "teacher": teacher, "pool": pool}


def test_teacher_labels_training_and_pool_rows_softened_and_mixed(sets):
    train, pool, teacher = sets["train"], sets["pool"], sets["teacher"]
    rows = distillation_set(teacher, train, pool, {"temperature": 1.0, "label_weight": 0.0}, DATA)
    assert rows[SOURCE_COLUMN].value_counts().to_dict() == {"train": len(train), "pool": 40}  # 3 read already
    probs = rows[PROBS].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1) and (probs >= 0).all()
    expected = teacher.predict_proba(pd.concat([train, pool.iloc[:40]]))
    assert np.allclose(probs, expected, atol=1e-6)  # T = 1, no label weight: the teacher's own probabilities
    assert (rows["label"].to_numpy() == np.array([0, 1])[probs.argmax(axis=1)]).all()
    hot = distillation_set(teacher, train, pool, {"temperature": 8.0, "label_weight": 0.0}, DATA)
    assert np.abs(hot[PROBS].to_numpy() - 0.5).mean() < np.abs(probs - 0.5).mean()  # softer at a higher T
    own = distillation_set(teacher, train, pool, {"label_weight": 1.0}, DATA)
    hand = own[own[SOURCE_COLUMN] == "train"]
    assert (hand["label"].to_numpy() == train["label"].to_numpy()).all()
    assert np.array_equal(hand[PROBS].to_numpy(), np.eye(2)[train["label"].to_numpy()])  # its own label only
    only_pool = distillation_set(teacher, train, pool, {"rows": ["pool"]}, DATA)
    assert len(only_pool) == len(pool) and set(only_pool[SOURCE_COLUMN]) == {"pool"}


def test_student_learns_the_soft_labels_and_the_report_composes_epsilon(sets):
    rows = distillation_set(sets["teacher"], sets["train"], sets["pool"], {}, DATA)
    dp = {**NO_DP, "epochs": 2, "privacy": {"refuse_signal_to_noise": 0}}
    student, history, privacy = distill_classifier(rows, sets["dev"], dp, {"train": {"epochs": 3}}, DATA, 0)
    assert privacy["enabled"] and 0 < privacy["epsilon"] <= 1.0 + 1e-6  # DP-SGD, train.privacy's target
    assert len(history["train_loss"]) <= 3  # distill.train over train's settings
    teacher_privacy = {"enabled": True, "epsilon": 0.7}
    report, metrics = report_distillation(student, sets["teacher"], sets["dev"], rows, privacy, teacher_privacy, DATA)
    assert report["rows"] == {"train": len(sets["train"]), "pool": 40}
    per_row = report["privacy"]["epsilon_per_row"]
    assert per_row == {"train": pytest.approx(0.7 + privacy["epsilon"]), "pool": pytest.approx(privacy["epsilon"])}
    assert report["student"]["kind"] == "ngram_bag" and 0 <= report["agreement"] <= 1
    assert report["dev_accuracy_drop"] == pytest.approx(
        report["teacher"]["dev_accuracy"] - report["student"]["dev_accuracy"], abs=1e-6
    )
    assert metrics["student_dev_accuracy"]["value"] == report["student"]["dev_accuracy"]
    plain, _, no_dp = distill_classifier(rows, sets["dev"], NO_DP, {}, DATA, 0)
    unprivate, _ = report_distillation(plain, sets["teacher"], sets["dev"], rows, no_dp, teacher_privacy, DATA)
    assert unprivate["privacy"]["epsilon_per_row"] == {"train": None, "pool": None}  # no guarantee to state


def test_a_narrow_transformer_student_learns_from_a_multitask_teacher(sets):
    """``distill.student`` names any kind: a narrow transformer (hashed words, 1 block of 32) learns the teacher's
    soft labels; a multi-task teacher's extra tasks are not passed on (the student learns its main task only)."""
    tasks = {"multitask": {"tasks": [{"name": "difficulty", "column": "group", "labels": ["easy", "hard"],
                                      "map": {"easy-ham*": "easy", "hard-ham*": "hard"}}]}}  # fmt: skip
    teacher, _, _ = train_text_classifier(sets["train"], sets["dev"], {**NO_DP, **tasks}, DATA, 0)
    rows = distillation_set(teacher, sets["train"], sets["pool"], {}, DATA)
    narrow = {"kind": "transformer", "transformer": {"vocab": 4096, "dim": 32, "layers": 1, "heads": 2,
                                                     "ffn_dim": 64, "max_tokens": 128, "batch_size": 32}}  # fmt: skip
    student, _, _ = distill_classifier(rows, sets["dev"], {**NO_DP, **tasks}, {"student": narrow,
                                       "train": {"epochs": 4, "batch_size": 32}}, DATA, 0)  # fmt: skip
    assert student.kind == "transformer" and student.config.dim == 32 and not getattr(student, "tasks", None)
    report, _ = report_distillation(student, teacher, sets["dev"], rows, {"enabled": False}, {"enabled": False}, DATA)
    assert report["student"]["kind"] == "transformer" and report["agreement"] >= 0.8, report


def test_a_five_class_teacher_distils(sample_emails):
    table, data = group_table(sample_emails)
    validated, _ = validate_text_dataset(table, data)
    train, dev, _, _, _, _ = split_dataset(validated, {"gold_dev_size": 0}, data, 0)
    teacher, _, _ = train_text_classifier(train, dev, NO_DP, data, 0)
    rows = distillation_set(teacher, train, train.iloc[:0], {}, data)
    assert rows[prob_columns(data["labels"])].shape == (len(train), 5)
    student, _, _ = distill_classifier(rows, dev, NO_DP, {}, data, 0)
    assert student.predict_proba(dev).shape == (len(dev), 5)


def test_the_gate_refuses_a_student_that_lost_too_much():
    report = {"dev_accuracy_drop": 0.05, "student": {"kind": "ngram_bag"}}
    with pytest.raises(DistillationError, match=r"loses 0.0500 dev accuracy .* distill.max_dev_accuracy_drop 0.01"):
        check_distillation(object(), report, {})
    student = object()
    assert check_distillation(student, report, {"on_accuracy_drop": "warn"}) is student
    assert check_distillation(student, report, {"max_dev_accuracy_drop": 0.05}) is student


def test_student_settings_keep_train_privacy():
    merged = student_params({"epochs": 9, "lr": 0.1, "privacy": {"target_epsilon": 0.5}}, {"train": {"epochs": 2}})
    assert merged["epochs"] == 2 and merged["lr"] == 0.1 and merged["privacy"] == {"target_epsilon": 0.5}
    assert merged["targets"] == "soft" and merged["model"]["kind"] == "ngram_bag"


@pytest.mark.parametrize(
    ("distill", "match"),
    [({"train": {"privacy": {"enabled": False}}}, r"\['privacy'\] cannot be set here"),
     ({"train": {"epoch": 3}}, "epoch"), ({"train": {"lr": -1}}, "lr"), ({"temperature": 0}, "temperature"),
     ({"rows": []}, "rows"), ({"rows": ["train", "train"]}, "each source at most once"),
     ({"rows": ["test"]}, "rows"), ({"label_weight": 1.5}, "label_weight"),
     ({"student": {"kind": "gpt"}}, "unknown model kind")],
)  # fmt: skip
def test_bad_distill_parameters_are_named(distill, match):
    with pytest.raises(ParameterError, match=match):
        validate_parameters({"distill": distill})


def test_messy_pool_rows_are_labelled_not_dropped(sets):
    """Missing or empty text, odd types and a label column full of NaN in the pool: every row is labelled."""
    pool = sets["pool"].iloc[:6].copy()
    pool["body"] = pool["body"].astype(object)
    pool.iloc[0, pool.columns.get_loc("body")] = None
    pool.iloc[1, pool.columns.get_loc("subject")] = ""
    pool.iloc[2, pool.columns.get_loc("body")] = 12345
    pool["label"] = np.nan
    rows = distillation_set(sets["teacher"], sets["train"], pool, {"rows": ["pool"]}, DATA)
    assert len(rows) == 6 and np.allclose(rows[PROBS].to_numpy().sum(axis=1), 1)


def test_bad_inputs_are_named_before_the_teacher_runs(sets):
    teacher, train, pool = sets["teacher"], sets["train"], sets["pool"]
    with pytest.raises(SchemaError, match=r"pool rows lack the text column\(s\) \['body'\]"):
        distillation_set(teacher, train, pool.drop(columns=["body"]), {}, DATA)
    with pytest.raises(SchemaError, match="training rows lack their label column 'label'"):
        distillation_set(teacher, train.drop(columns=["label"]), pool, {}, DATA)
    with pytest.raises(DistillationError, match="no rows to distil from"):
        distillation_set(teacher, train.iloc[:0], pool.iloc[:0], {}, DATA)
    other = {"labels": [0, 1, 2], "label_names": ["a", "b", "c"]}
    with pytest.raises(DistillationError, match=r"the teacher predicts labels \[0, 1\], the data's labels are"):
        distillation_set(teacher, train, pool, {}, other)
    with pytest.raises(DistillationError, match="dev set is empty"):
        report_distillation(teacher, teacher, sets["dev"].iloc[:0], train.assign(distill_source="train"), {}, {}, DATA)
