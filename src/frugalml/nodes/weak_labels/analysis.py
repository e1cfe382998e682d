"""Judging the LFs: Snorkel's ``LFAnalysis`` on the pool, dev accuracy per LF, leave-one-out effects, the plot."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from frugalml.nodes.weak_labels.label_model import accuracy_of, combine_votes, fit_label_model
from frugalml.nodes.weak_labels.spec import LFSpec


def lf_summary_table(
    lfs: list[LFSpec],
    pool_matrix: np.ndarray,
    dev_matrix: np.ndarray,
    y_dev: np.ndarray,
    *,
    failures: dict[str, int],
    label_names: list[str],
) -> pd.DataFrame:
    """Snorkel's ``LFAnalysis`` on the pool (coverage, overlaps, conflicts) plus dev accuracy per LF.

    Args:
        lfs: The LFs.
        pool_matrix: ``L`` of the pool.
        dev_matrix: ``L`` of the gold dev set.
        y_dev: Dev class indices.
        failures: Rows each LF raised on (pool and dev).
        label_names: Class names, for the polarity column.

    Returns:
        One row per LF.
    """
    from snorkel.labeling import LFAnalysis

    names = [spec.name for spec in lfs]
    table = pd.DataFrame({"lf": names, "family": [spec.family for spec in lfs]})
    if len(pool_matrix):
        analysis = LFAnalysis(pool_matrix)
        table["coverage"] = analysis.lf_coverages()
        table["overlaps"] = analysis.lf_overlaps()
        table["conflicts"] = analysis.lf_conflicts()
        table["polarity"] = [", ".join(label_names[k] for k in p) for p in analysis.lf_polarities()]
    else:
        table[["coverage", "overlaps", "conflicts"]] = np.nan
        table["polarity"] = ""
    votes = dev_matrix >= 0
    table["dev_coverage"] = votes.mean(axis=0) if len(dev_matrix) else np.nan
    table["dev_votes"] = votes.sum(axis=0)
    correct = (dev_matrix == y_dev[:, None]) & votes
    with np.errstate(invalid="ignore", divide="ignore"):
        table["dev_accuracy"] = np.where(votes.sum(axis=0) > 0, correct.sum(axis=0) / votes.sum(axis=0), np.nan)
    table["failures"] = [failures.get(name, 0) for name in names]
    table["rationale"] = [spec.rationale for spec in lfs]
    return table


def leave_one_out(
    pool_matrix: np.ndarray,
    dev_matrix: np.ndarray,
    y_dev: np.ndarray,
    *,
    cardinality: int,
    class_balance: list[float] | None,
    prior: np.ndarray,
    config: Any,
    seed: int,
    baseline: float,
    progress: bool = False,
) -> np.ndarray:
    """Effect of each LF on the label model: dev accuracy with all LFs minus dev accuracy without it.

    Positive: the LF helps; negative: removing it would raise dev accuracy.

    Args:
        pool_matrix: ``L`` of the pool (the label model is refitted without one column at a time).
        dev_matrix: ``L`` of the gold dev set.
        y_dev: Dev class indices.
        cardinality: C.
        class_balance: Prior passed to every fit.
        prior: Distribution of rows without votes under majority vote (as for the baseline).
        config: :class:`frugalml.params.WeakLabelParams`.
        seed: Seed.
        baseline: Dev accuracy with every LF.
        progress: Show a progress bar.

    Returns:
        (m,) accuracy deltas.
    """
    from tqdm.auto import tqdm

    m = pool_matrix.shape[1]
    deltas = np.zeros(m)
    for j in tqdm(range(m), desc="leave-one-out", disable=not progress):
        keep = [k for k in range(m) if k != j]
        model = (fit_label_model(pool_matrix[:, keep], cardinality, class_balance, config, seed)
                 if config.label_model == "snorkel" else None)  # fmt: skip
        deltas[j] = baseline - accuracy_of(combine_votes(dev_matrix[:, keep], model, cardinality, prior), y_dev, seed)
    return deltas


def plot_lf_summary(summary: pd.DataFrame) -> Any:
    """Bars per LF: pool coverage, dev accuracy and leave-one-out effect.

    Args:
        summary: Output of :func:`lf_summary_table` (with ``loo_delta``).

    Returns:
        A matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(summary)
    figure, axes = plt.subplots(1, 3, figsize=(13, 0.28 * rows + 1.5), sharey=True)
    positions = np.arange(rows)
    panels = (("coverage", "pool coverage", "tab:blue"), ("dev_accuracy", "dev accuracy", "tab:green"),
              ("loo_delta", "leave-one-out effect (dev acc.)", "tab:purple"))  # fmt: skip
    for axis, (column, title, colour) in zip(axes, panels):
        values = summary[column].fillna(0).to_numpy() if column in summary else np.zeros(rows)
        colours = [colour if v >= 0 else "tab:red" for v in values]
        axis.barh(positions, values, color=colours)
        axis.set_title(title)
        axis.axvline(0, color="black", linewidth=0.5)
    axes[0].set_yticks(positions, summary["lf"])
    axes[0].invert_yaxis()
    figure.tight_layout()
    return figure
