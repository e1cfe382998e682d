"""The evaluate stage's nodes: score the model on the gold test rows, then end with the summary and the
useless-model check (after the predictions gate, so every piece of evidence is saved before a stop)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from frugalml.errors import EmptyDatasetError, ModelError
from frugalml.models.multitask import model_tasks
from frugalml.models.zoo import Classifier as TextClassifier
from frugalml.nodes.evaluate.metrics import classification_metrics, predict_classes, report_metrics
from frugalml.nodes.evaluate.plots import plot_roc_and_reliability
from frugalml.nodes.evaluate.tasks import task_reports
from frugalml.nodes.evaluate.usefulness import (
    evaluation_summary,
    headline,
    useless_model_message,
    useless_model_problems,
)
from frugalml.nodes.split import id_column_of
from frugalml.nodes.train import encode_labels
from frugalml.params import DataSchema, EvaluateParams, parse_params
from frugalml.tracking import Metrics

logger = logging.getLogger(__name__)


def evaluate_classifier(
    model: TextClassifier, test: pd.DataFrame, params: dict[str, Any], data: dict[str, Any]
) -> tuple[Metrics, dict[str, Any], Figure, pd.DataFrame]:
    """Score the model on the gold test set.

    Args:
        model: A trained :class:`TextClassifier`.
        test: Labelled test rows.
        params: ``params:evaluate``.
        data: ``params:data``.

    Returns:
        MLflow metrics, a JSON report (figures, per-class figures, confusion matrix, label names, the
        useless-model problems, a multi-task model's ``tasks`` figures), the ROC/reliability figure and per-row
        predictions (id, label, predicted label, the positive class's and the predicted class's probability).

    Raises:
        EmptyDatasetError: When the test set is empty.
    """
    config = parse_params(EvaluateParams, params, name="evaluate")
    schema = parse_params(DataSchema, data, name="data")
    if test.empty:
        raise EmptyDatasetError("the test set is empty")
    probabilities = model.predict_proba(test)
    y_true = encode_labels(test[schema.label_column], schema)
    positive = schema.labels.index(schema.positive_label)
    names = schema.label_names or [str(label) for label in schema.labels]
    report = classification_metrics(
        probabilities, y_true, positive=positive, threshold=config.threshold, bins=config.calibration_bins,
        names=names, positive_class_metrics=config.positive_class_metrics,
    )  # fmt: skip
    report.update(label_names=names, positive_label=schema.positive_label)
    if model_tasks(model):
        report["tasks"] = task_reports(model, test, schema.id_column)
    report["useless_model_problems"] = useless_model_problems(
        report, config.min_error_reduction_over_majority, config.min_macro_f1_gain_over_chance
    )
    figure = plot_roc_and_reliability(
        probabilities, y_true, positive=positive, bins=config.calibration_bins, names=names,
        title=f"test set: {len(test)} rows, accuracy {report['accuracy']:.4f} "
        f"(majority {report['majority_baseline_accuracy']:.4f}), {headline(report)}",
    )  # fmt: skip
    predicted = predict_classes(probabilities, positive=positive, threshold=config.threshold)
    predictions = pd.DataFrame(
        {
            id_column_of(schema): test[id_column_of(schema)].to_numpy(),
            "label": test[schema.label_column].to_numpy(),
            "predicted": np.asarray(schema.labels)[predicted],
            "probability_positive": probabilities[:, positive],
            "probability_predicted": probabilities[np.arange(len(predicted)), predicted],
        }
    )
    return report_metrics(report), report, figure, predictions


def check_useful_model(report: dict[str, Any], checked_predictions: pd.DataFrame, params: dict[str, Any]) -> None:
    """The end of an evaluation: log the summary of the test figures, then stop (``evaluate.useless_model:
    fail``) or warn (``warn``) when the model is no better than the majority class.

    Runs after the predictions gate, so the report, figures, predictions and the gate's evidence are saved
    before the run stops.

    Args:
        report: From :func:`evaluate_classifier`.
        checked_predictions: The predictions that passed the predictions gate.
        params: ``params:evaluate``.

    Raises:
        ModelError: When the predictions collapse to one class, accuracy does not beat the majority baseline
            by ``evaluate.min_error_reduction_over_majority`` or macro-F1 does not beat chance by
            ``evaluate.min_macro_f1_gain_over_chance`` (and ``useless_model`` is ``fail``).
    """
    config = parse_params(EvaluateParams, params, name="evaluate")
    logger.info(
        "%s\n  predictions gate: %d of %d rows passed",
        evaluation_summary(report), len(checked_predictions), report["rows"],
    )  # fmt: skip
    problems = useless_model_problems(
        report, config.min_error_reduction_over_majority, config.min_macro_f1_gain_over_chance
    )
    if not problems:
        return
    message = useless_model_message(report, problems)
    if config.useless_model == "fail":
        raise ModelError(message)
    logger.warning(message)
