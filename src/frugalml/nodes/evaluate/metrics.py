"""The figures of an evaluation, for two classes or K: accuracy and the majority-class baseline, macro/weighted
F1, per-class precision/recall/F1 (named by ``data.label_names``), the positive class's P/R/F1/ROC-AUC/AP,
one-vs-rest ROC-AUC, log loss and calibration (ECE); and the report's MLflow metrics.

Notation: N test rows, C classes, p (N, C) predicted probabilities, k* the positive class index.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from frugalml.tracking import Metrics, as_metrics

_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_-]+")


def metric_keys(names: Sequence[str], labels: Sequence[int]) -> list[str]:
    """Class names as parts of MLflow metric keys (``class.<key>.f1``), one distinct key per class.

    Args:
        names: Class names (``data.label_names``).
        labels: Class values (``data.labels``), same order.

    Returns:
        Each name with runs of characters other than letters, digits, ``_`` and ``-`` replaced by ``_``; an
        empty result becomes the label value, and names that end up equal get ``_<label>`` appended.
    """
    keys = [_NOT_IN_KEY.sub("_", str(name)).strip("_") or str(label) for name, label in zip(names, labels)]
    counts = Counter(keys)
    keys = [f"{key}_{label}" if counts[key] > 1 else key for key, label in zip(keys, labels)]
    return keys if len(set(keys)) == len(keys) else [str(label) for label in labels]


def expected_calibration_error(probabilities: np.ndarray, y_true: np.ndarray, *, bins: int = 15) -> float:
    """Top-label expected calibration error with equal-width confidence bins.

    Args:
        probabilities: (N, C) predicted probabilities.
        y_true: (N,) true class indices.
        bins: Number of bins on [0, 1].

    Returns:
        sum_b |acc_b - conf_b| * n_b / N.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += abs(correct[mask].mean() - confidence[mask].mean()) * mask.mean()
    return float(ece)


def predict_classes(probabilities: np.ndarray, *, positive: int, threshold: float) -> np.ndarray:
    """Predicted class indices: ``p[:, k*] >= threshold`` for two classes, the most probable class for K > 2.

    Args:
        probabilities: (N, C) probabilities.
        positive: Index k* of the positive class.
        threshold: Decision threshold on p[:, k*] (binary case).

    Returns:
        (N,) class indices.
    """
    if probabilities.shape[1] == 2:
        return np.where(probabilities[:, positive] >= threshold, positive, 1 - positive)
    return probabilities.argmax(axis=1)


def one_vs_rest_auc(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """Macro one-vs-rest ROC-AUC: the mean over classes of the AUC of p[:, k] for "class k vs the rest".

    Classes absent from ``y_true`` (or holding every row) have no AUC and are left out of the mean, so it equals
    scikit-learn's ``roc_auc_score(multi_class="ovr", average="macro")`` whenever every class is present.

    Args:
        probabilities: (N, C) probabilities.
        y_true: (N,) class indices.

    Returns:
        The mean AUC, NaN when no class has one.
    """
    aucs = [
        skm.roc_auc_score(y_true == k, probabilities[:, k])
        for k in range(probabilities.shape[1])
        if 0 < int((y_true == k).sum()) < len(y_true)
    ]
    return float(np.mean(aucs)) if aucs else float("nan")


def _positive_class_figures(probabilities: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, positive: int):
    """Precision, recall, F1, ROC-AUC and average precision of class k* against the rest (NaN AUCs when the
    test rows are all or none of k*)."""
    is_pos, pred_pos, scores = y_true == positive, y_pred == positive, probabilities[:, positive]
    both = len(np.unique(is_pos)) == 2
    return {
        "precision": float(skm.precision_score(is_pos, pred_pos, zero_division=0)),
        "recall": float(skm.recall_score(is_pos, pred_pos, zero_division=0)),
        "f1": float(skm.f1_score(is_pos, pred_pos, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(is_pos, scores)) if both else float("nan"),
        "average_precision": float(skm.average_precision_score(is_pos, scores)) if both else float("nan"),
    }


def _per_class_figures(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """One entry per declared class: its index, name, metric key, precision, recall, F1 and test support."""
    classes = list(range(len(names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    keys = metric_keys(names, classes)
    return [
        {"index": k, "name": names[k], "key": keys[k], "precision": float(precision[k]), "recall": float(recall[k]),
         "f1": float(f1[k]), "support": int(support[k])}
        for k in classes
    ]  # fmt: skip


def classification_metrics(
    probabilities: np.ndarray,
    y_true: np.ndarray,
    *,
    positive: int,
    threshold: float,
    bins: int,
    names: Sequence[str] | None = None,
    positive_class_metrics: bool | str = "auto",
) -> dict[str, Any]:
    """Every figure of the evaluation report, for two classes or K.

    The majority baseline is the test set's own majority share: the accuracy of the best constant prediction
    on these rows (the model does not carry its training prior), so beating it is at least as hard as beating
    the training majority.

    Args:
        probabilities: (N, C) probabilities.
        y_true: (N,) class indices.
        positive: Index k* of the positive class.
        threshold: Decision threshold on p[:, k*] (binary case).
        bins: Calibration bins.
        names: Class names, index = class id (default: the indices).
        positive_class_metrics: ``precision``, ``recall``, ``f1``, ``roc_auc``, ``average_precision`` of k*:
            ``"auto"`` for two classes only, ``True`` also for K > 2 (k* against the rest), ``False`` never.

    Returns:
        Scalar figures (``accuracy``, ``macro_f1``, ``weighted_f1``, ``majority_baseline_accuracy``,
        ``gain_over_majority``, ``error_reduction_over_majority``, ``log_loss``, ``ece``, ``roc_auc_macro`` for
        K > 2, ...), ``headline`` (the name of the headline figure: ``f1`` for binary, else ``macro_f1``),
        ``majority_class`` and ``positive_class`` (names), ``per_class`` (list of per-class figures) and
        ``confusion_matrix`` (C x C list).
    """
    n_classes = probabilities.shape[1]
    names = [str(name) for name in names] if names else [str(k) for k in range(n_classes)]
    y_pred = predict_classes(probabilities, positive=positive, threshold=threshold)
    counts = np.bincount(y_true, minlength=n_classes)
    accuracy, majority = float((y_pred == y_true).mean()), float(counts.max() / len(y_true))
    report: dict[str, Any] = {
        "accuracy": accuracy,
        "majority_baseline_accuracy": majority,
        "gain_over_majority": accuracy - majority,
        "error_reduction_over_majority": (accuracy - majority) / (1 - majority) if majority < 1 else float("nan"),
        "macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "weighted_f1": float(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "log_loss": float(skm.log_loss(y_true, np.clip(probabilities, 1e-7, 1), labels=list(range(n_classes)))),
        "ece": expected_calibration_error(probabilities, y_true, bins=bins),
        "rows": int(len(y_true)),
        "classes": int(n_classes),
        "test_classes": int((counts > 0).sum()),
        "predicted_classes": int(len(np.unique(y_pred))),
    }
    # guessing at the test set's class shares scores a macro-F1 of 1 / K in expectation (each class's F1 is its
    # share); a model must beat that as well as the majority's accuracy (docs/evaluation.md)
    chance = 1.0 / report["test_classes"]
    report["chance_macro_f1"] = chance
    report["macro_f1_gain_over_chance"] = (report["macro_f1"] - chance) / (1 - chance) if chance < 1 else float("nan")
    if n_classes > 2:
        report["roc_auc_macro"] = one_vs_rest_auc(probabilities, y_true)
    if positive_class_metrics is True or (positive_class_metrics == "auto" and n_classes == 2):
        report.update(_positive_class_figures(probabilities, y_true, y_pred, positive))
    report["headline"] = "f1" if n_classes == 2 and "f1" in report else "macro_f1"
    report["majority_class"], report["positive_class"] = names[int(counts.argmax())], names[positive]
    report["per_class"] = _per_class_figures(y_true, y_pred, names)
    report["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=list(range(n_classes))).tolist()
    return report


def report_metrics(report: dict[str, Any]) -> Metrics:
    """The MLflow metrics of a report: its scalar figures, plus ``class.<key>.{precision,recall,f1,support}`` and a
    multi-task model's ``task.<name>.{rows,accuracy,majority_baseline_accuracy,macro_f1}``.

    Args:
        report: From :func:`classification_metrics` (and :func:`evaluate_classifier`).

    Returns:
        kedro-mlflow metrics (the catalog prefixes them with ``test.``).
    """
    figures = {k: v for k, v in report.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for entry in report.get("per_class", []):
        figures.update(
            {f"class.{entry['key']}.{name}": entry[name] for name in ("precision", "recall", "f1", "support")}
        )
    if "useless_model_problems" in report:
        figures["useless_model"] = bool(report["useless_model_problems"])
    from frugalml.nodes.evaluate.tasks import task_metrics

    figures.update(task_metrics(report))
    return as_metrics(figures)
