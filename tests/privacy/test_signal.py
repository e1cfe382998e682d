"""Can DP learn here? The signal-to-noise pre-check (refuse / warn with the numbers) and the model width rule."""

from __future__ import annotations

import math

import pytest

from frugalml.errors import ParameterError
from frugalml.nodes.train import check_training_rows, train_text_classifier
from frugalml.params import TrainParams, parse_params
from frugalml.privacy.signal import calibrated_noise_multiplier, noisy_steps, signal_to_noise
from tests.helpers import DATA

EIGHT_CLASSES = {**DATA, "labels": list(range(8)), "label_names": [f"c{k}" for k in range(8)], "positive_label": 0}


def test_the_bound_is_sqrt_steps_times_batch_over_sigma_sqrt_d():
    estimate = signal_to_noise(rows=4000, batch_size=250, epochs=5, noise_multiplier=2.0, trainable=65536)
    assert estimate.steps == noisy_steps(4000, 250, 5) == 80
    assert estimate.ratio == pytest.approx(math.sqrt(80) * 250 / (2.0 * 256))
    assert "trainable parameters" in estimate.explain() and "N = 4000" in estimate.explain()


def test_the_noise_multiplier_is_the_one_training_uses_and_more_rows_help():
    from frugalml.privacy.training import PrivateTraining

    config = parse_params(TrainParams, {}, name="train")
    private = PrivateTraining(config.privacy, rows=4000, batch_size=256, epochs=5, seed=0)
    sigma = calibrated_noise_multiplier(target_epsilon=1.0, delta=1 / 40000, rows=4000, batch_size=256, epochs=5,
                                        accountant="prv")  # fmt: skip
    assert sigma == private.noise_multiplier
    small = check_training_rows({"privacy": {"refuse_signal_to_noise": 0, "min_signal_to_noise": 0}}, 800,
                                source="of the test")  # fmt: skip
    large = check_training_rows({}, 4000, source="of the test")
    assert small is not None and large is not None and large.ratio > 3 * small.ratio


def test_a_tiny_table_under_dp_is_refused_with_the_numbers_and_the_remedies():
    with pytest.raises(ParameterError) as refused:
        check_training_rows({}, 200, source="of 'train_clean'")
    message = str(refused.value)
    assert "signal-to-noise bound" in message and "N = 200" in message and "65,540 trainable" in message
    assert "train.features.buckets 65536 -> 16384" in message and "target_epsilon" in message


def test_below_the_warning_threshold_the_run_goes_on_with_a_warning():
    with pytest.warns(RuntimeWarning, match="signal-to-noise bound"):
        estimate = check_training_rows({"privacy": {"refuse_signal_to_noise": 0}}, 200, source="of the test")
    assert estimate is not None and estimate.ratio < 1


def test_the_full_corpus_default_passes_quietly(recwarn):
    estimate = check_training_rows({}, 4078, source="of the corpus")  # the default split's training rows
    assert estimate is not None and estimate.ratio >= 2.5
    assert not [w for w in recwarn if "signal-to-noise" in str(w.message)]


def test_no_check_without_dp_and_bad_thresholds_are_named():
    assert check_training_rows({"privacy": {"enabled": False}}, 10, source="of the test") is None
    with pytest.raises(ParameterError, match="refuse_signal_to_noise 5 is above min_signal_to_noise 2.5"):
        parse_params(TrainParams, {"privacy": {"refuse_signal_to_noise": 5}}, name="train")


def test_more_classes_get_a_wider_bag_by_rule():
    model = parse_params(TrainParams, {}, name="train").model
    assert model.embedding_dim == "auto"
    assert [model.resolve_embedding_dim(c) for c in (2, 3, 8)] == [1, 2, 7]
    assert (
        parse_params(TrainParams, {"model": {"embedding_dim": 16}}, name="train").model.resolve_embedding_dim(8) == 16
    )
    for bad in (0, -1, 2.5, "wide", True):
        with pytest.raises(ParameterError, match="embedding_dim"):
            parse_params(TrainParams, {"model": {"embedding_dim": bad}}, name="train")
    # more classes: more trainable weights, so the same table has a lower bound
    binary = check_training_rows({}, 4078, source="of the test", data=DATA)
    eight = check_training_rows({"privacy": {"refuse_signal_to_noise": 0, "min_signal_to_noise": 0}}, 4078,
                                source="of the test", data=EIGHT_CLASSES)  # fmt: skip
    assert binary is not None and eight is not None
    assert eight.trainable == 65536 * 7 + 7 * 8 + 8 and eight.ratio < binary.ratio


def test_the_trained_model_is_built_with_the_rule_and_reports_its_bound(sample_emails):
    groups = sorted(sample_emails["group"].unique())[:4]
    table = sample_emails[sample_emails["group"].isin(groups)]
    table = table.assign(label=table["group"].map({g: k for k, g in enumerate(groups)}))
    data = {**DATA, "labels": [0, 1, 2, 3], "label_names": [g.replace("-", "_") for g in groups], "positive_label": 0}
    dev = table.groupby("label", group_keys=False).head(10)
    train = table.drop(dev.index)
    params = {"epochs": 1, "progress": False, "features": {"buckets": 1024}, "batch_size": 16,
              "privacy": {"refuse_signal_to_noise": 0}}  # fmt: skip
    with pytest.warns(RuntimeWarning, match="signal-to-noise"):
        model, metrics, report = train_text_classifier(train, dev, params, data, 0)
    assert model.model_config["embedding_dim"] == 3 and model.predict_proba(dev).shape == (len(dev), 4)
    assert 0 < metrics["dp_signal_to_noise"]["value"] < 2.5 and report["enabled"]
