"""Evaluate a classifier on held-out gold rows: accuracy, positive-class P/R/F1, ROC-AUC, confusion matrix,
calibration (ECE) and a figure with the ROC and reliability curves.

Notation: N test rows, C classes, p (N, C) predicted probabilities, k* the positive class index.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from frugalml.errors import EmptyDatasetError  # noqa: E402
from frugalml.models.ngram_bag import TextClassifier  # noqa: E402
from frugalml.nodes.split import id_column_of  # noqa: E402
from frugalml.nodes.train import encode_labels  # noqa: E402
from frugalml.params import DataSchema, EvaluateParams, parse_params  # noqa: E402
from frugalml.tracking import as_metrics


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


def classification_metrics(
    probabilities: np.ndarray, y_true: np.ndarray, *, positive: int, threshold: float, bins: int
) -> dict[str, Any]:
    """Every figure of the evaluation report.

    Args:
        probabilities: (N, C) probabilities.
        y_true: (N,) class indices.
        positive: Index k* of the positive class.
        threshold: Decision threshold on p[:, k*] (binary case).
        bins: Calibration bins.

    Returns:
        A dict of scalar metrics plus ``confusion_matrix`` (C x C list).
    """
    n_classes = probabilities.shape[1]
    if n_classes == 2:
        y_pred = np.where(probabilities[:, positive] >= threshold, positive, 1 - positive)
    else:
        y_pred = probabilities.argmax(axis=1)
    is_pos, pred_pos = y_true == positive, y_pred == positive
    both_classes = len(np.unique(is_pos)) == 2
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "precision": float(skm.precision_score(is_pos, pred_pos, zero_division=0)),
        "recall": float(skm.recall_score(is_pos, pred_pos, zero_division=0)),
        "f1": float(skm.f1_score(is_pos, pred_pos, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(is_pos, probabilities[:, positive])) if both_classes else float("nan"),
        "average_precision": float(skm.average_precision_score(is_pos, probabilities[:, positive]))
        if both_classes
        else float("nan"),
        "log_loss": float(skm.log_loss(y_true, np.clip(probabilities, 1e-7, 1), labels=list(range(n_classes)))),
        "ece": expected_calibration_error(probabilities, y_true, bins=bins),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=list(range(n_classes))).tolist(),
        "rows": int(len(y_true)),
    }


def plot_roc_and_reliability(
    probabilities: np.ndarray, y_true: np.ndarray, *, positive: int, bins: int, title: str
) -> Figure:
    """ROC curve (left) and reliability diagram (right) for the positive class.

    Args:
        probabilities: (N, C) probabilities.
        y_true: (N,) class indices.
        positive: Positive class index.
        bins: Reliability bins.
        title: Figure title.

    Returns:
        The matplotlib figure (saved by the catalog, not here).
    """
    is_pos = (y_true == positive).astype(int)
    scores = probabilities[:, positive]
    figure, (roc_ax, rel_ax) = plt.subplots(1, 2, figsize=(10, 4.5))
    if len(np.unique(is_pos)) == 2:
        fpr, tpr, _ = skm.roc_curve(is_pos, scores)
        roc_ax.plot(fpr, tpr, label=f"AUC = {skm.auc(fpr, tpr):.4f}")
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    roc_ax.legend(loc="lower right")
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1], right=True), 0, bins - 1)
    centres, observed, counts = [], [], []
    for b in range(bins):
        mask = which == b
        if mask.any():
            centres.append(scores[mask].mean())
            observed.append(is_pos[mask].mean())
            counts.append(int(mask.sum()))
    rel_ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    rel_ax.plot(centres, observed, marker="o", label="model")
    for x, y, n in zip(centres, observed, counts):
        rel_ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(0, 6), fontsize=7, ha="center")
    rel_ax.set(xlabel="predicted probability", ylabel="observed frequency", title="Reliability (labels: rows per bin)")
    rel_ax.set(xlim=(0, 1), ylim=(0, 1))
    rel_ax.legend(loc="upper left")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def evaluate_classifier(
    model: TextClassifier, test: pd.DataFrame, params: dict[str, Any], data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], Figure, pd.DataFrame]:
    """Score the model on the gold test set.

    Args:
        model: A trained :class:`TextClassifier`.
        test: Labelled test rows.
        params: ``params:evaluate``.
        data: ``params:data``.

    Returns:
        MLflow metrics, a JSON report (metrics, confusion matrix, label names), the ROC/reliability figure
        and per-row predictions (id, label, predicted label, positive probability).

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
    report = classification_metrics(
        probabilities, y_true, positive=positive, threshold=config.threshold, bins=config.calibration_bins
    )
    report["label_names"] = schema.label_names
    report["positive_label"] = schema.positive_label
    figure = plot_roc_and_reliability(
        probabilities, y_true, positive=positive, bins=config.calibration_bins,
        title=f"test set: {len(test)} rows, accuracy {report['accuracy']:.4f}",
    )  # fmt: skip
    id_column = id_column_of(schema)
    predicted = probabilities.argmax(axis=1)
    if probabilities.shape[1] == 2:
        predicted = np.where(probabilities[:, positive] >= config.threshold, positive, 1 - positive)
    predictions = pd.DataFrame(
        {
            id_column: test[id_column].to_numpy(),
            "label": test[schema.label_column].to_numpy(),
            "predicted": np.asarray(schema.labels)[predicted],
            "probability_positive": probabilities[:, positive],
        }
    )
    metrics = as_metrics(
        {key: value for key, value in report.items() if isinstance(value, int | float) and not isinstance(value, bool)}
    )
    return metrics, report, figure, predictions


def membership_inference(
    model: TextClassifier, members: pd.DataFrame, non_members: pd.DataFrame, data: dict[str, Any], *, seed: int = 0
) -> dict[str, float]:
    """Loss-threshold membership-inference attack (Yeom et al.): lower loss suggests a training member.

    Members and non-members are subsampled to the same size, so an AUC of 0.5 is chance.

    Args:
        model: The trained classifier.
        members: Rows it was trained on.
        non_members: Rows from the same distribution it never saw (e.g. the gold test set).
        data: ``params:data``.
        seed: Subsampling seed.

    Returns:
        ``auc`` and ``tpr_at_1pct_fpr`` of the attack, and ``rows`` per side.

    Raises:
        EmptyDatasetError: When either side is empty.
    """
    schema = parse_params(DataSchema, data, name="data")
    size = min(len(members), len(non_members))
    if size == 0:
        raise EmptyDatasetError("membership inference needs members and non-members")
    members = members.sample(n=size, random_state=seed)
    non_members = non_members.sample(n=size, random_state=seed)
    scores, truth = [], []
    for frame, is_member in ((members, 1), (non_members, 0)):
        probabilities = model.predict_proba(frame)
        y = encode_labels(frame[schema.label_column], schema)
        scores.append(np.log(np.clip(probabilities[np.arange(len(y)), y], 1e-12, 1.0)))  # = -loss
        truth.append(np.full(len(y), is_member))
    score, member = np.concatenate(scores), np.concatenate(truth)
    fpr, tpr, _ = skm.roc_curve(member, score)
    return {
        "auc": float(skm.roc_auc_score(member, score)),
        "tpr_at_1pct_fpr": float(np.interp(0.01, fpr, tpr)),
        "rows": int(size),
    }


def _true_class_logit(model: TextClassifier, frame: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """LiRA's statistic: the logit of the probability the model gives the true class, log(p / (1 - p))."""
    p = np.clip(model.predict_proba(frame)[np.arange(len(y)), y], 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def lira_membership_inference(
    target: TextClassifier,
    members: pd.DataFrame,
    non_members: pd.DataFrame,
    train_shadow: Any,
    data: dict[str, Any],
    *,
    shadows: int = 8,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """LiRA-lite (Carlini et al., 2022, online variant with a global variance): shadow models trained on
    random halves of the audit population tell, for each example, how its statistic is distributed when it is
    in the training set and when it is out; the target model's statistic is scored by the likelihood ratio.

    The audit population is ``members`` (rows the target was trained on) plus as many ``non_members``; each
    shadow model is trained with ``train_shadow`` (the target's own recipe) on a random half of it, so every
    example is *in* for about half of the shadows and *out* for the others.

    Args:
        target: The model under audit.
        members: Rows it was trained on.
        non_members: Rows of the same distribution it never saw.
        train_shadow: ``frame -> TextClassifier``, the target's training recipe (DP included).
        data: ``params:data``.
        shadows: Number of shadow models (even, >= 2).
        seed: Seeds the population sample and the halves.
        progress: Show a progress bar.

    Returns:
        ``auc`` and ``tpr_at_1pct_fpr`` of the attack, ``rows`` per side and ``shadows``.

    Raises:
        EmptyDatasetError: When either side is empty.
        ValueError: When ``shadows`` is odd or below 2.
    """
    from tqdm.auto import tqdm

    if shadows < 2 or shadows % 2:
        raise ValueError(f"LiRA needs an even number of shadow models >= 2, got {shadows}")
    schema = parse_params(DataSchema, data, name="data")
    size = min(len(members), len(non_members))
    if size == 0:
        raise EmptyDatasetError("membership inference needs members and non-members")
    rng = np.random.default_rng(seed)
    population = pd.concat([members.sample(n=size, random_state=seed), non_members.sample(n=size, random_state=seed)],
                           ignore_index=True)  # fmt: skip
    is_member = np.r_[np.ones(size, dtype=int), np.zeros(size, dtype=int)]
    y = encode_labels(population[schema.label_column], schema)
    statistics = np.zeros((shadows, len(population)))
    inside = np.zeros((shadows, len(population)), dtype=bool)
    for k in tqdm(range(shadows), desc="LiRA shadows", disable=not progress):
        if k % 2 == 0:  # paired halves: every example is in exactly half of the shadows
            half = rng.permutation(len(population)) < len(population) // 2
        else:
            half = ~inside[k - 1]
        inside[k] = half
        statistics[k] = _true_class_logit(train_shadow(population[half]), population, y)
    observed = _true_class_logit(target, population, y)
    in_mean = np.nanmean(np.where(inside, statistics, np.nan), axis=0)
    out_mean = np.nanmean(np.where(~inside, statistics, np.nan), axis=0)
    in_std = float(np.nanstd(statistics[inside] - in_mean[np.nonzero(inside)[1]])) + 1e-6
    out_std = float(np.nanstd(statistics[~inside] - out_mean[np.nonzero(~inside)[1]])) + 1e-6
    score = (-0.5 * ((observed - in_mean) / in_std) ** 2 - np.log(in_std)) - (
        -0.5 * ((observed - out_mean) / out_std) ** 2 - np.log(out_std)
    )
    fpr, tpr, _ = skm.roc_curve(is_member, score)
    return {
        "auc": float(skm.roc_auc_score(is_member, score)),
        "tpr_at_1pct_fpr": float(np.interp(0.01, fpr, tpr)),
        "rows": int(size),
        "shadows": int(shadows),
    }
