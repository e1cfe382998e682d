"""The evaluation's figures: ROC and reliability curves (positive class, or each class vs the rest), and the
confusion matrix. Figures are returned, never saved here (the catalog saves and logs them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn import metrics as skm  # noqa: E402


def _reliability_points(scores: np.ndarray, hits: np.ndarray, bins: int) -> tuple[list, list, list]:
    """Mean score, observed frequency of ``hits`` and rows of each non-empty equal-width bin of ``scores``."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1], right=True), 0, bins - 1)
    centres, observed, counts = [], [], []
    for b in range(bins):
        mask = which == b
        if mask.any():
            centres.append(float(scores[mask].mean()))
            observed.append(float(hits[mask].mean()))
            counts.append(int(mask.sum()))
    return centres, observed, counts


def _draw_roc(axes: Axes, curves: list[tuple[str, np.ndarray, np.ndarray]], title: str) -> None:
    """ROC curves ``(label prefix, is-positive, score)``; a curve whose rows are all or none positive is left out."""
    for name, is_pos, scores in curves:
        if len(np.unique(is_pos)) == 2:
            fpr, tpr, _ = skm.roc_curve(is_pos, scores)
            axes.plot(fpr, tpr, label=f"{name}AUC = {skm.auc(fpr, tpr):.4f}")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    axes.legend(loc="lower right", fontsize=8 if len(curves) <= 6 else 6)


def _draw_reliability(axes: Axes, scores: np.ndarray, hits: np.ndarray, bins: int, labels: tuple[str, str]) -> None:
    """Reliability diagram: observed frequency of ``hits`` against the mean score, rows per bin as labels."""
    centres, observed, counts = _reliability_points(scores, hits.astype(float), bins)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    axes.plot(centres, observed, marker="o", label="model")
    for x, y, n in zip(centres, observed, counts):
        axes.annotate(str(n), (x, y), textcoords="offset points", xytext=(0, 6), fontsize=7, ha="center")
    axes.set(xlabel=labels[0], ylabel=labels[1], title="Reliability (labels: rows per bin)", xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="upper left")


def plot_roc_and_reliability(
    probabilities: np.ndarray,
    y_true: np.ndarray,
    *,
    positive: int,
    bins: int,
    title: str,
    names: Sequence[str] | None = None,
) -> Figure:
    """ROC curve (left) and reliability diagram (right): of the positive class for two classes; for K > 2 one
    ROC curve per class (that class vs the rest) and the top-label reliability (confidence vs accuracy, what
    the ECE measures).

    Args:
        probabilities: (N, C) probabilities.
        y_true: (N,) class indices.
        positive: Positive class index.
        bins: Reliability bins.
        title: Figure title.
        names: Class names for the K > 2 legend (default: the indices).

    Returns:
        The matplotlib figure (saved by the catalog, not here).
    """
    figure, (roc_ax, rel_ax) = plt.subplots(1, 2, figsize=(10, 4.5))
    n_classes = probabilities.shape[1]
    if n_classes == 2:
        scores, is_pos = probabilities[:, positive], y_true == positive
        _draw_roc(roc_ax, [("", is_pos, scores)], "ROC")
        _draw_reliability(rel_ax, scores, is_pos, bins, ("predicted probability", "observed frequency"))
    else:
        names = list(names) if names else [str(k) for k in range(n_classes)]
        curves = [(f"{names[k]}: ", y_true == k, probabilities[:, k]) for k in range(n_classes)]
        _draw_roc(roc_ax, curves, "ROC, each class vs the rest")
        hits = probabilities.argmax(axis=1) == y_true
        _draw_reliability(rel_ax, probabilities.max(axis=1), hits, bins, ("confidence (top class)", "accuracy"))
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_confusion_matrix(report: dict[str, Any]) -> Figure:
    """The confusion matrix of a report: counts in the cells, shaded by the share of the true class's rows.

    Args:
        report: From :func:`evaluate_classifier` (``confusion_matrix``, ``label_names``, ``accuracy``).

    Returns:
        The matplotlib figure, sized to the number of classes (saved by the catalog, not here).
    """
    matrix = np.asarray(report["confusion_matrix"])
    names, size = report["label_names"], len(matrix)
    side = min(max(4.5, 0.6 * size + 2.5), 16.0)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(side + 1.2, side))
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class's rows")
    axes.set(xticks=range(size), yticks=range(size), xlabel="predicted", ylabel="true")
    axes.set_xticklabels(names, rotation=45 if size > 2 else 0, ha="right" if size > 2 else "center")
    axes.set_yticklabels(names)
    if size <= 30:
        for (row, column), count in np.ndenumerate(matrix):
            colour = "white" if share[row, column] > 0.5 else "black"
            axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8 if size > 10 else 10)
    axes.set_title(f"confusion matrix: {int(matrix.sum())} test rows, accuracy {report['accuracy']:.4f}")
    figure.tight_layout()
    return figure
