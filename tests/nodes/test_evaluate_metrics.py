"""Evaluation for two classes or K, on real e-mails: K-class figures checked against scikit-learn, the binary
metric names kept, the confusion matrix figure, and the useless-model check on a real model that collapsed."""

from __future__ import annotations

import logging

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from frugalml.errors import ModelError, ParameterError
from frugalml.nodes.evaluate import (
    check_useful_model,
    classification_metrics,
    evaluate_classifier,
    evaluation_summary,
    metric_keys,
    one_vs_rest_auc,
    plot_confusion_matrix,
    useless_model_problems,
)
from frugalml.nodes.split import split_dataset, validate_text_dataset
from frugalml.nodes.train import train_text_classifier
from frugalml.runner import project_parameters

NO_DP = {"epochs": 6, "progress": False, "privacy": {"enabled": False}}  # DP is on by default; these test metrics
#: DP at epsilon 1 on 240 rows: the noise swamps every weight but the bias, so the model predicts the majority
#: class (docs/privacy.md: every binary run below 1,600 rows collapsed); the learnability pre-check only warns
DP_TINY = {"epochs": 2, "progress": False, "features": {"buckets": 4096}, "privacy": {"refuse_signal_to_noise": 0}}


def group_table(emails: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """A 5-class table of real text: the label is the e-mail's corpus group (easy-ham-1, hard-ham-1, spam-1...)."""
    groups = sorted(emails["group"].unique())
    table = emails.assign(group_label=emails["group"].map({g: k for k, g in enumerate(groups)}))
    data = {"label_column": "group_label", "labels": list(range(len(groups))), "label_names": groups}
    return table, data


@pytest.fixture(scope="module")
def groups(sample_emails):
    table, data = group_table(sample_emails)
    validated, _ = validate_text_dataset(table, data)
    train, dev, _, test, _, _ = split_dataset(validated, {"gold_dev_size": 0}, data, 0)
    model, _, _ = train_text_classifier(train, dev, NO_DP, data, 0)
    return model, test, data


@pytest.fixture(scope="module")
def binary(sample_emails):
    validated, _ = validate_text_dataset(sample_emails, {})
    train, dev, _, test, _, _ = split_dataset(validated, {"gold_dev_size": 0}, {}, 0)
    model, _, _ = train_text_classifier(train, dev, NO_DP, {}, 0)
    return model, test


@pytest.fixture(scope="module")
def collapsed(sample_emails):
    params = project_parameters({"train": DP_TINY})
    train, dev, test = sample_emails.iloc[:240], sample_emails.iloc[240:300], sample_emails.iloc[300:400]
    model, _, _ = train_text_classifier(train, dev, params["train"], params["data"], 0)
    return model, test


def test_five_class_figures_agree_with_sklearn(groups, tmp_path):
    model, test, data = groups
    metrics, report, figure, predictions = evaluate_classifier(model, test, {}, data)
    probabilities = model.predict_proba(test)
    y_true, y_pred = test["group_label"].to_numpy(), probabilities.argmax(axis=1)
    assert report["classes"] == 5 and report["test_classes"] == 5
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert report["weighted_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted"))
    assert report["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y_true, probabilities, multi_class="ovr"))
    assert report["majority_baseline_accuracy"] == pytest.approx(test["group_label"].value_counts(normalize=True).max())
    assert report["macro_f1"] > 0.5 and report["error_reduction_over_majority"] > 0.3  # it learned the groups
    per_class_f1 = skm.f1_score(y_true, y_pred, average=None, labels=range(5))
    for k, name in enumerate(data["label_names"]):
        for figure_name in ("precision", "recall", "f1", "support"):
            assert f"class.{name}.{figure_name}" in metrics  # e.g. class.easy-ham-1.f1
        assert metrics[f"class.{name}.f1"]["value"] == pytest.approx(per_class_f1[k])
    # the positive-class figures do not pose as the headline of a K-class task
    assert report["headline"] == "macro_f1"
    assert not {"precision", "recall", "f1", "roc_auc", "average_precision"} & set(metrics)
    assert isinstance(figure, matplotlib.figure.Figure)
    assert predictions["probability_predicted"].to_numpy() == pytest.approx(probabilities.max(axis=1))
    assert set(predictions["predicted"]) <= set(data["labels"])
    confusion = plot_confusion_matrix(report)
    confusion.savefig(tmp_path / "confusion_matrix.png")
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.asarray(report["confusion_matrix"]).sum() == len(test)
    assert report["useless_model_problems"] == []
    check_useful_model(report, predictions, {})  # a useful model passes


def test_positive_class_figures_of_a_k_class_task_only_when_asked(groups):
    model, test, data = groups
    data = {**data, "positive_label": data["label_names"].index("spam-2")}
    _, report, _, _ = evaluate_classifier(model, test, {"positive_class_metrics": True}, data)
    is_pos = test["group_label"].to_numpy() == data["positive_label"]
    predicted = model.predict_proba(test).argmax(axis=1) == data["positive_label"]
    assert (
        report["f1"]
        == pytest.approx(skm.f1_score(is_pos, predicted))
        == report["per_class"][data["positive_label"]]["f1"]
    )
    assert report["headline"] == "macro_f1"  # still the headline


def test_binary_metric_names_keep_their_meaning(binary):
    model, test = binary
    metrics, report, _, predictions = evaluate_classifier(model, test, {}, {})
    y, p_spam = test["label"].to_numpy(), model.predict_proba(test)[:, 1]
    predicted = (p_spam >= 0.5).astype(int)
    assert report["headline"] == "f1"
    assert metrics["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert metrics["precision"]["value"] == pytest.approx(skm.precision_score(y, predicted))
    assert metrics["recall"]["value"] == pytest.approx(skm.recall_score(y, predicted))
    assert metrics["f1"]["value"] == pytest.approx(skm.f1_score(y, predicted)) == metrics["class.spam.f1"]["value"]
    assert metrics["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, p_spam))
    assert metrics["average_precision"]["value"] == pytest.approx(skm.average_precision_score(y, p_spam))
    assert {"log_loss", "ece", "macro_f1", "weighted_f1", "class.ham.f1", "majority_baseline_accuracy"} <= set(metrics)
    assert "roc_auc_macro" not in metrics and metrics["useless_model"]["value"] == 0.0
    assert predictions["probability_positive"].to_numpy() == pytest.approx(p_spam)
    assert report["accuracy"] > 0.9 and report["majority_baseline_accuracy"] < 0.8


def test_metric_keys_are_safe_and_distinct():
    names = ["easy-ham-1", "très bien", "a/b", "a b", "v1.2", "", "✓"]
    keys = metric_keys(names, [0, 1, 2, 3, 4, 5, 6])
    assert keys == ["easy-ham-1", "tr_s_bien", "a_b_2", "a_b_3", "v1_2", "5", "6"]
    assert metric_keys(["x_1", "x", "x"], [0, 1, 2]) == ["0", "1", "2"]  # suffixes would collide: label values


def test_one_vs_rest_auc_skips_a_class_absent_from_the_test_rows():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), size=200)
    y = rng.integers(0, 3, size=200)  # class 3 never occurs
    expected = np.mean([skm.roc_auc_score(y == k, probabilities[:, k]) for k in range(3)])
    assert one_vs_rest_auc(probabilities, y) == pytest.approx(expected)


def test_collapsed_model_fails_with_the_numbers_and_what_to_try(collapsed):
    model, test = collapsed
    _, report, _, predictions = evaluate_classifier(model, test, {}, {})
    assert report["predicted_classes"] == 1 and report["test_classes"] == 2  # the real model collapsed
    # collapsed, no gain over the majority, macro-F1 below chance
    assert len(report["useless_model_problems"]) == 3
    majority = f"{report['majority_baseline_accuracy']:.4f}"
    with pytest.raises(ModelError) as error:
        check_useful_model(report, predictions, {})
    message = str(error.value)
    assert f"all {len(test)} test rows are predicted 'ham'" in message
    assert f"test accuracy {report['accuracy']:.4f} is not above the majority-class baseline {majority}" in message
    remedies = ("more labelled data", "train.privacy.target_epsilon", "raise_privacy_budget", "train.model.hidden_dim",
                "train.model.kind: pretrained", "evaluate.useless_model: warn")  # fmt: skip
    for remedy in remedies:
        assert remedy in message, remedy


def test_warn_mode_only_warns(collapsed, caplog):
    model, test = collapsed
    _, report, _, predictions = evaluate_classifier(model, test, {"useless_model": "warn"}, {})
    with caplog.at_level(logging.INFO, logger="frugalml"):
        assert check_useful_model(report, predictions, {"useless_model": "warn"}) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("predictions collapse to one class" in w for w in warnings)
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluation on"))
    assert f"vs majority baseline {report['majority_baseline_accuracy']:.4f}" in summary
    assert "macro-F1" in summary and "ham" in summary and "spam" in summary


def test_the_margin_over_the_majority_baseline():
    y = np.r_[np.zeros(70, dtype=int), np.ones(30, dtype=int)]
    probabilities = np.tile([0.9, 0.1], (100, 1))
    probabilities[70:72] = [0.2, 0.8]  # right on 2 of the 30 minority rows, majority elsewhere: 0.72 vs 0.70
    report = classification_metrics(probabilities, y, positive=1, threshold=0.5, bins=10, names=["ham", "spam"])
    report["label_names"] = ["ham", "spam"]
    assert report["majority_baseline_accuracy"] == pytest.approx(0.7) and report["accuracy"] == pytest.approx(0.72)
    assert report["error_reduction_over_majority"] == pytest.approx(0.02 / 0.3)
    assert not any("baseline's errors" in p for p in useless_model_problems(report, 0.05, 0.05))  # 6.7% >= 5%
    (problem, at_chance) = useless_model_problems(report, 0.1, 0.05)
    assert "fixes 6.7% of the baseline's errors" in problem and "asks for 10.0%" in problem
    assert "macro-F1" in at_chance and "not above chance 0.5000" in at_chance


def test_a_model_that_gives_up_on_a_class_fails_at_chance_macro_f1():
    # 72% accuracy against a 70% majority fixes 6.7% of its errors (enough at 0.05), but the minority is
    # recalled 2 times in 30: macro-F1 0.479, below the 0.5 of guessing at the class shares
    y = np.r_[np.zeros(70, dtype=int), np.ones(30, dtype=int)]
    probabilities = np.tile([0.9, 0.1], (100, 1))
    probabilities[70:72] = [0.2, 0.8]
    report = classification_metrics(probabilities, y, positive=1, threshold=0.5, bins=10, names=["ham", "spam"])
    report["label_names"] = ["ham", "spam"]
    assert report["chance_macro_f1"] == 0.5
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y, probabilities.argmax(1), average="macro"))
    assert report["macro_f1_gain_over_chance"] == pytest.approx((report["macro_f1"] - 0.5) / 0.5)
    (problem,) = useless_model_problems(report, 0.05, 0.05)
    assert f"macro-F1 {report['macro_f1']:.4f} is not above chance 0.5000 (1 / 2 classes" in problem
    assert "evaluate.min_macro_f1_gain_over_chance asks for 5.0%" in problem
    # a model that also recalls the minority clears the bar: 14 of 30 spam found, no ham lost
    probabilities[70:84] = [0.2, 0.8]
    report = classification_metrics(probabilities, y, positive=1, threshold=0.5, bins=10, names=["ham", "spam"])
    assert report["macro_f1_gain_over_chance"] > 0.05
    assert useless_model_problems(report | {"label_names": ["ham", "spam"]}, 0.05, 0.05) == []
    # a 4-class table: chance is 1/4
    four = classification_metrics(np.eye(4)[np.arange(40) % 4], np.arange(40) % 4, positive=1, threshold=0.5,
                                  bins=10)  # fmt: skip
    assert four["chance_macro_f1"] == 0.25 and four["macro_f1_gain_over_chance"] == pytest.approx(1.0)


def test_a_one_class_test_set_has_no_baseline_to_beat():
    probabilities = np.tile([0.2, 0.8], (20, 1))
    report = classification_metrics(probabilities, np.ones(20, dtype=int), positive=1, threshold=0.5, bins=10)
    assert report["test_classes"] == 1 and np.isnan(report["error_reduction_over_majority"])
    assert useless_model_problems(report, 0.05, 0.05) == []
    assert "one class only: no baseline to beat" in evaluation_summary(report)


@pytest.mark.parametrize(
    ("params", "key"),
    [({"useless_model": "maybe"}, "useless_model"), ({"min_error_reduction_over_majority": 1.5}, "min_error"),
     ({"min_macro_f1_gain_over_chance": -0.1}, "min_macro_f1_gain_over_chance"),
     ({"positive_class_metrics": "sometimes"}, "positive_class_metrics"), ({"min_gain": 0.1}, "min_gain")],
)  # fmt: skip
def test_bad_evaluate_parameters_are_named(params, key):
    with pytest.raises(ParameterError, match=key):
        check_useful_model({}, pd.DataFrame(), params)
