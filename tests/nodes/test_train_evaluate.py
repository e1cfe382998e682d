"""Training and evaluation on real e-mails; metrics checked against scikit-learn and hand computations."""

from __future__ import annotations

import matplotlib.figure
import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from frugalml.errors import EmptyDatasetError, ModelError
from frugalml.nodes.evaluate import classification_metrics, evaluate_classifier, expected_calibration_error
from frugalml.nodes.split import split_dataset, validate_text_dataset
from frugalml.nodes.train import check_dp_compatible, train_text_classifier

FAST = {"epochs": 6, "progress": False, "privacy": {"enabled": False}}  # DP is on by default; these test the model


@pytest.fixture(scope="module")
def sets(sample_emails):
    validated, _ = validate_text_dataset(sample_emails, {})
    train, dev, _, test, _, _ = split_dataset(validated, {"gold_dev_size": 0}, {}, 0)
    return train, dev, test


def test_trains_to_a_useful_accuracy_on_600_real_emails(sets):
    train, dev, test = sets
    model, history, report = train_text_classifier(train, dev, FAST, {}, 0)
    assert report == {"enabled": False}
    metrics, report, figure, predictions = evaluate_classifier(model, test, {}, {})
    assert report["accuracy"] > 0.9
    assert report["roc_auc"] > 0.95
    assert len(history["dev_loss"]) >= 1 and history["best_epoch"]["value"] >= 0
    assert isinstance(figure, matplotlib.figure.Figure)
    assert len(predictions) == len(test) and predictions["probability_positive"].between(0, 1).all()
    assert metrics["accuracy"]["value"] == report["accuracy"]


def test_training_is_reproducible_with_a_seed(sets):
    train, dev, test = sets
    first, _, _ = train_text_classifier(train, dev, {**FAST, "epochs": 2}, {}, 3)
    second, _, _ = train_text_classifier(train, dev, {**FAST, "epochs": 2}, {}, 3)
    assert np.array_equal(first.predict_proba(test), second.predict_proba(test))


def test_bf16_autocast_runs_on_cpu(sets):
    train, dev, test = sets
    model, _, _ = train_text_classifier(train, dev, {**FAST, "precision": "bf16", "epochs": 3}, {}, 0)
    _, report, _, _ = evaluate_classifier(model, test, {}, {})
    assert report["accuracy"] > 0.85


def test_hidden_layer_model_trains(sets):
    train, dev, test = sets
    params = {**FAST, "model": {"embedding_dim": 16, "hidden_dim": 16, "dropout": 0.1}}
    model, _, _ = train_text_classifier(train, dev, params, {}, 0)
    assert evaluate_classifier(model, test, {}, {})[1]["accuracy"] > 0.85


def test_empty_or_one_class_training_sets_are_refused(sets):
    train, dev, _ = sets
    with pytest.raises(EmptyDatasetError, match="train has 0"):
        train_text_classifier(train.iloc[:0], dev, FAST, {}, 0)
    with pytest.raises(EmptyDatasetError, match="no rows of label"):
        train_text_classifier(train[train["label"] == 0], dev, FAST, {}, 0)


def test_cuda_request_without_gpu_is_a_clear_error(sets):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    train, dev, _ = sets
    with pytest.raises(ModelError, match="no CUDA device"):
        train_text_classifier(train, dev, {**FAST, "device": "cuda"}, {}, 0)


def test_batchnorm_is_refused():
    with pytest.raises(ModelError, match="BatchNorm1d"):
        check_dp_compatible(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)))


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    p_pos = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p_pos).astype(int)
    probabilities = np.stack([1 - p_pos, p_pos], axis=1)
    report = classification_metrics(probabilities, y, positive=1, threshold=0.5, bins=10)
    predicted = (p_pos >= 0.5).astype(int)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert report["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p_pos))
    assert report["confusion_matrix"] == skm.confusion_matrix(y, predicted).tolist()
    # labels drawn from the predicted probabilities: well calibrated, small ECE
    assert report["ece"] < 0.08


def test_ece_of_an_overconfident_model():
    probabilities = np.array([[0.0, 1.0]] * 10)
    y = np.array([1] * 7 + [0] * 3)
    assert expected_calibration_error(probabilities, y, bins=10) == pytest.approx(0.3)


def test_private_training_spends_at_most_its_epsilon_and_still_learns(sets):
    train, dev, test = sets
    params = {**FAST, "epochs": 4, "batch_size": 32, "lr": 0.05,
              "privacy": {"enabled": True, "target_epsilon": 8.0, "max_grad_norm": 1.0}}  # fmt: skip
    model, history, report = train_text_classifier(train, dev, params, {}, 0)
    assert report["enabled"] and 0 < report["epsilon"] <= 8.0 + 0.1
    assert report["delta"] == pytest.approx(1 / (10 * len(train)))
    assert report["noise_multiplier"] > 0 and report["steps"] > 0
    epsilons = [point["value"] for point in history["epsilon"]]
    assert epsilons == sorted(epsilons) and len(epsilons) == len(history["dev_loss"])
    assert evaluate_classifier(model, test, {}, {})[1]["accuracy"] > 0.6


def test_virtual_steps_run_large_logical_batches_in_physical_chunks(sets):
    train, dev, _ = sets
    params = {**FAST, "epochs": 1, "batch_size": 64,
              "privacy": {"enabled": True, "target_epsilon": 8.0, "max_physical_batch_size": 16}}  # fmt: skip
    _, _, report = train_text_classifier(train, dev, params, {}, 0)
    assert report["max_physical_batch_size"] == 16
    assert report["physical_steps"] >= 3 * report["steps"]  # Poisson batches of ~64 rows in chunks of 16


@pytest.mark.parametrize(
    ("privacy", "extra", "message"),
    [
        ({"target_epsilon": 0}, {}, "target_epsilon"),
        ({"target_epsilon": float("nan")}, {}, "target_epsilon"),
        ({"target_delta": -1}, {}, "target_delta"),
        ({"target_delta": 0.5}, {}, "must be below 1/N"),
        ({"accountant": "gdp2"}, {}, "accountant"),
        ({"target_epsilon": 1000}, {}, "too large for the prv accountant.*use accountant: rdp"),
        ({}, {"batch_size": 10_000}, "larger than the"),
    ],
)
def test_bad_privacy_settings_fail_before_training(sets, privacy, extra, message):
    from frugalml.errors import ParameterError

    train, dev, _ = sets
    with pytest.raises(ParameterError, match=message):
        train_text_classifier(train, dev, {**FAST, **extra, "privacy": {"enabled": True, **privacy}}, {}, 0)


def test_membership_inference_sees_an_overfit_model_and_not_a_random_split(sets):
    from frugalml.nodes.evaluate import membership_inference

    train, dev, test = sets
    overfit, _, _ = train_text_classifier(train, dev, {**FAST, "epochs": 30, "patience": 30, "lr": 0.1}, {}, 0)
    attack = membership_inference(overfit, train, test, {})
    assert attack["auc"] > 0.55 and attack["rows"] == min(len(train), len(test))
    # the same "attack" between two halves of unseen data is at chance
    halves = membership_inference(overfit, test.iloc[::2], test.iloc[1::2], {})
    assert abs(halves["auc"] - 0.5) < 0.1
